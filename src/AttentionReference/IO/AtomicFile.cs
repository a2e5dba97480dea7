namespace AttentionReference.IO;

/// <summary>
/// Writes a file completely or not at all (the CLI's contract: an output is never left half-written). The bytes go
/// to a temporary file in the target's directory (same file system, so the final rename is atomic), are flushed to
/// disk, and the temporary is then renamed over the target. On any failure the temporary is deleted and the target,
/// if it existed, is left as it was.
/// </summary>
public static class AtomicFile
{
    /// <summary>Atomically replaces <paramref name="path"/> with <paramref name="bytes"/>.</summary>
    public static void WriteAllBytes(string path, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        Write(path, stream => stream.Write(bytes));
    }

    /// <summary>Atomically replaces <paramref name="path"/> with whatever <paramref name="write"/> writes to the stream.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string target = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(target) ?? throw new ArgumentException($"'{path}' names no file", nameof(path));
        // A hidden, unique name: two concurrent writers never share a temporary, and a crash leaves a file that
        // clearly is not an output.
        string temporary = Path.Combine(directory, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, target, overwrite: true);
        }
        catch
        {
            DeleteQuietly(temporary);
            throw;
        }
    }

    private static void DeleteQuietly(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // The original failure is the one worth reporting; a temporary we cannot delete is secondary.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }
    }
}
