using AttentionReference.Numerics;

namespace AttentionReference.Tests.Numerics;

/// <summary>
/// The rounding claims that comments make about the definitions' arithmetic: VectorKernels' doc and the GPU kernels'
/// "no contraction" rule both rest on the definitions rounding a product and a sum apart, which a change of
/// TensorPrimitives call (MultiplyAdd to FusedMultiplyAdd or MultiplyAddEstimate) would silently break.
/// </summary>
public sealed class VectorKernelsTests
{
    // a·x = 1 + 2^-29 + 2^-60 exactly: rounded apart, the product loses 2^-60 and the sum with y is 0;
    // fused, the sum keeps 2^-60. Lengths around the vector widths cover the vector lanes and the scalar remainder.
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(37)]
    public void Axpy_rounds_the_product_and_the_sum_apart(int length)
    {
        double a = 1 + Math.Pow(2, -30), x = a, y = -(1 + Math.Pow(2, -29));
        Assert.NotEqual(a * x + y, Math.FusedMultiplyAdd(a, x, y)); // the case tells the two apart
        double[] xs = Enumerable.Repeat(x, length).ToArray(), ys = Enumerable.Repeat(y, length).ToArray();
        VectorKernels.Axpy(a, xs, ys);
        Assert.All(ys, value => Assert.Equal(a * x + y, value));
    }

    [Fact]
    public void Dot_of_one_term_is_the_rounded_product()
    {
        double a = 1 + Math.Pow(2, -30);
        Assert.Equal(a * a, VectorKernels.Dot([a], [a]));
    }
}
