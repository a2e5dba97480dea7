namespace AttentionReference.Tensors;

/// <summary>
/// Bad input: a malformed or lying file, a missing or misshapen tensor, a wrong dtype, a bad parameter. The message is
/// one line naming the file (when known), the tensor (when known) and what was expected; the CLI prints it to stderr
/// and exits with code 2.
/// </summary>
public sealed class InputException : Exception
{
    /// <summary>A bad-input error about <paramref name="tensor"/> in <paramref name="file"/> (either may be null).</summary>
    public InputException(string detail, string? file = null, string? tensor = null, Exception? inner = null)
        : base(Compose(detail, file, tensor), inner)
    {
        Detail = detail;
        File = file;
        Tensor = tensor;
    }

    /// <summary>Creates an error with no file or tensor named.</summary>
    public InputException() : this("bad input") { }

    /// <summary>Creates an error with no file or tensor named.</summary>
    public InputException(string detail) : this(detail, null, null) { }

    /// <summary>Creates an error with no file or tensor named.</summary>
    public InputException(string detail, Exception inner) : this(detail, null, null, inner) { }

    /// <summary>What is wrong, without the file and tensor prefix.</summary>
    public string Detail { get; }

    /// <summary>The file the bad input came from, if known.</summary>
    public string? File { get; }

    /// <summary>The tensor concerned, if any.</summary>
    public string? Tensor { get; }

    /// <summary>
    /// The input is valid, but the chosen backend has no implementation of this form or variant (a GPU kernel not
    /// written yet): still bad input for a single run (exit 2), but a skip, not a failure, when verifying goldens.
    /// </summary>
    public bool Unsupported { get; init; }

    /// <summary>This error with <paramref name="file"/> attached, unless a file is named already.</summary>
    public InputException InFile(string file) =>
        File is null ? new InputException(Detail, file, Tensor, this) { Unsupported = Unsupported } : this;

    private static string Compose(string detail, string? file, string? tensor)
    {
        string where = (file, tensor) switch
        {
            (null, null) => "",
            (null, _) => $"tensor '{tensor}': ",
            (_, null) => $"{file}: ",
            _ => $"{file}: tensor '{tensor}': ",
        };
        // One line, always: a multi-line detail would break the CLI's contract.
        return (where + detail).ReplaceLineEndings(" ");
    }
}
