using AttentionReference.Forms;
using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>kda's laws: the family's (<see cref="DeltaRuleFormLaws"/>) with the decay γ_t = gk_t, on a headwise β.</summary>
public sealed class KdaTests : DeltaRuleFormLaws
{
    private protected override IForm Form { get; } = new Kda();

    private protected override string[] Names { get; } = ["q", "k", "v", "gk", "beta"];

    /// <summary>KDA takes a headwise β only (as fla's chunk_kda): cases with per-value β are run without it.</summary>
    private protected override DeltaCase Fit(DeltaCase c) => c with { PerValueBeta = false };

    private protected override Func<int, int, int, int, double> DecayOf(IReadOnlyDictionary<string, Tensor> x)
    {
        Tensor gk = x["gk"];
        return (b, t, h, d) => gk[b, t, h, d];
    }

    [Fact]
    public void Per_value_beta_is_refused_as_fla_refuses_it()
    {
        var c = new DeltaCase(1, 3, 1, 1, 2, 2, 2, BetaRegime.Usual, 1, true, false, false, 5);
        var x = DeltaLaws.Pick(c.All(), Names);
        var error = Assert.Throws<InputException>(() => Form.Call("recurrent", x));
        Assert.Equal("tensor 'beta': expected shape [B,T,HV], found [1,3,1,2]", error.Message);
    }
}
