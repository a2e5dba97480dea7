using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>retention's laws: the stateful-form laws and the family's gradient edge cases, with RetNet's default decays in half the cases and drawn ones otherwise.</summary>
public sealed class RetentionTests : GatedLinearFormLaws
{
    protected override IForm Form { get; } = new Retention();

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t)
    {
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
        };
        if (c.Seed % 2 == 0)
        {
            // One decay per head, the same in every call of the case, with its log gate held to [−11, −1e-5]: the
            // finite-difference law moves γ by 1e-6 · u, which must stay inside (0, 1]. The reductions to simple_gla
            // cover the full range of decays (GatedLinearReductionTests).
            var gamma = c.Gates(new Random(c.Seed), c.H);
            inputs["gamma"] = new Tensor([c.H], gamma.Data.Select(g => Math.Exp(Math.Clamp(g, -11, -1e-5))).ToArray());
        }
        return inputs;
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void A_decay_outside_zero_to_one_is_bad_input(double γ)
    {
        var inputs = Inputs(new StatefulCase(1, 3, 2, 2, 2, GateRegime.Mild, "recurrent", 2, 0, false, 1), new Random(1), 1, 3);
        inputs["gamma"] = new Tensor([2], [0.5, γ]);
        var error = Assert.Throws<InputException>(() => Form.Call("recurrent", inputs));
        Assert.Equal("gamma", error.Tensor);
    }
}
