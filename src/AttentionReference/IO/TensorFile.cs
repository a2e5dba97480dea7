using System.Diagnostics.CodeAnalysis;
using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// The contents of one tensor file: named tensors in file order, plus the string-to-string metadata that
/// safetensors keeps under <c>__metadata__</c> (empty for .npy and .npz, which have no place for it).
/// </summary>
public sealed class TensorFile
{
    /// <summary>An empty file with no source.</summary>
    public TensorFile() { }

    /// <summary>An empty file that remembers where it came from, for error messages.</summary>
    public TensorFile(string? source) => Source = source;

    /// <summary>The tensors by name, in the order the file lists them (the order a writer lays them out).</summary>
    public OrderedDictionary<string, Tensor> Tensors { get; } = new(StringComparer.Ordinal);

    /// <summary>safetensors' <c>__metadata__</c>: parameters of the case, provenance of an output.</summary>
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Names of tensors the file holds but that were not read, because the reader was told which tensors are wanted
    /// (see <see cref="TensorFiles.Read(string, Func{string, bool}?)"/>): their bytes were neither inflated nor decoded.
    /// </summary>
    public IList<string> Unread { get; } = new List<string>();

    /// <summary>The path the file was read from, if any; <see cref="this[string]"/> names it in its errors.</summary>
    public string? Source { get; }

    /// <summary>Number of tensors.</summary>
    public int Count => Tensors.Count;

    /// <summary>The tensor names in file order.</summary>
    public IEnumerable<string> Names => Tensors.Keys;

    /// <summary>
    /// The tensor called <paramref name="name"/>. A missing tensor is bad input, not a bug: the getter throws an
    /// <see cref="InputException"/> naming the file, the tensor and the names the file does hold.
    /// </summary>
    public Tensor this[string name]
    {
        get => Tensors.TryGetValue(name, out Tensor? tensor)
            ? tensor
            : throw new InputException(
                Count + Unread.Count == 0 ? "no such tensor; the file holds none" : $"no such tensor; the file holds {string.Join(", ", Names.Concat(Unread))}",
                Source, name);
        set => Tensors[name] = value;
    }

    /// <summary>Appends a tensor; a name already present is an <see cref="ArgumentException"/>.</summary>
    public TensorFile Add(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(tensor);
        if (!Tensors.TryAdd(name, tensor))
        {
            throw new ArgumentException($"tensor '{name}' is already in the file", nameof(name));
        }
        return this;
    }

    /// <summary>Whether the file holds a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => Tensors.ContainsKey(name);

    /// <summary>The tensor called <paramref name="name"/>, if present.</summary>
    public bool TryGet(string name, [MaybeNullWhen(false)] out Tensor tensor) => Tensors.TryGetValue(name, out tensor);
}
