using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>Reads an input file whole, turning every way that can fail into a one-line <see cref="InputException"/>.</summary>
internal static class FileBytes
{
    public static byte[] ReadAll(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new InputException("no such file", path);
        }
        try
        {
            long length = new FileInfo(path).Length;
            if (length > Array.MaxLength)
            {
                throw new InputException($"file is {length} bytes; inputs larger than {Array.MaxLength} bytes are not supported", path);
            }
            return File.ReadAllBytes(path);
        }
        catch (IOException e)
        {
            throw new InputException($"cannot read: {e.Message}", path, inner: e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new InputException($"cannot read: {e.Message}", path, inner: e);
        }
    }
}
