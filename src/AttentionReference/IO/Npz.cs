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
    public static TensorFile Read(string path) => Read(path, wanted: null, ReadLimits.Default);

    /// <summary>
    /// Reads the members of an .npz file for which <paramref name="wanted"/> holds (all when null), within
    /// <paramref name="limits"/>; the others are listed in <see cref="TensorFile.Unread"/>, never inflated. The archive
    /// is read from the file where it lies, member by member, not loaded whole.
    /// </summary>
    public static TensorFile Read(string path, Func<string, bool>? wanted, ReadLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        using FileStream stream = FileBytes.Open(path, limits.MaxFileBytes, out _);
        return Parse(stream, path, wanted, limits);
    }

    /// <summary>Parses the bytes of an .npz file; <paramref name="fileName"/> names it in errors.</summary>
    public static TensorFile Parse(byte[] bytes, string fileName)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        using var stream = new MemoryStream(bytes, writable: false);
        return Parse(stream, fileName);
    }

    /// <summary>Parses an .npz archive from a seekable <paramref name="stream"/>; <paramref name="fileName"/> names it in errors.</summary>
    public static TensorFile Parse(Stream stream, string fileName) => Parse(stream, fileName, wanted: null, ReadLimits.Default);

    /// <summary>
    /// Parses an .npz archive from a seekable <paramref name="stream"/>, inflating only the members for which
    /// <paramref name="wanted"/> holds (all when null). Before a member is inflated, the sizes its zip entry declares are
    /// checked against the archive, deflate's largest expansion and <paramref name="limits"/>; an encrypted member is
    /// refused; inflating stops one byte past the declared size; and the CRC-32 of what was inflated must match the
    /// entry's, as NumPy (through Python's zipfile) requires.
    /// </summary>
    public static TensorFile Parse(Stream stream, string fileName, Func<string, bool>? wanted, ReadLimits limits)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(limits);
        if (!stream.CanSeek)
        {
            // ZipArchive would copy an unseekable stream into memory whole, past every limit.
            throw new ArgumentException("an .npz archive is read from a seekable stream", nameof(stream));
        }
        var file = new TensorFile(fileName);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        long inflated = 0;
        try
        {
            long archiveLength = stream.Length;
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
                if (!seen.Add(name))
                {
                    throw new InputException($"archive holds the member '{entry.FullName}' twice", fileName, name);
                }
                if (wanted is not null && !wanted(name))
                {
                    file.Unread.Add(name);
                    continue;
                }
                file.Add(name, Npy.Parse(ReadMember(entry, archiveLength, limits, ref inflated, fileName, name), fileName, name));
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
        catch (IOException e)
        {
            throw new InputException($"cannot read: {e.Message}", fileName, inner: e);
        }
        return file;
    }

    private static byte[] ReadMember(ZipArchiveEntry entry, long archiveLength, ReadLimits limits, ref long inflated, string fileName, string name)
    {
        if (entry.IsEncrypted)
        {
            throw new InputException("member is encrypted; an .npz member must be stored or deflated in the clear", fileName, name);
        }
        // The sizes the entry declares bound everything below, so they are checked before a byte is inflated.
        long declared = entry.Length, compressed = entry.CompressedLength;
        if (declared > limits.MaxMemberBytes)
        {
            throw new InputException($"member declares {declared} bytes uncompressed; the largest member read is {limits.MaxMemberBytes} bytes", fileName, name);
        }
        if (compressed > archiveLength)
        {
            throw new InputException($"member declares {compressed} compressed bytes, more than the whole archive ({archiveLength} bytes)", fileName, name);
        }
        if (declared > compressed * ReadLimits.DeflateMaxRatio + ReadLimits.DeflateSlackBytes)
        {
            throw new InputException(
                $"member declares {declared} bytes uncompressed from {compressed} compressed bytes, more than deflate can expand ({ReadLimits.DeflateMaxRatio}:1)",
                fileName, name);
        }
        if (declared > limits.MaxInflatedBytes - inflated)
        {
            throw new InputException(
                $"members read from the archive would inflate to more than {limits.MaxInflatedBytes} bytes", fileName, name);
        }
        inflated += declared;

        var bytes = new byte[declared];
        using Stream member = entry.Open();
        try
        {
            member.ReadExactly(bytes);
        }
        catch (EndOfStreamException e)
        {
            throw new InputException($"member is shorter than the {declared} bytes its zip entry declares", fileName, name, e);
        }
        if (member.ReadByte() != -1)
        {
            throw new InputException($"member is longer than the {declared} bytes its zip entry declares", fileName, name);
        }
        uint crc = Crc32.Compute(bytes);
        if (crc != entry.Crc32)
        {
            throw new InputException(
                $"member's CRC-32 is {crc:x8} but its zip entry declares {entry.Crc32:x8}: the archive is corrupt", fileName, name);
        }
        return bytes;
    }
}
