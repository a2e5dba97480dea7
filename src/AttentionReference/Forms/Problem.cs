using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// A call bound to a form's contract (<see cref="FormContract.Bind"/>): the input tensors by canonical name, the extent of
/// every shape symbol, the independent sequences, and every parameter read by its rule. The CPU form, the GPU version and
/// the command line read a call only through this, so a check or a default is written once, in the contract.
/// </summary>
public sealed class Problem
{
    private readonly Dictionary<string, Tensor> _inputs;
    private readonly Dictionary<string, string[]> _shapes;
    private readonly Dictionary<string, object?> _values;

    internal Problem(FormContract contract, Dims dims, Dictionary<string, Tensor> inputs, Dictionary<string, string[]> shapes,
        IReadOnlyList<Sequence> sequences, Dictionary<string, object?> values, FormParameters parameters)
    {
        (Contract, Dims, _inputs, _shapes, Sequences, _values, Parameters) = (contract, dims, inputs, shapes, sequences, values, parameters);
    }

    /// <summary>The contract the call was bound to.</summary>
    public FormContract Contract { get; }

    /// <summary>The extents of the shape symbols (a form may bind derived ones, e.g. a feature size F, before its outputs).</summary>
    public Dims Dims { get; }

    /// <summary>The extent bound to <paramref name="symbol"/>.</summary>
    public int this[string symbol] => Dims[symbol];

    /// <summary>The independent sequences: the B batch entries, or the N sequences of <c>cu_seqlens</c>.</summary>
    public IReadOnlyList<Sequence> Sequences { get; }

    /// <summary>The parameters as given (text).</summary>
    public FormParameters Parameters { get; }

    /// <summary>Whether the input <paramref name="name"/> was given.</summary>
    public bool Has(string name) => _inputs.ContainsKey(name);

    /// <summary>The input <paramref name="name"/> (a required one, or one the caller knows is present).</summary>
    public Tensor Input(string name) => _inputs.TryGetValue(name, out Tensor? tensor)
        ? tensor
        : throw new InvalidOperationException($"{Contract.Name}: no input '{name}' in this call");

    /// <summary>The input <paramref name="name"/>, or null when it was left out.</summary>
    public Tensor? Optional(string name) => _inputs.GetValueOrDefault(name);

    /// <summary>
    /// The symbols of the shape the tensor <paramref name="name"/> was bound to: an input (a cotangent included), an
    /// output, or the gradient of a given input (its input's shape).
    /// </summary>
    public string[] ShapeOf(string name) =>
        _shapes.TryGetValue(name, out string[]? symbols) ? symbols
        : Contract.Outputs.FirstOrDefault(s => s.Name == name)?.Alternatives[0]
        ?? (Contract.InputOfGradient(name) is { } input && _shapes.TryGetValue(input, out string[]? inputSymbols) ? inputSymbols : null)
        ?? throw new InvalidOperationException($"{Contract.Name}: no tensor '{name}' in this call");

    /// <summary>The value of <paramref name="parameter"/>, read at binding by its rule.</summary>
    public T Get<T>(Parameter<T> parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        return _values.TryGetValue(parameter.Name, out object? value)
            ? (T)value!
            : throw new InvalidOperationException($"{Contract.Name} has no parameter '{parameter.Name}'");
    }

    /// <summary>
    /// The same call with one more input, computed from the others (a reduction: hgrn2's k = 1 − exp(gk) for the gla
    /// engine), of symbolic shape <paramref name="shape"/> under the bound symbols.
    /// </summary>
    public Problem With(string name, Tensor tensor, string shape)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentNullException.ThrowIfNull(shape);
        string[] symbols = shape.Split(',', StringSplitOptions.TrimEntries);
        if (!Dims.Shape(shape).SequenceEqual(tensor.Shape))
        {
            throw new InvalidOperationException($"derived tensor '{name}' {tensor.ShapeString} does not have shape [{shape}]");
        }
        return new Problem(Contract, Dims,
            new Dictionary<string, Tensor>(_inputs, StringComparer.Ordinal) { [name] = tensor },
            new Dictionary<string, string[]>(_shapes, StringComparer.Ordinal) { [name] = symbols },
            Sequences, _values, Parameters);
    }

    /// <summary>A zero tensor for the output <paramref name="name"/>, its shape from the contract under the bound symbols.</summary>
    public Tensor NewOutput(string name) => Tensor.Zeros(Dims.Shape(string.Join(",", ShapeOf(name))));
}
