using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// Opens and reads input files, turning every way that can fail into a one-line <see cref="InputException"/>, and
/// reading no more than the file's size as the file system reports it, never more than a stated limit.
/// <para>
/// Only regular files are read. A directory is refused by name. A device, FIFO or socket reports a size of 0 bytes
/// (so does an empty file, which no tensor format allows): it is refused before it is opened, since opening a FIFO
/// blocks until a writer comes and a device such as /dev/zero never ends. A file that holds more bytes than it
/// reports (a special file posing as a regular one) is refused after reading one byte more than its size.
/// </para>
/// </summary>
internal static class FileBytes
{
    /// <summary>The file's size, after checking that <paramref name="path"/> names a readable regular file within the limit.</summary>
    public static long Check(string path, long maxBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            throw new InputException("is a directory; expected a tensor file", path);
        }
        if (!File.Exists(path))
        {
            throw new InputException("no such file", path);
        }
        long length;
        try
        {
            // FileInfo describes a symbolic link itself (its length is that of the target's path): follow links to
            // the file they lead to, so a link to /dev/zero reports 0 bytes and a link to a real input its size.
            FileSystemInfo info = new FileInfo(path);
            if (info.LinkTarget is not null)
            {
                info = info.ResolveLinkTarget(returnFinalTarget: true) ?? throw new InputException("no such file (a broken link)", path);
            }
            length = info is FileInfo file ? file.Length : throw new InputException("is a directory; expected a tensor file", path);
        }
        catch (FileNotFoundException e)
        {
            throw new InputException("no such file (a link to a missing file)", path, inner: e);
        }
        catch (IOException e)
        {
            throw new InputException($"cannot read: {e.Message}", path, inner: e);
        }
        if (length == 0)
        {
            throw new InputException(
                "file reports 0 bytes: it is empty, or not a regular file (a device, FIFO or socket); expected a tensor file", path);
        }
        if (length > maxBytes)
        {
            throw new InputException($"file is {length} bytes; the largest input read is {maxBytes} bytes", path);
        }
        return length;
    }

    /// <summary>Opens a checked regular file for reading; <paramref name="length"/> is its size.</summary>
    public static FileStream Open(string path, long maxBytes, out long length)
    {
        length = Check(path, maxBytes);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        }
        catch (IOException e)
        {
            throw new InputException($"cannot read: {e.Message}", path, inner: e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new InputException($"cannot read: {e.Message}", path, inner: e);
        }
        if (stream.Length != length)
        {
            long now = stream.Length;
            stream.Dispose();
            throw new InputException($"file changed size while being opened ({length} bytes, then {now})", path);
        }
        return stream;
    }

    /// <summary>Reads a checked regular file whole.</summary>
    public static byte[] ReadAll(string path, long maxBytes)
    {
        using FileStream stream = Open(path, maxBytes, out long length);
        var bytes = new byte[length];
        ReadExactly(stream, bytes, path);
        try
        {
            if (stream.ReadByte() != -1)
            {
                throw new InputException(
                    $"file holds more than the {length} bytes it reports: not a regular file, or growing while read", path);
            }
        }
        catch (IOException e)
        {
            throw new InputException($"cannot read: {e.Message}", path, inner: e);
        }
        return bytes;
    }

    /// <summary>Fills <paramref name="destination"/> from the stream's position; a short or failing read is bad input.</summary>
    public static void ReadExactly(Stream stream, Span<byte> destination, string path)
    {
        try
        {
            stream.ReadExactly(destination);
        }
        catch (EndOfStreamException e)
        {
            throw new InputException("file ends before the size it reported: shrinking while read?", path, inner: e);
        }
        catch (IOException e)
        {
            throw new InputException($"cannot read: {e.Message}", path, inner: e);
        }
    }
}
