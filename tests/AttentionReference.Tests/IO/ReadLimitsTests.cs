using System.Diagnostics;
using System.IO.Compression;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.IO;

/// <summary>
/// What the readers will not read (issue #21, causes 8, 12 and 14): files that are not regular files, files and .npz
/// members past the stated limits, members that lie about their sizes or CRC-32, encrypted members, and tensors no
/// one asked for. Each is refused with one line naming the file (and the member), before the bytes are read.
/// </summary>
public sealed class ReadLimitsTests
{
    private static readonly byte[] Q = HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", HandBuilt.F64(1.5, -2));

    private static InputException Refused(Func<object> read, string file)
    {
        var error = Assert.Throws<InputException>(read);
        Assert.StartsWith($"{file}: ", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
        return error;
    }

    [Fact]
    public void The_limits_are_the_stated_constants()
    {
        Assert.Equal(2_000_000_000, ReadLimits.Default.MaxFileBytes);
        Assert.Equal(2_000_000_000, ReadLimits.Default.MaxMemberBytes);
        Assert.Equal(2_000_000_000, ReadLimits.Default.MaxInflatedBytes);
        Assert.True(ReadLimits.LargestFile <= Array.MaxLength && ReadLimits.LargestMember <= Array.MaxLength);
        Assert.Equal(1032, ReadLimits.DeflateMaxRatio);
        Assert.Equal(16, ReadLimits.NpyHeaderMaxDepth);
    }

    [Fact]
    public void A_directory_is_refused_as_a_directory_not_as_a_missing_file()
    {
        using var temp = new TempFolder();
        string folder = temp.File("case.safetensors");
        Directory.CreateDirectory(folder);
        Assert.Equal($"{folder}: is a directory; expected a tensor file", Refused(() => TensorFiles.Read(folder), folder).Message);
        Assert.Equal($"{temp.Path}: is a directory; expected a tensor file", Refused(() => TensorFiles.Read(temp.Path), temp.Path).Message);
    }

    [Fact]
    public void A_device_and_a_link_to_it_are_refused_unread()
    {
        if (!File.Exists("/dev/zero"))
        {
            return; // no such device on this system
        }
        using var temp = new TempFolder();
        string link = temp.File("zero.npy");
        File.CreateSymbolicLink(link, "/dev/zero");
        foreach (string path in (string[])["/dev/zero", link])
        {
            Assert.Contains("file reports 0 bytes: it is empty, or not a regular file (a device, FIFO or socket)",
                Refused(() => TensorFiles.Read(path), path).Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_fifo_is_refused_without_waiting_for_a_writer()
    {
        using var temp = new TempFolder();
        string fifo = temp.File("pipe.safetensors");
        if (!MakeFifo(fifo))
        {
            return; // no mkfifo on this system
        }
        // Opening a FIFO for reading blocks until a writer comes: the read must be refused before any open.
        var read = Task.Run(() => Assert.Throws<InputException>(() => TensorFiles.Read(fifo)));
        Task first = await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(30)));
        Assert.True(first == read, "reading a FIFO blocked");
        Assert.Contains("not a regular file", (await read).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_link_to_an_input_reads_as_the_input()
    {
        using var temp = new TempFolder();
        string target = temp.File("q.npy"), link = temp.File("link.npy");
        File.WriteAllBytes(target, Q);
        File.CreateSymbolicLink(link, target);
        Assert.Equal([1.5, -2], TensorFiles.Read(link)["link"].Data);
    }

    [Fact]
    public void A_file_larger_than_the_limit_is_refused_before_it_is_read()
    {
        using var temp = new TempFolder();
        string path = temp.File("q.npy");
        File.WriteAllBytes(path, Q);
        var limits = new ReadLimits { MaxFileBytes = 100 };
        Assert.Equal($"{path}: file is {Q.Length} bytes; the largest input read is 100 bytes",
            Refused(() => TensorFiles.Read(path, null, limits), path).Message);
    }

    [Fact]
    public void Only_the_wanted_tensors_of_a_safetensors_file_are_read_and_the_others_are_listed_as_unread()
    {
        using var temp = new TempFolder();
        string path = temp.File("in.safetensors");
        TensorFiles.Write(path, new TensorFile().Add("q", Tensor.Zeros(2)).Add("junk", Tensor.Zeros(1000)).Add("k", Tensor.Zeros(3)));

        TensorFile file = TensorFiles.Read(path, name => name is "q" or "k");

        Assert.Equal(["q", "k"], file.Names);
        Assert.Equal(["junk"], file.Unread);
        Assert.Equal($"{path}: tensor 'v': no such tensor; the file holds q, k, junk",
            Assert.Throws<InputException>(() => file["v"]).Message);
    }

    [Fact]
    public void The_crc32_is_the_zip_crc32()
    {
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
        Assert.Equal(0u, Crc32.Compute([]));
        byte[] zip = ZipBytes.Build(("q.npy", Q, CompressionLevel.Optimal));
        Assert.Equal(ZipBytes.Crc(zip, 0), Crc32.Compute(Q));
    }

    [Theory]
    [InlineData(CompressionLevel.NoCompression)]
    [InlineData(CompressionLevel.Optimal)]
    public void A_member_with_a_wrong_crc32_is_refused(CompressionLevel level)
    {
        byte[] zip = ZipBytes.Build(("q.npy", Q, level));
        uint crc = ZipBytes.Crc(zip, 0);
        ZipBytes.SetCrc(zip, 0, crc ^ 0x10);
        Assert.Equal($"case.npz: tensor 'q': member's CRC-32 is {crc:x8} but its zip entry declares {crc ^ 0x10:x8}: the archive is corrupt",
            Refused(() => Npz.Parse(zip, "case.npz"), "case.npz").Message);
    }

    [Fact]
    public void An_encrypted_member_is_refused_not_read_as_plain_data()
    {
        byte[] zip = ZipBytes.Build(("q.npy", Q, CompressionLevel.NoCompression));
        ZipBytes.SetFlags(zip, 0, 1); // bit 0: encrypted
        Assert.Equal("case.npz: tensor 'q': member is encrypted; an .npz member must be stored or deflated in the clear",
            Refused(() => Npz.Parse(zip, "case.npz"), "case.npz").Message);
    }

    [Fact]
    public void A_member_declaring_more_than_the_largest_member_is_refused_before_anything_is_allocated()
    {
        byte[] zip = ZipBytes.Build(("q.npy", Q, CompressionLevel.Optimal));
        ZipBytes.SetUncompressedSize(zip, 0, 0xF000_0000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var error = Refused(() => Npz.Parse(zip, "case.npz"), "case.npz");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.Equal("case.npz: tensor 'q': member declares 4026531840 bytes uncompressed; the largest member read is 2000000000 bytes", error.Message);
    }

    [Fact]
    public void A_member_declaring_more_than_deflate_can_expand_is_refused()
    {
        byte[] zip = ZipBytes.Build(("q.npy", Q, CompressionLevel.Optimal));
        ZipBytes.SetUncompressedSize(zip, 0, 50_000_000);
        Assert.Contains("member declares 50000000 bytes uncompressed from", Refused(() => Npz.Parse(zip, "case.npz"), "case.npz").Message, StringComparison.Ordinal);
        Assert.Contains("more than deflate can expand (1032:1)", Refused(() => Npz.Parse(zip, "case.npz"), "case.npz").Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_member_declaring_fewer_bytes_than_it_inflates_to_stops_at_the_declared_size()
    {
        byte[] zip = ZipBytes.Build(("q.npy", Q, CompressionLevel.Optimal));
        ZipBytes.SetUncompressedSize(zip, 0, 16);
        // Inflating stops at the 16 declared bytes (ZipArchive's stream ends there; ours reads one byte more to be
        // sure); the 16 bytes then fail the CRC-32 of the whole member.
        string message = Refused(() => Npz.Parse(zip, "case.npz"), "case.npz").Message;
        Assert.True(message.StartsWith("case.npz: tensor 'q': member's CRC-32 is ", StringComparison.Ordinal)
            || message == "case.npz: tensor 'q': member is longer than the 16 bytes its zip entry declares", message);
    }

    [Fact]
    public void Members_inflating_past_the_archive_limit_are_refused()
    {
        byte[] zip = ZipBytes.Build(("q.npy", Q, CompressionLevel.Optimal), ("k.npy", Q, CompressionLevel.Optimal));
        using var stream = new MemoryStream(zip);
        var limits = new ReadLimits { MaxInflatedBytes = Q.Length + 10 };
        Assert.Equal($"case.npz: tensor 'k': members read from the archive would inflate to more than {Q.Length + 10} bytes",
            Refused(() => Npz.Parse(stream, "case.npz", null, limits), "case.npz").Message);
    }

    /// <summary>
    /// The reproducer: q, k and v, and an extra member of 268 M zero bytes deflated to a few hundred kilobytes.
    /// Read for a form, which needs q, k and v, the extra member is never inflated.
    /// </summary>
    [Fact]
    public void A_member_no_one_wants_is_never_inflated()
    {
        using var temp = new TempFolder();
        string path = temp.File("bomb.npz");
        WriteBomb(path, extraName: "extra");

        long before = GC.GetAllocatedBytesForCurrentThread();
        TensorFile file = TensorFiles.Read(path, name => name is "q" or "k" or "v");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(["q", "k", "v"], file.Names);
        Assert.Equal(["extra"], file.Unread);
        Assert.True(allocated < 8 << 20, $"reading allocated {allocated} bytes");
        Assert.True(new FileInfo(path).Length < 1 << 20);
    }

    /// <summary>A valid softmax input as .npz (q, k, v of [1,2,1,4]) with a member of 268,435,456 zero bytes deflated.</summary>
    internal static void WriteBomb(string path, string extraName)
    {
        byte[] qkv = HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 1, 4), }", HandBuilt.F64(0.5, -1, 2, 0.25, 1, 0, -0.5, 3));
        using var archive = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (string name in (string[])["q", "k", "v"])
        {
            using Stream member = archive.CreateEntry(name + ".npy", CompressionLevel.Optimal).Open();
            member.Write(qkv);
        }
        const int Elements = 1 << 25; // 2^25 float64 zeros: 268,435,456 bytes
        using Stream extra = archive.CreateEntry(extraName + ".npy", CompressionLevel.Optimal).Open();
        extra.Write(HandBuilt.NpyV1($"{{'descr': '<f8', 'fortran_order': False, 'shape': ({Elements},), }}", []));
        var zeros = new byte[1 << 20];
        for (int i = 0; i < Elements * 8 / zeros.Length; i++)
        {
            extra.Write(zeros);
        }
    }

    private static bool MakeFifo(string path)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false });
            return process is not null && process.WaitForExit(10_000) && process.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
