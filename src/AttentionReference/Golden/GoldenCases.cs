using AttentionReference.Tensors;

namespace AttentionReference.Golden;

/// <summary>
/// One golden case: a form, a variant, parameters and a recipe for its inputs. The expected outputs are whatever the
/// exact reference computes from those inputs when <c>attnref golden write</c> runs.
/// </summary>
public sealed record GoldenCase(
    string Form,
    string Name,
    string Variant,
    IReadOnlyDictionary<string, string> Parameters,
    Func<GoldenRandom, IReadOnlyDictionary<string, Tensor>> MakeInputs)
{
    /// <summary>The end of a gradient case's name: the forward case's name with upstream gradients ("causal_gqa_grad").</summary>
    public const string GradientSuffix = "_grad";

    /// <summary>"softmax/causal_gqa": also the path of the case file below the golden folder, less its extension.</summary>
    public string Id => $"{Form}/{Name}";

    /// <summary>The inputs, the same on every machine.</summary>
    public IReadOnlyDictionary<string, Tensor> Inputs() => MakeInputs(GoldenRandom.For(Id));
}

/// <summary>
/// Every golden case: small shapes, f64, each pinning one option or edge of a form. Each family keeps its cases in
/// its own file under Golden/Cases/; their order here is the manifest's order.
/// </summary>
public static class GoldenCases
{
    /// <summary>The forward cases, by family.</summary>
    private static IReadOnlyList<GoldenCase> Forward { get; } =
    [
        .. Cases.SoftmaxCases.All,
        .. Cases.SoftmaxVariantsCases.All,
        .. Cases.LinearCases.All,
        .. Cases.RwkvMlstmCases.All,
        .. Cases.DeltaCases.All,
        .. Cases.StateSpaceCases.All,
        .. Cases.HybridCases.All,
    ];

    /// <summary>All cases: the forward cases by family, then the gradient cases (forward cases with upstream gradients).</summary>
    public static IReadOnlyList<GoldenCase> All { get; } = [.. Forward, .. Cases.GradientCases.All(Forward)];
}
