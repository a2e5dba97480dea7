using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>The shared laws for gla, with the value-side gate gv in half the cases.</summary>
public sealed class GlaLaws : StatefulFormLaws
{
    protected override IForm Form => FormCatalog.Find("gla");

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

/// <summary>The shared laws for simple_gla.</summary>
public sealed class SimpleGlaLaws : StatefulFormLaws
{
    protected override IForm Form => FormCatalog.Find("simple_gla");

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
        ["g"] = c.Gates(random, b, t, c.H),
    };
}

/// <summary>The shared laws for retention, with RetNet's default decays in half the cases and drawn ones otherwise.</summary>
public sealed class RetentionLaws : StatefulFormLaws
{
    protected override IForm Form => FormCatalog.Find("retention");

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
            var gamma = c.Gates(new Random(c.Seed), c.H); // one decay per head, the same in every call of the case
            inputs["gamma"] = new Tensor([c.H], gamma.Data.Select(Math.Exp).ToArray());
        }
        return inputs;
    }
}

/// <summary>The shared laws for hgrn2.</summary>
public sealed class Hgrn2Laws : StatefulFormLaws
{
    protected override IForm Form => FormCatalog.Find("hgrn2");

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["gk"] = c.Gates(random, b, t, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
    };
}
