using AttentionReference.Forms;
using AttentionReference.Tensors;

namespace AttentionReference.Bench;

/// <summary>
/// One benchmark: a form's variant at a size, with the parameters and inputs it runs on and the FLOPs it is credited
/// with (<see cref="FlopModel"/>). Inputs are made on demand: <see cref="Inputs"/> takes the number of one of several
/// independent random sets, so that runs can rotate inputs.
/// </summary>
/// <param name="Form">The form.</param>
/// <param name="Variant">Its variant.</param>
/// <param name="Size">The problem size.</param>
/// <param name="Parameters">The form's parameters.</param>
/// <param name="Flops">The FLOPs the forward is credited with.</param>
/// <param name="Backward">Time the variant's backward pass instead: inputs carry a unit-normal upstream gradient for every
/// output, made with one forward run when the inputs are made (outside the timed runs); Flops stay the forward's.</param>
public sealed record BenchCase(IForm Form, string Variant, BenchSize Size, FormParameters Parameters, double Flops, bool Backward = false)
{
    /// <summary>"softmax/tiled", or "softmax/tiled backward".</summary>
    public string Id => $"{Form.Name}/{Variant}" + (Backward ? " backward" : "");

    /// <summary>The form's family ("softmax", "gated linear", ...).</summary>
    public string Family => Form.Family;

    /// <summary>Input set <paramref name="inputSet"/> (0, 1, ...): the same numbers on every machine.</summary>
    public IReadOnlyDictionary<string, Tensor> Inputs(int inputSet = 0)
    {
        var inputs = InputFactory.Make(this, inputSet);
        if (!Backward || Form is not AttentionReference.Forms.Form { HasGradients: true } withGradients)
        {
            return inputs;
        }
        var random = new AttentionReference.Golden.GoldenRandom((ulong)(1000 + inputSet));
        var upstream = withGradients.Contract.UpstreamGradients(Form.Run(Variant, inputs, Parameters), shape => random.Normal(1, shape));
        return new Dictionary<string, Tensor>(inputs.Concat(upstream), StringComparer.Ordinal);
    }

    /// <summary>Runs the case on the exact CPU reference: the forward, or the backward pass of a backward case.</summary>
    public IReadOnlyDictionary<string, Tensor> RunCpu(IReadOnlyDictionary<string, Tensor> inputs)
    {
        if (!Backward)
        {
            return Form.Run(Variant, inputs, Parameters);
        }
        var form = Form as AttentionReference.Forms.Form ?? throw new InputException($"{Form.Name} has no backward pass") { Unsupported = true };
        return form.HasGradients ? form.Backward(Variant, form.Contract.Bind(inputs, Parameters))
            : throw new InputException($"{Form.Name} has no backward pass") { Unsupported = true };
    }

    /// <inheritdoc/>
    public override string ToString() => Id;

    /// <summary>
    /// Every variant of every form in <see cref="FormCatalog.All"/> at <paramref name="size"/> (new forms appear by
    /// themselves), narrowed by <paramref name="filter"/>.
    /// </summary>
    public static IReadOnlyList<BenchCase> All(BenchSize size, CaseFilter? filter = null)
    {
        ArgumentNullException.ThrowIfNull(size);
        var cases = new List<BenchCase>();
        foreach (IForm form in FormCatalog.All)
        {
            foreach (string variant in form.Variants)
            {
                if (filter is not null && !filter.Matches(form, variant))
                {
                    continue;
                }
                FormParameters parameters = InputFactory.Parameters(form, variant);
                cases.Add(new BenchCase(form, variant, size, parameters, FlopModel.Flops(form, variant, size, parameters)));
            }
        }
        return cases;
    }
}

/// <summary>Which cases to run: a family, form and variant (each null = all; several values separated by commas).</summary>
public sealed record CaseFilter(string? Family = null, string? Form = null, string? Variant = null)
{
    /// <summary>Whether <paramref name="form"/>'s <paramref name="variant"/> passes.</summary>
    public bool Matches(IForm form, string variant)
    {
        ArgumentNullException.ThrowIfNull(form);
        return Any(Family, form.Family) && Any(Form, form.Name) && Any(Variant, variant);
    }

    private static bool Any(string? wanted, string value) =>
        wanted is null || wanted.Split(',', StringSplitOptions.TrimEntries).Any(w => string.Equals(w, value, StringComparison.OrdinalIgnoreCase)
                                                                                  || string.Equals(w.Replace('_', ' '), value, StringComparison.OrdinalIgnoreCase));
}
