using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// Which head symbol reads a group of another's heads: with <c>new HeadGroup("HV", "H")</c> value head hv reads q/k head
/// hv / (HV/H) (GVA), and HV must be a multiple of H.
/// </summary>
/// <param name="Heads">The symbol of the heads that read ("HV", "Hq", "D").</param>
/// <param name="Groups">The symbol of the heads that are read ("H", "Hkv", "G").</param>
/// <param name="Why">What the grouping is, for the error message ("GVA", "GQA").</param>
public sealed record HeadGroup(string Heads, string Groups, string Why);

/// <summary>
/// A shape symbol that no input carries alone but that follows from bound symbols and the parameters (linear's feature
/// size F from K and feature_map), bound before the tensors that use it are checked.
/// </summary>
/// <param name="Symbol">The symbol ("F").</param>
/// <param name="Extent">Its extent from the symbols of the inputs without a sequence axis and the parameters as given; bad input throws <see cref="InputException"/>.</param>
public sealed record DerivedSymbol(string Symbol, Func<Dims, FormParameters, int> Extent);

/// <summary>
/// A form's contract, written once: its name, family, source file, variants, input and output tensors, parameters and
/// head groupings. <see cref="Bind"/> checks a call against it and returns the bound <see cref="Problem"/> that the CPU
/// form, the GPU version and the command line all use; nothing else checks shapes or parses parameters.
/// </summary>
public sealed record FormContract(string Name, string Family, string SourceFile)
{
    /// <summary>The variants; the first is the default.</summary>
    public required IReadOnlyList<string> Variants { get; init; }

    /// <summary>
    /// The variant that is the form's definition, the one every other is held to: "recurrent" where the form has it,
    /// else "naive", else the first. Its method (the variant's name in Pascal case) ends what a reader must read.
    /// </summary>
    public string Definition
    {
        get => _definition ?? (Variants.Contains("recurrent") ? "recurrent" : Variants.Contains("naive") ? "naive" : Variants[0]);
        init => _definition = value;
    }

    private readonly string? _definition;

    /// <summary>The input tensors.</summary>
    public required IReadOnlyList<TensorSpec> Inputs { get; init; }

    /// <summary>The output tensors.</summary>
    public required IReadOnlyList<TensorSpec> Outputs { get; init; }

    /// <summary>The scalar parameters.</summary>
    public IReadOnlyList<ParameterSpec> Parameters { get; init; } = [];

    /// <summary>
    /// The cotangent of each output, an optional input named "d" + the output's name ("do", "dfinal_state" alias fla's
    /// "dht"), of the output's shape: what the backward pass propagates; an absent one is zero.
    /// </summary>
    public IReadOnlyList<TensorSpec> Cotangents => _cotangents ??= Outputs.Select(o => new TensorSpec("d" + o.Name, o.Shape,
        $"cotangent of {o.Name} (zero if absent)", Optional: true, Aliases: o.Name == "final_state" ? ["dht"] : null)).ToArray();

