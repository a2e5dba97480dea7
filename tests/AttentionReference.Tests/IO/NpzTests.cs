using System.Buffers.Binary;
using System.IO.Compression;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.IO;

/// <summary>.npz archives built with ZipArchive, as numpy.savez (stored) and savez_compressed (deflated) write them.</summary>
public sealed class NpzTests
{
    private const string File = "case.npz";

    private static readonly byte[] Q = HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", HandBuilt.F64(1.5, -2));
    private static readonly byte[] K = HandBuilt.NpyV1("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }", HandBuilt.F32(0.25f));

    private static byte[] Zip(params (string Name, byte[] Bytes, CompressionLevel Level)[] members)
    {
        using var stream = new MemoryStream();
        using (var archive = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, bytes, level) in members)
            {
                using Stream entry = archive.CreateEntry(name, level).Open();
                entry.Write(bytes);
            }
        }
        return stream.ToArray();
    }

    /// <summary>The compression method of each local file header, in archive order (0 = stored, 8 = deflate).</summary>
    private static List<int> Methods(byte[] zip)
    {
        var methods = new List<int>();
        int at = 0;
        while (at + 30 <= zip.Length && BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(at)) == 0x04034B50)
        {
            methods.Add(BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(at + 8)));
            int compressed = BinaryPrimitives.ReadInt32LittleEndian(zip.AsSpan(at + 18));
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(at + 26));
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(at + 28));
            at += 30 + nameLength + extraLength + compressed;
        }
        return methods;
    }

    [Fact]
    public void Stored_and_deflated_members_read_in_archive_order_named_without_npy()
    {
        byte[] zip = Zip(("q.npy", Q, CompressionLevel.NoCompression), ("k.npy", K, CompressionLevel.Optimal));
        Assert.Equal([0, 8], Methods(zip)); // the archive really holds one stored and one deflated member

        TensorFile file = Npz.Parse(zip, File);

        Assert.Equal(["q", "k"], file.Names);
        Assert.Equal([1.5, -2], file["q"].Data);
        Assert.Equal(DType.F32, file["k"].DType);
        Assert.Equal([1, 1], file["k"].Shape);
        Assert.Equal([0.25], file["k"].Data);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void A_stream_parses_like_bytes()
    {
        using var stream = new MemoryStream(Zip(("q.npy", Q, CompressionLevel.Fastest)));
        Assert.Equal([1.5, -2], Npz.Parse(stream, File)["q"].Data);
    }

    [Fact]
    public void A_bad_member_is_reported_with_the_archive_and_the_tensor()
    {
        byte[] zip = Zip(("q.npy", Q[..^8], CompressionLevel.Optimal));
        var error = Assert.Throws<InputException>(() => Npz.Parse(zip, File));
        Assert.StartsWith($"{File}: tensor 'q': truncated data", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_member_that_is_not_npy_is_rejected_by_name()
    {
        byte[] zip = Zip(("q.npy", Q, CompressionLevel.Optimal), ("notes.txt", [1, 2], CompressionLevel.Optimal));
        var error = Assert.Throws<InputException>(() => Npz.Parse(zip, File));
        Assert.Equal($"{File}: archive member 'notes.txt' is not an .npy file; an .npz holds only .npy members", error.Message);
    }

    [Fact]
    public void A_member_present_twice_is_rejected()
    {
        byte[] zip = Zip(("q.npy", Q, CompressionLevel.Optimal), ("q.npy", Q, CompressionLevel.NoCompression));
        var error = Assert.Throws<InputException>(() => Npz.Parse(zip, File));
        Assert.Equal($"{File}: tensor 'q': archive holds the member 'q.npy' twice", error.Message);
    }

    [Fact]
    public void Bytes_that_are_not_a_zip_archive_are_rejected()
    {
        var error = Assert.Throws<InputException>(() => Npz.Parse(Q, File));
        Assert.StartsWith($"{File}: not a valid zip archive", error.Message, StringComparison.Ordinal);
    }
}
