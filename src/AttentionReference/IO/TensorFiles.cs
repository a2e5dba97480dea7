using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// Reads and writes tensor files by extension: .safetensors (the primary format, with metadata), .npy (one tensor,
/// named by the file's stem) and .npz (read only). Every failure a user can cause (a missing file, an unknown
/// extension, a malformed file, an unwritable path) is a one-line <see cref="InputException"/> naming the file.
/// </summary>
public static class TensorFiles
{
    /// <summary>The extensions <see cref="Read(string)"/> understands.</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".safetensors", ".npy", ".npz"];

    /// <summary>Reads <paramref name="path"/>, choosing the format by its extension.</summary>
    public static TensorFile Read(string path) => Read(path, wanted: null);

    /// <summary>
    /// Reads <paramref name="path"/>, choosing the format by its extension, and only the tensors for which
    /// <paramref name="wanted"/> holds (all when null): the others are listed in <see cref="TensorFile.Unread"/>, their
    /// bytes neither read (safetensors), inflated (.npz) nor decoded. A file's header is checked whole either way.
    /// An .npy file holds one tensor, which is always read. Reading stays within <see cref="ReadLimits.Default"/>.
    /// </summary>
    public static TensorFile Read(string path, Func<string, bool>? wanted) => Read(path, wanted, ReadLimits.Default);

    /// <summary>As <see cref="Read(string, Func{string, bool}?)"/>, within <paramref name="limits"/>.</summary>
    public static TensorFile Read(string path, Func<string, bool>? wanted, ReadLimits limits)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(limits);
        string extension = Extension(path);
        FileBytes.Check(path, limits.MaxFileBytes); // a directory, a missing or special file: named before the extension
        switch (extension)
        {
            case ".safetensors":
                return SafeTensors.Read(path, wanted, limits);
            case ".npz":
                return Npz.Read(path, wanted, limits);
            case ".npy":
                var file = new TensorFile(path);
                file.Add(Path.GetFileNameWithoutExtension(path), Npy.Read(path, limits));
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
