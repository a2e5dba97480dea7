using AttentionReference.Numerics;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Numerics;

/// <summary>Random row-major matrices, with sizes on both sides of the kernels' blocks (4 rows; 16 and 32 columns, and 4 or 8 lanes).</summary>
public sealed record DenseCase(int Rows, int Inner, int Width, int Seed)
{
    public double[] Random(int length, int salt)
    {
        var random = new Random(HashCode.Combine(Seed, salt));
        return Enumerable.Range(0, length).Select(_ => random.NextDouble() * 2 - 1).ToArray();
    }

    public static Arbitrary<DenseCase> Arbitrary { get; } =
        (from rows in Gen.Choose(0, 10)
         from inner in Gen.Choose(0, 10)
         from width in Gen.Elements(1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 70)
         from seed in Gen.Choose(0, int.MaxValue)
         select new DenseCase(rows, inner, width, seed)).ToArbitrary();
}

public sealed class DenseMatrixTests
{
    // The kernels and the loops below add the same products in different orders (vector lanes, fused multiply-adds
    // where the hardware has them); entries are at most `width` products of values in [−1, 1], so 1e-13 relative to
    // the width is hundreds of rounding errors of slack and still far below any real mistake (which is O(1)).
    private static bool Near(double actual, double expected, int terms) => Math.Abs(actual - expected) <= 1e-13 * Math.Max(1, terms);

    [Fact]
    public void AddProduct_adds_the_weighted_sum_of_rows() => PropertyRuns.Check(Prop.ForAll(DenseCase.Arbitrary, c =>
    {
        // Y [Rows x Width] += W [Rows x Inner] B [Inner x Width].
        double[] w = c.Random(c.Rows * c.Inner, 1), b = c.Random(c.Inner * c.Width, 2), y = c.Random(c.Rows * c.Width, 3);
        var sum = (double[])y.Clone();
        DenseMatrix.AddProduct(w, c.Rows, b, c.Inner, sum);
        return Enumerable.Range(0, c.Rows).All(i => Enumerable.Range(0, c.Width).All(col =>
            Near(sum[i * c.Width + col], y[i * c.Width + col] + Enumerable.Range(0, c.Inner).Sum(k => w[i * c.Inner + k] * b[k * c.Width + col]), c.Inner)));
    }));

    [Fact]
    public void AddTransposedProduct_adds_a_transposed_times_b() => PropertyRuns.Check(Prop.ForAll(DenseCase.Arbitrary, c =>
    {
        // Y [Rows x Width] += Aᵀ B for A [Inner x Rows], B [Inner x Width].
        double[] a = c.Random(c.Inner * c.Rows, 1), b = c.Random(c.Inner * c.Width, 2), y = c.Random(c.Rows * c.Width, 3);
        var sum = (double[])y.Clone();
        DenseMatrix.AddTransposedProduct(a, c.Inner, b, sum);
        return Enumerable.Range(0, c.Rows).All(i => Enumerable.Range(0, c.Width).All(col =>
            Near(sum[i * c.Width + col], y[i * c.Width + col] + Enumerable.Range(0, c.Inner).Sum(k => a[k * c.Rows + i] * b[k * c.Width + col]), c.Inner)));
    }));

    [Fact]
    public void TimesTransposed_equals_the_dot_products_of_x_with_each_row() => PropertyRuns.Check(Prop.ForAll(DenseCase.Arbitrary, c =>
    {
        double[] x = c.Random(c.Width, 1), b = c.Random(c.Inner * c.Width, 2);
        var dots = new double[c.Inner];
        DenseMatrix.TimesTransposed(x, b, dots);
        return Enumerable.Range(0, c.Inner).All(j => Near(dots[j], Enumerable.Range(0, c.Width).Sum(d => x[d] * b[j * c.Width + d]), c.Width));
    }));

    [Fact]
    public void AddWeightedRows_is_the_one_row_case() => PropertyRuns.Check(Prop.ForAll(DenseCase.Arbitrary, c =>
    {
        // y [Width] += Σ_k w_k B_k for B [Inner x Width].
        double[] b = c.Random(c.Inner * c.Width, 2), weights = c.Random(c.Inner, 3), y = c.Random(c.Width, 4);
        var sum = (double[])y.Clone();
        DenseMatrix.AddWeightedRows(weights, b, sum);
        return Enumerable.Range(0, c.Width).All(col =>
            Near(sum[col], y[col] + Enumerable.Range(0, c.Inner).Sum(k => weights[k] * b[k * c.Width + col]), c.Inner));
    }));
}
