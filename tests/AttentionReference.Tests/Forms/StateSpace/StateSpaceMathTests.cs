using AttentionReference.Forms.StateSpace;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>An angle θ over twelve decades (and its sign) and a count of its multiples l·θ, l &lt; Length.</summary>
public sealed record AngleCase(int Length, double θ)
{
    public static Arbitrary<AngleCase> Arbitrary { get; } =
        (from length in Gen.Choose(0, 700)
         from exponent in Gen.Choose(-12, 4)
         from mantissa in Gen.Choose(-1000, 1000)
         select new AngleCase(length, mantissa / 1000.0 * Math.Pow(10, exponent))).ToArbitrary();
}

public sealed class StateSpaceMathTests
{
    [Law]
    public bool Cos_and_sin_of_multiples_are_the_directly_taken_ones_to_a_few_eps(AngleCase c)
    {
        var (cos, sin) = (new double[c.Length], new double[c.Length]);
        StateSpaceMath.CosSinOfMultiples(c.θ, cos, sin);
        double eps = Math.Pow(2, -53);
        for (int l = 0; l < c.Length; l++)
        {
            // l·θ rounds once (ε/2·|lθ| of angle); the two angles mS·θ and j·θ round separately (the same
            // again), and the angle-addition product rounds a few times more: 4ε + 2ε·|lθ| covers both.
            double bound = (4 * eps) + (2 * eps * Math.Abs(l * c.θ));
            if (!(Math.Abs(cos[l] - Math.Cos(l * c.θ)) <= bound && Math.Abs(sin[l] - Math.Sin(l * c.θ)) <= bound))
            {
                return false;
            }
        }
        return true;
    }
}
