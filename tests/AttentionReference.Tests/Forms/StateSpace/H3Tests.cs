using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>h3's laws: convolution = recurrent, with complex or real modes, and causality.</summary>
public sealed class H3Tests
{
    // As for s4d: the same sums in different orders, plus the outer product and the sum over i, exact per term.
    private const double F64 = 1e-12;

    private static readonly H3 Form = new();

    private static Tensor Run(DiagonalCase c, string variant, IReadOnlyDictionary<string, Tensor> x) => Form.Call(variant, x, c.Parameters)["o"];

    [Law]
    public bool Convolution_equals_recurrent(DiagonalCase c)
    {
        var x = c.H3Inputs();
        var recurrent = Run(c, "recurrent", x);
        return Finite(recurrent) && TestTensors.Close(Run(c, "convolution", x), recurrent, F64);
    }

    [Law]
    public bool Outputs_up_to_t_ignore_inputs_after_t(DiagonalCase c)
    {
        var x = c.H3Inputs();
        int t = c.T == 0 ? 0 : c.Split % c.T;
        var random = new Random(c.Seed + 1);
        var changed = new Dictionary<string, Tensor>(x);
        foreach (string name in new[] { "q", "k", "v" })
        {
            changed[name] = ChangedAfter(x[name], 1, t + 1, random);
        }
        // Steps up to t read nothing after it: the same arithmetic on the same numbers, bit for bit.
        return Form.Variants.All(variant => SamePrefix(Run(c, variant, x), Run(c, variant, changed), 1, t + 1));
    }
}
