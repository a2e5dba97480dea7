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

/// <summary>A complex ζ of modulus 1e-12 to 2 in any direction.</summary>
public sealed record ZetaCase(double Modulus, double Angle)
{
    public static Arbitrary<ZetaCase> Arbitrary { get; } =
        (from exponent in Gen.Choose(-1200, 30)
         from angle in Gen.Choose(0, 3600)
         select new ZetaCase(Math.Pow(10, exponent / 100.0), angle / 3600.0 * 2 * Math.PI)).ToArbitrary();
}

public sealed class Phi1DerivativeTests
{
    [Law]
    public bool The_derivative_of_the_zoh_factor_matches_its_taylor_series_or_its_closed_form(ZetaCase c)
    {
        // φ₁'(ζ) = (e^ζ(ζ − 1) + 1)/ζ² = Σ_k (k+1)/(k+2)! ζ^k. Below |ζ| = 1 the form sums the series: it is held to the
        // closed form written as (ζ·expm1(ζ) − expm1(ζ) + ζ)/ζ², whose numerator ζ²/2 + … loses about ε/|ζ|² of itself
        // to the cancelling ζ − ζ (1e-8 relative at |ζ| = 1e-4), and below 1e-4 to the series' first three terms (the next
        // is ζ³/30 ≤ 1e-13 of 1/2). From |ζ| = 1 the form takes the closed form: held to the series summed to 60 terms
        // (its terms below 2^k/k! ≤ 2e-64 there, each rounding by ε of at most e²). 1e-7 and 1e-11 relative cover these.
        var ζ = System.Numerics.Complex.FromPolarCoordinates(c.Modulus, c.Angle);
        var actual = StateSpaceMath.Phi1Derivative(ζ);
        System.Numerics.Complex expected;
        if (c.Modulus < 1)
        {
            if (c.Modulus < 1e-4)
            {
                expected = 0.5 + (ζ / 3) + (ζ * ζ / 8); // the series' first terms: the next is ζ³/30
            }
            else
            {
                var e = StateSpaceMath.ExpM1(ζ);
                expected = ((ζ * e) - e + ζ) / (ζ * ζ);
            }
        }
        else
        {
            expected = System.Numerics.Complex.Zero;
            double factorial = 2;
            var power = System.Numerics.Complex.One;
            for (int k = 0; k < 60; k++)
            {
                expected += (k + 1) / factorial * power;
                power *= ζ;
                factorial *= k + 3;
            }
        }
        double bound = c.Modulus < 1e-4 || c.Modulus >= 1 ? 1e-11 : 1e-7;
        return System.Numerics.Complex.Abs(actual - expected) <= bound * System.Numerics.Complex.Abs(expected);
    }
}
