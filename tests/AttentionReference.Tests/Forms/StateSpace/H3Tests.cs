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

    [Law(20)]
    public bool Gradients_at_one_step(DiagonalCase c) =>
        StateSpaceGradients.FiniteAndAgreeing(Form, (c with { T = 1 }).H3Inputs(), c.Seed + 3, c.Parameters);

    [Law(20)]
    public bool Gradients_with_strong_decay_stay_finite_and_agree(DiagonalCase c)
    {
        // As s4d's: dt·A_real ≈ −20 per step, the diagonal SSM's Ā^l kept as the exp of l·dt·A in every variant.
        var strong = c with { T = Math.Max(c.T, 2) * 2, LogDtShift = 6.7 };
        return StateSpaceGradients.FiniteAndAgreeing(Form, strong.H3Inputs(), c.Seed + 3, c.Parameters);
    }

    [Law(50)]
    public bool Gradients_of_the_recurrence_equal_central_finite_differences(DiagonalCase c) =>
        StateSpaceGradients.EqualFiniteDifferences(Form, c.H3Inputs(), new Random(c.Seed + 3), c.Parameters);

    [Law(50)]
    public bool Convolution_backward_equals_the_recurrences(DiagonalCase c) =>
        StateSpaceGradients.EveryVariantEqualsTheDefinition(Form,
            StateSpaceGradients.WithCotangents(Form, c.H3Inputs(), new Random(c.Seed + 3), c.Parameters), c.Parameters);

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
