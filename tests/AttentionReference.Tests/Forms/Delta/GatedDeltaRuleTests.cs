using AttentionReference.Forms;
using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>gated_delta_rule's laws: the family's (<see cref="DeltaRuleFormLaws"/>) with the decay γ_t = g_t on every key channel.</summary>
public sealed class GatedDeltaRuleTests : DeltaRuleFormLaws
{
    private protected override IForm Form { get; } = new GatedDeltaRule();

    private protected override string[] Names { get; } = ["q", "k", "v", "g", "beta"];

    private protected override Func<int, int, int, int, double> DecayOf(IReadOnlyDictionary<string, Tensor> x)
    {
        Tensor g = x["g"];
        return (b, t, h, _) => g[b, t, h];
    }
}
