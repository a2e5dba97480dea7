using System.IO.Compression;
using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// NumPy's .npz format (what <c>numpy.savez</c> and <c>savez_compressed</c> write): a zip archive of .npy members,
/// stored or deflated. The tensor name is the member name without ".npy", as <c>numpy.load</c> names it.
/// </summary>
public static class Npz
{
    /// <summary>Reads an .npz file; a missing or malformed file is an <see cref="InputException"/>.</summary>
    public static TensorFile Read(string path) => Parse(FileBytes.ReadAll(path), path);

    /// <summary>Parses the bytes of an .npz file; <paramref name="fileName"/> names it in errors.</summary>
    public static TensorFile Parse(byte[] bytes, string fileName)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        using var stream = new MemoryStream(bytes, writable: false);
        return Parse(stream, fileName);
    }

    /// <summary>Parses an .npz archive from a seekable <paramref name="stream"/>; <paramref name="fileName"/> names it in errors.</summary>
    public static TensorFile Parse(Stream stream, string fileName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(fileName);
        var file = new TensorFile(fileName);
        try
        {
            using var archive = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            foreach (ZipArchiveEntry entry in archive.Entries)
            {
                if (entry.FullName.EndsWith('/'))
                {
                    continue; // a directory entry holds nothing; NumPy never writes one, but zip tools may add them
                }
                if (!entry.FullName.EndsWith(".npy", StringComparison.Ordinal))
                {
                    throw new InputException($"archive member '{entry.FullName}' is not an .npy file; an .npz holds only .npy members", fileName);
                }
                string name = entry.FullName[..^".npy".Length];
                if (file.Contains(name))
                {
                    throw new InputException($"archive holds the member '{entry.FullName}' twice", fileName, name);
                }
                file.Add(name, Npy.Parse(ReadMember(entry, fileName, name), fileName, name));
            }
        }
        catch (InvalidDataException e)
        {
            throw new InputException($"not a valid zip archive: {e.Message}", fileName, inner: e);
        }
        catch (NotSupportedException e)
        {
            throw new InputException($"unsupported zip archive: {e.Message}", fileName, inner: e);
        }
        return file;
    }

    private static byte[] ReadMember(ZipArchiveEntry entry, string fileName, string name)
    {
        // The declared size bounds the allocation, so a lying member cannot make us buffer without limit.
        if (entry.Length > Array.MaxLength)
        {
            throw new InputException($"member is {entry.Length} bytes; members larger than {Array.MaxLength} bytes are not supported", fileName, name);
        }
        var bytes = new byte[entry.Length];
        using Stream member = entry.Open();
        try
        {
            member.ReadExactly(bytes);
        }
        catch (EndOfStreamException e)
        {
            throw new InputException($"member is shorter than the {entry.Length} bytes its zip entry declares", fileName, name, e);
        }
        if (member.ReadByte() != -1)
        {
            throw new InputException($"member is longer than the {entry.Length} bytes its zip entry declares", fileName, name);
        }
        return bytes;
    }
}
