using AttentionReference.Tensors;

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

    /// <summary>
    /// Atomically replaces <paramref name="path"/> with whatever <paramref name="write"/> writes to the stream. A path
    /// that cannot be written (a directory, a missing folder, a file where a folder should be, no permission, a full
    /// disk) is an <see cref="InputException"/> that names it and says why, and leaves nothing behind.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string target = Path.GetFullPath(path);
        string directory = CheckWritable(path, target);
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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            DeleteQuietly(temporary);
            string reason = e is UnauthorizedAccessException
                ? $"permission denied in the folder '{directory}'"
                : e.Message.Replace(temporary, target, StringComparison.Ordinal);
            throw new InputException($"cannot write: {reason}", path, inner: e);
        }
        catch
        {
            DeleteQuietly(temporary);
            throw;
        }
    }

    /// <summary>
    /// Checks, before anything is computed, that <paramref name="path"/> names a file in an existing folder (not a
    /// directory, not under a file); an <see cref="InputException"/> naming the path and the reason otherwise. Whether
    /// the folder admits a new file is known only when <see cref="Write"/> tries.
    /// </summary>
    public static void CheckWritable(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        CheckWritable(path, Path.GetFullPath(path));
    }

    /// <summary>The folder <paramref name="target"/> goes into, checked as <see cref="CheckWritable(string)"/> says.</summary>
    private static string CheckWritable(string path, string target)
    {
        if (Directory.Exists(target))
        {
            throw new InputException("cannot write: is a directory; expected a file name", path);
        }
        string directory = Path.GetDirectoryName(target) ?? throw new InputException("cannot write: names no file", path);
        if (!Directory.Exists(directory))
        {
            throw new InputException(FileInTheWay(directory) is { } file
                ? $"cannot write: '{file}' is a file, not a folder"
                : $"cannot write: the folder '{directory}' does not exist", path);
        }
        return directory;
    }

    /// <summary>
    /// Makes the folder <paramref name="path"/> (and the folders above it) unless it exists; a file in the way or a
    /// folder that cannot be made is an <see cref="InputException"/> naming the path and the reason.
    /// </summary>
    public static void CreateFolder(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            return;
        }
        if (FileInTheWay(full) is { } file)
        {
            throw new InputException(file == full ? "cannot make the folder: a file of that name exists" : $"cannot make the folder: '{file}' is a file, not a folder", path);
        }
        try
        {
            Directory.CreateDirectory(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"cannot make the folder: {(e is UnauthorizedAccessException ? "permission denied" : e.Message)}", path, inner: e);
        }
    }

    /// <summary>The file, if any, that <paramref name="folder"/> or the nearest of its ancestors that exists is.</summary>
    private static string? FileInTheWay(string folder)
    {
        string? ancestor = folder;
        while (ancestor is not null && !Directory.Exists(ancestor) && !File.Exists(ancestor))
        {
            ancestor = Path.GetDirectoryName(ancestor);
        }
        return ancestor is not null && File.Exists(ancestor) ? ancestor : null;
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