    /// <summary>
    /// An upstream gradient for each of <paramref name="outputs"/> (a forward run's), under its cotangent's name and of
    /// its shape, drawn by <paramref name="draw"/> in the contract's order of the outputs: what a golden case or a
    /// benchmark feeds a backward pass.
    /// </summary>
    public Dictionary<string, Tensor> UpstreamGradients(IReadOnlyDictionary<string, Tensor> outputs, Func<int[], Tensor> draw)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(draw);
        var upstream = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        for (int i = 0; i < Outputs.Count; i++)
        {
            if (outputs.TryGetValue(Outputs[i].Name, out Tensor? output))
            {
                upstream[Cotangents[i].Name] = draw(output.ShapeArray());
            }
        }
        return upstream;
    }

    /// <summary>
    /// The gradient of each differentiable input, an output of the backward pass named "d" + the input's name ("dq",
    /// "dinitial_state" alias fla's "dh0"), of the input's shape; "d" + each of the input's aliases names it too (rwkv6's
    /// q alias r: fla's chunk_rwkv6 returns dr).
    /// </summary>
    public IReadOnlyList<TensorSpec> Gradients => _gradients ??= Inputs.Where(i => i.Differentiable).Select(i => new TensorSpec("d" + i.Name,
        i.Shape, $"gradient of {i.Name}", Aliases: GradientAliases(i))).ToArray();

    private static string[]? GradientAliases(TensorSpec input)
    {
        string[] aliases = [.. (input.Aliases ?? []).Select(a => "d" + a), .. input.Name == "initial_state" ? ["dh0"] : Array.Empty<string>()];
        return aliases.Length == 0 ? null : aliases;
    }

    private IReadOnlyList<TensorSpec>? _cotangents, _gradients;

    /// <summary>The input whose gradient is <paramref name="gradient"/> ("q" for "dq"), or null when it names none.</summary>
    public string? InputOfGradient(string gradient) =>
        Gradients.Any(g => g.Name == gradient) ? gradient[1..] : null;

    /// <summary>Head symbols that read groups of another's heads (GQA, GVA, mamba's B/C groups).</summary>
    public IReadOnlyList<HeadGroup> Groups { get; init; } = [];

    /// <summary>
    /// Symbols derived from others and the parameters, each bound after the inputs without a sequence axis (q, k, proj)
    /// and before those with one (the states [N,...]), so a state of the wrong size fails the same shape check as any tensor.
    /// </summary>
    public IReadOnlyList<DerivedSymbol> Derived { get; init; } = [];

    /// <summary>The symbol of the number of independent sequences (B, or N with <c>cu_seqlens</c>): "N", or "S" for the state-space forms.</summary>
    public string SequenceSymbol { get; init; } = "N";

    /// <summary>The time symbols: every symbol of the specs that starts with T, unless a form names its own ("L" for mamba).</summary>
    public IReadOnlyList<string> TimeSymbols
    {
        get => _timeSymbols ??= Inputs.Concat(Outputs).SelectMany(s => s.Alternatives.SelectMany(a => a))
            .Where(s => s.StartsWith('T')).Distinct(StringComparer.Ordinal).ToArray();
        init => _timeSymbols = value;
    }

    private IReadOnlyList<string>? _timeSymbols;

    /// <summary>
    /// Checks a call against the contract and binds it: resolves names and aliases, checks dtypes, binds every input's
    /// shape symbols (the first tensor that uses a symbol fixes it), slices the sequences (<see cref="Sequences"/>),
    /// checks the head groupings and reads every parameter by its rule. Bad input is an <see cref="InputException"/>
    /// naming the tensor or parameter and what was expected.
    /// </summary>
    public Problem Bind(IReadOnlyDictionary<string, Tensor> tensors, FormParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(parameters);
        var dims = new Dims();
        var inputs = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var shapes = new Dictionary<string, string[]>(StringComparer.Ordinal);
        TensorSpec[] given = [.. Inputs, .. Cotangents]; // the cotangents of a backward pass are inputs too
        foreach (TensorSpec spec in given)
        {
            if (spec.Resolve(tensors) is { } tensor)
            {
                inputs[spec.Name] = tensor;
            }
        }
        // Shapes first; the tensors indexed by sequence wait until the sequences are known.
        bool PerSequence(TensorSpec spec) => spec.Alternatives.Any(a => a.Contains(SequenceSymbol));
        foreach (TensorSpec spec in given.Where(s => s.Varlen is null && !PerSequence(s) && inputs.ContainsKey(s.Name)))
        {
            shapes[spec.Name] = BindShape(dims, spec, inputs[spec.Name]);
        }
        foreach (DerivedSymbol derived in Derived)
        {
            dims.Set(derived.Symbol, derived.Extent(dims, parameters));
        }
        IReadOnlyList<Sequence> sequences = Sequences.Of(this, dims, inputs);
        dims.Set(SequenceSymbol, sequences.Count);
        foreach (TensorSpec spec in given.Where(s => s.Varlen is null && PerSequence(s) && inputs.ContainsKey(s.Name)))
        {
            shapes[spec.Name] = BindShape(dims, spec, inputs[spec.Name]);
        }
        foreach (HeadGroup group in Groups)
        {
            RequireGrouping(dims, group);
        }
        var values = Parameters.ToDictionary(p => p.Name, p => p.ReadValue(parameters), StringComparer.Ordinal);
        return new Problem(this, dims, inputs, shapes, sequences, values, parameters);
    }

    /// <summary>Binds the tensor's shape to the alternative of its rank and returns that alternative's symbols.</summary>
    private static string[] BindShape(Dims dims, TensorSpec spec, Tensor tensor)
    {
        if (spec.Broadcast)
        {
            string[] full = spec.Alternatives[0];
            dims.BindBroadcast(spec.Name, tensor, full);
            return full;
        }
        string[] symbols = spec.ShapeOfRank(tensor.Rank)
            ?? throw new InputException($"expected shape {spec.ShapeText}, found {tensor.ShapeString}", tensor: spec.Name);
        dims.Bind(spec.Name, tensor, string.Join(",", symbols));
        return symbols;
    }

    private void RequireGrouping(Dims dims, HeadGroup group)
    {
        if (!dims.IsBound(group.Heads) || !dims.IsBound(group.Groups))
        {
            return;
        }
        int heads = dims[group.Heads], groups = dims[group.Groups];
        if (groups == 0 ? heads != 0 : heads % groups != 0)
        {
            string reader = Inputs.Concat(Outputs).First(s => s.Alternatives.Any(a => a.Contains(group.Heads))).Name;
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"{group.Heads} = {heads} must be a multiple of {group.Groups} = {groups} ({group.Why})"), tensor: reader);
        }
    }
}
