using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>simple_gla's laws: the stateful-form laws and the family's gradient edge cases.</summary>
public sealed class SimpleGlaTests : GatedLinearFormLaws
{
    protected override IForm Form { get; } = new SimpleGla();

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
        ["g"] = c.Gates(random, b, t, c.H),
    };
}
