using AttentionReference.Numerics;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Numerics;

/// <summary>The one-pass state-row kernels against the loops they replace, written with one fused multiply-add per
/// product as the kernels document: equal bit for bit, on every length (the Vector512, Vector256 and scalar parts).</summary>
public sealed class StateRowTests
{
    private static readonly Arbitrary<(double[] Row, double[] X, double[] Y, double Alpha, double Kappa, double Omega)> Rows =
        (from n in Gen.Choose(0, 41)
         from row in Gen.ArrayOf(Gen.Choose(-1000, 1000).Select(i => i / 97.0), n)
         from x in Gen.ArrayOf(Gen.Choose(-1000, 1000).Select(i => i / 89.0), n)
         from y in Gen.ArrayOf(Gen.Choose(-1000, 1000).Select(i => i / 83.0), n)
         from α in Gen.Choose(0, 1000).Select(i => i / 1000.0)
         from κ in Gen.Choose(-1000, 1000).Select(i => i / 311.0)
         from ω in Gen.Choose(-1000, 1000).Select(i => i / 313.0)
         select (row, x, y, α, κ, ω)).ToArbitrary();

    [Fact]
    public void Decay_write_and_read_equals_the_elementwise_loop() => PropertyRuns.Check(Prop.ForAll(Rows, c =>
    {
        double[] row = (double[])c.Row.Clone(), y = (double[])c.Y.Clone();
        StateRow.DecayWriteAndRead(c.Alpha, row, c.Kappa, c.X, c.Omega, y);
        double[] expectedRow = (double[])c.Row.Clone(), expectedY = (double[])c.Y.Clone();
        for (int i = 0; i < expectedRow.Length; i++)
        {
            expectedRow[i] = Math.FusedMultiplyAdd(c.Kappa, c.X[i], c.Alpha * expectedRow[i]);
            expectedY[i] = Math.FusedMultiplyAdd(c.Omega, expectedRow[i], expectedY[i]);
        }
        return row.SequenceEqual(expectedRow) && y.SequenceEqual(expectedY);
    }));

    [Fact]
    public void Decay_and_read_equals_the_elementwise_loop() => PropertyRuns.Check(Prop.ForAll(Rows, c =>
    {
        double[] row = (double[])c.Row.Clone(), y = (double[])c.Y.Clone();
        StateRow.DecayAndRead(c.Alpha, row, c.Omega, y);
        double[] expectedRow = (double[])c.Row.Clone(), expectedY = (double[])c.Y.Clone();
        for (int i = 0; i < expectedRow.Length; i++)
        {
            expectedRow[i] = c.Alpha * expectedRow[i];
            expectedY[i] = Math.FusedMultiplyAdd(c.Omega, expectedRow[i], expectedY[i]);
        }
        return row.SequenceEqual(expectedRow) && y.SequenceEqual(expectedY);
    }));

    [Fact]
    public void Spans_of_different_lengths_are_refused() =>
        Assert.Throws<ArgumentException>(() => StateRow.DecayWriteAndRead(1, new double[3], 1, new double[2], 1, new double[3]));
}
