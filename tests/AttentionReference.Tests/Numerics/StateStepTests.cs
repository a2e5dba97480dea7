using AttentionReference.Numerics;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Numerics;

/// <summary>
/// The one-pass state step against the equations written as plain loops, row by row, one fused multiply-add per
/// product as StateStep documents: equal bit for bit, for every shape (K up to 9 rows; V up to 70 columns, so the
/// 32-column Vector512 blocks, the 8- and 4-column Vector256 blocks and the scalar tail all run) and for both
/// layouts (an array per row, one row-major span).
/// </summary>
public sealed class StateStepTests
{
    private sealed record Step(double[][] S, double[] Alpha, double[] Kappa, double[] X, double[] Omega, double[] Y);

    private static Gen<double> Value(int divisor) => Gen.Choose(-1000, 1000).Select(i => i / (double)divisor);

    private static readonly Arbitrary<Step> Steps =
        (from k in Gen.Choose(0, 9)
         from v in Gen.Choose(0, 70)
         from s in Gen.ArrayOf(Gen.ArrayOf(Value(97), v), k)
         from α in Gen.ArrayOf(Gen.Choose(0, 1000).Select(i => i / 1000.0), k)
         from κ in Gen.ArrayOf(Value(311), k)
         from x in Gen.ArrayOf(Value(89), v)
         from ω in Gen.ArrayOf(Value(313), k)
         from y in Gen.ArrayOf(Value(83), v)
         select new Step(s, α, κ, x, ω, y)).ToArbitrary();

    private static double[][] Copy(double[][] s) => s.Select(row => (double[])row.Clone()).ToArray();

    private static double[] Flat(double[][] s) => s.SelectMany(row => row).ToArray();

    /// <summary>S[a, c] = fma(κ_a, x_c, α_a S[a, c]), then y_c = fma(ω_a, S[a, c], y_c), a = 0, 1, … in order.</summary>
    private static (double[][] S, double[] Y) ExpectedWrite(Step c)
    {
        double[][] s = Copy(c.S);
        double[] y = (double[])c.Y.Clone();
        for (int a = 0; a < s.Length; a++)
        {
            for (int j = 0; j < y.Length; j++)
            {
                s[a][j] = Math.FusedMultiplyAdd(c.Kappa[a], c.X[j], c.Alpha[a] * s[a][j]);
                y[j] = Math.FusedMultiplyAdd(c.Omega[a], s[a][j], y[j]);
            }
        }
        return (s, y);
    }

    /// <summary>S[a, c] = α_a S[a, c], then y_c = fma(ω_a, S[a, c], y_c), a = 0, 1, … in order.</summary>
    private static (double[][] S, double[] Y) ExpectedDecay(Step c)
    {
        double[][] s = Copy(c.S);
        double[] y = (double[])c.Y.Clone();
        for (int a = 0; a < s.Length; a++)
        {
            for (int j = 0; j < y.Length; j++)
            {
                s[a][j] = c.Alpha[a] * s[a][j];
                y[j] = Math.FusedMultiplyAdd(c.Omega[a], s[a][j], y[j]);
            }
        }
        return (s, y);
    }

    [Fact]
    public void Decay_write_and_read_on_jagged_rows_equals_the_row_by_row_loops() => PropertyRuns.Check(Prop.ForAll(Steps, c =>
    {
        double[][] s = Copy(c.S);
        double[] y = (double[])c.Y.Clone();
        StateStep.DecayWriteAndRead(new JaggedRows(s, c.X.Length), c.Alpha, c.Kappa, c.X, c.Omega, y);
        var (expectedS, expectedY) = ExpectedWrite(c);
        return Flat(s).SequenceEqual(Flat(expectedS)) && y.SequenceEqual(expectedY);
    }));

    [Fact]
    public void Decay_write_and_read_on_flat_rows_equals_the_row_by_row_loops() => PropertyRuns.Check(Prop.ForAll(Steps, c =>
    {
        double[] s = Flat(c.S);
        double[] y = (double[])c.Y.Clone();
        StateStep.DecayWriteAndRead(new FlatRows(s, c.S.Length, c.X.Length), c.Alpha, c.Kappa, c.X, c.Omega, y);
        var (expectedS, expectedY) = ExpectedWrite(c);
        return s.SequenceEqual(Flat(expectedS)) && y.SequenceEqual(expectedY);
    }));

    [Fact]
    public void Decay_and_read_on_both_layouts_equals_the_row_by_row_loops() => PropertyRuns.Check(Prop.ForAll(Steps, c =>
    {
        double[][] jagged = Copy(c.S);
        double[] flat = Flat(c.S);
        double[] yJagged = (double[])c.Y.Clone(), yFlat = (double[])c.Y.Clone();
        StateStep.DecayAndRead(new JaggedRows(jagged, c.Y.Length), c.Alpha, c.Omega, yJagged);
        StateStep.DecayAndRead(new FlatRows(flat, c.S.Length, c.Y.Length), c.Alpha, c.Omega, yFlat);
        var (expectedS, expectedY) = ExpectedDecay(c);
        return Flat(jagged).SequenceEqual(Flat(expectedS)) && flat.SequenceEqual(Flat(expectedS))
            && yJagged.SequenceEqual(expectedY) && yFlat.SequenceEqual(expectedY);
    }));

    [Fact]
    public void Spans_that_do_not_fit_the_state_are_refused()
    {
        double[][] s = [new double[4], new double[4]];
        Assert.Throws<ArgumentException>(() => StateStep.DecayWriteAndRead(new JaggedRows(s, 4), new double[2], new double[2], new double[3], new double[2], new double[4]));
        Assert.Throws<ArgumentException>(() => StateStep.DecayAndRead(new JaggedRows(s, 4), new double[1], new double[2], new double[4]));
    }

    [Fact]
    public void A_ragged_state_is_refused_before_any_row_is_read()
    {
        double[][] s = [new double[8], new double[3]];
        Assert.Throws<ArgumentException>(() => StateStep.DecayAndRead(new JaggedRows(s, 8), new double[2], new double[2], new double[8]));
    }
}
