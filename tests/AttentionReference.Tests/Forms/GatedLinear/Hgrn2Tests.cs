using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>hgrn2's laws: the stateful-form laws and the family's gradient edge cases.</summary>
public sealed class Hgrn2Tests : GatedLinearFormLaws
{
    protected override IForm Form { get; } = new Hgrn2();

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["gk"] = c.Gates(random, b, t, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
    };
}
