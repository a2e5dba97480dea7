using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>gla's laws: the stateful-form laws and the family's gradient edge cases, with the value-side gate gv in half the cases.</summary>
public sealed class GlaTests : GatedLinearFormLaws
{
    protected override IForm Form { get; } = new Gla();

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t)
    {
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
            ["gk"] = c.Gates(random, b, t, c.H, c.K),
        };
        if (c.Seed % 2 == 0)
        {
            inputs["gv"] = c.Gates(random, b, t, c.H, c.V);
        }
        return inputs;
    }
}
