using System.IO.Compression;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.IO;

/// <summary>Reading and writing by extension, on disk, and the all-or-nothing guarantee of every write.</summary>
public sealed class TensorFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("attnref-io-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static TensorFile OneTensor(string name, Tensor tensor) => new TensorFile().Add(name, tensor);

    [Fact]
    public void Safetensors_written_to_disk_read_back_with_tensors_and_metadata()
    {
        var file = OneTensor("q", new Tensor([2], [1, 2], DType.BF16)).Add("n", Tensor.Scalar(3, DType.I32));
        file.Metadata["form"] = "gla";
        string path = PathOf("case.safetensors");

        TensorFiles.Write(path, file);
        TensorFile back = TensorFiles.Read(path);

        Assert.Equal(["q", "n"], back.Names);
        Assert.Equal(DType.BF16, back["q"].DType);
        Assert.Equal([3.0], back["n"].Data);
        Assert.Equal("gla", back.Metadata["form"]);
        Assert.Equal(path, back.Source);
        Assert.Equal([path], Directory.GetFiles(_dir)); // no temporary left behind
    }

    [Fact]
    public void An_npy_file_reads_as_one_tensor_named_by_the_file_stem()
    {
        string path = PathOf("initial_state.NPY");
        TensorFiles.Write(path, OneTensor("anything", new Tensor([1, 2], [5, 6], DType.F16)));

        TensorFile back = TensorFiles.Read(path);

        Assert.Equal(["initial_state"], back.Names);
        Assert.Equal(DType.F16, back["initial_state"].DType);
        Assert.Equal([5, 6], back["initial_state"].Data);
    }

    [Fact]
    public void An_npz_file_is_read_by_its_extension()
    {
        string path = PathOf("case.npz");
        using (var archive = ZipFile.Open(path, ZipArchiveMode.Create))
        using (Stream entry = archive.CreateEntry("v.npy").Open())
        {
            entry.Write(Npy.Serialize(new Tensor([3], [1, 2, 3], DType.I64)));
        }
        Assert.Equal([1, 2, 3], TensorFiles.Read(path)["v"].Data);
    }

    [Fact]
    public void A_missing_input_file_is_reported_as_no_such_file()
    {
        string path = PathOf("absent.safetensors");
        var error = Assert.Throws<InputException>(() => TensorFiles.Read(path));
        Assert.Equal($"{path}: no such file", error.Message);
    }

    [Fact]
    public void An_unknown_extension_is_rejected_with_the_known_ones()
    {
        string path = PathOf("case.pt");
        File.WriteAllBytes(path, [0]);
        var error = Assert.Throws<InputException>(() => TensorFiles.Read(path));
        Assert.Equal($"{path}: unknown file type '.pt'; expected .safetensors, .npy, .npz", error.Message);
        Assert.Throws<InputException>(() => TensorFiles.Write(PathOf("out.pt"), new TensorFile()));
    }

    [Fact]
    public void A_tensor_missing_from_a_read_file_is_named_with_the_file_and_what_it_holds()
    {
        string path = PathOf("in.safetensors");
        TensorFiles.Write(path, OneTensor("q", Tensor.Zeros(1)).Add("k", Tensor.Zeros(1)));
        var error = Assert.Throws<InputException>(() => TensorFiles.Read(path)["v"]);
        Assert.Equal($"{path}: tensor 'v': no such tensor; the file holds q, k", error.Message);
    }

    [Fact]
    public void A_write_that_fails_while_encoding_leaves_no_output_and_no_temporary()
    {
        var file = OneTensor("ok", Tensor.Zeros(1000)).Add("cu_seqlens", new Tensor([2], [0, 0.5], DType.I32));
        Assert.Throws<ArgumentException>(() => TensorFiles.Write(PathOf("out.safetensors"), file));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void A_failed_write_keeps_the_previous_file_intact_and_removes_its_temporary()
    {
        string path = PathOf("out.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);

        // A write error (here a full disk) is bad input naming the file and the reason, as every write error is.
        var error = Assert.Throws<InputException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[4096]);
            throw new IOException("disk full");
        }));
        Assert.Equal($"{path}: cannot write: disk full", error.Message);

        Assert.Equal([path], Directory.GetFileSystemEntries(_dir));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
    }

    [Fact]
    public void A_successful_write_replaces_an_existing_file()
    {
        string path = PathOf("out.bin");
        File.WriteAllBytes(path, [1, 2, 3]);
        AtomicFile.WriteAllBytes(path, [9]);
        Assert.Equal([9], File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Writing_bf16_to_npy_is_bad_input_and_writes_nothing()
    {
        string path = PathOf("o.npy");
        var error = Assert.Throws<InputException>(() => TensorFiles.Write(path, OneTensor("o", new Tensor([1], [1], DType.BF16))));
        Assert.Equal($"{path}: tensor 'o': .npy has no bfloat16 dtype; write bf16 tensors to .safetensors", error.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Writing_two_tensors_to_npy_is_bad_input_and_writes_nothing()
    {
        string path = PathOf("o.npy");
        var error = Assert.Throws<InputException>(() => TensorFiles.Write(path, OneTensor("o", Tensor.Zeros(1)).Add("lse", Tensor.Zeros(1))));
        Assert.Contains(".npy holds exactly one tensor but 2 were given (o, lse)", error.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Writing_into_a_missing_directory_is_bad_input_naming_the_file()
    {
        string path = Path.Combine(_dir, "no", "such", "dir", "o.safetensors");
        var error = Assert.Throws<InputException>(() => TensorFiles.Write(path, OneTensor("o", Tensor.Zeros(1))));
        Assert.StartsWith($"{path}: cannot write: ", error.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Writing_under_a_regular_file_names_the_file_in_the_way()
    {
        string file = PathOf("file");
        File.WriteAllBytes(file, [1]);
        string path = Path.Combine(file, "sub", "r.json");
        var error = Assert.Throws<InputException>(() => AtomicFile.WriteAllBytes(path, [2]));
        Assert.Equal($"{path}: cannot write: '{file}' is a file, not a folder", error.Message);
        Assert.Equal([file], Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Writing_to_a_directory_is_refused_and_leaves_it_as_it_was()
    {
        var error = Assert.Throws<InputException>(() => AtomicFile.WriteAllBytes(_dir, [2]));
        Assert.Equal($"{_dir}: cannot write: is a directory; expected a file name", error.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void A_folder_is_made_unless_a_file_is_in_the_way()
    {
        string made = Path.Combine(_dir, "a", "b");
        AtomicFile.CreateFolder(made);
        Assert.True(Directory.Exists(made));
        AtomicFile.CreateFolder(made); // exists already: nothing to do

        string file = PathOf("file");
        File.WriteAllBytes(file, [1]);
        Assert.Equal($"{file}: cannot make the folder: a file of that name exists",
            Assert.Throws<InputException>(() => AtomicFile.CreateFolder(file)).Message);
        string under = Path.Combine(file, "g");
        Assert.Equal($"{under}: cannot make the folder: '{file}' is a file, not a folder",
            Assert.Throws<InputException>(() => AtomicFile.CreateFolder(under)).Message);
    }
}
