using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// Reads and writes tensor files by extension: .safetensors (the primary format, with metadata), .npy (one tensor,
/// named by the file's stem) and .npz (read only). Every failure a user can cause (a missing file, an unknown
/// extension, a malformed file, an unwritable path) is a one-line <see cref="InputException"/> naming the file.
/// </summary>
public static class TensorFiles
{
    /// <summary>The extensions <see cref="Read"/> understands.</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".safetensors", ".npy", ".npz"];

    /// <summary>Reads <paramref name="path"/>, choosing the format by its extension.</summary>
    public static TensorFile Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string extension = Extension(path);
        if (!File.Exists(path))
        {
            throw new InputException("no such file", path);
        }
        switch (extension)
        {
            case ".safetensors":
                return SafeTensors.Read(path);
            case ".npz":
                return Npz.Read(path);
            case ".npy":
                var file = new TensorFile(path);
                file.Add(Path.GetFileNameWithoutExtension(path), Npy.Read(path));
                return file;
            default:
                throw Unknown(path, extension);
        }
    }

    /// <summary>
    /// Writes <paramref name="file"/> to <paramref name="path"/> atomically: as .safetensors, or as .npy when it holds
    /// exactly one tensor (its name and the metadata are not stored: .npy has no place for them).
    /// </summary>
    public static void Write(string path, TensorFile file)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(file);
        string extension = Extension(path);
        try
        {
            switch (extension)
            {
                case ".safetensors":
                    SafeTensors.Write(path, file);
                    break;
                case ".npy":
                    if (file.Count != 1)
                    {
                        throw new InputException(
                            $".npy holds exactly one tensor but {file.Count} were given ({string.Join(", ", file.Names)}); write .safetensors instead", path);
                    }
                    var (name, tensor) = file.Tensors.GetAt(0);
                    if (tensor.DType == DType.BF16)
                    {
                        throw new InputException(".npy has no bfloat16 dtype; write bf16 tensors to .safetensors", path, name);
                    }
                    Npy.Write(path, tensor);
                    break;
                case ".npz":
                    throw new InputException("writing .npz is not supported; write .safetensors (or .npy for one tensor)", path);
                default:
                    throw Unknown(path, extension);
            }
        }
        catch (IOException e)
        {
            throw new InputException($"cannot write: {e.Message}", path, inner: e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new InputException($"cannot write: {e.Message}", path, inner: e);
        }
    }

    private static string Extension(string path) => Path.GetExtension(path).ToLowerInvariant();

    private static InputException Unknown(string path, string extension) => new(
        $"unknown file type '{extension}'; expected {string.Join(", ", Extensions)}", path);
}
