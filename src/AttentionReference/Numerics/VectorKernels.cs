using System.Numerics.Tensors;

namespace AttentionReference.Numerics;

/// <summary>
/// The few vector kernels the forms share, all in double. They go through <see cref="TensorPrimitives"/>, which picks
/// Vector512 where it is accelerated, Vector256 otherwise, and a scalar loop for the remainder. The summation order of
/// a reduction depends on that width, so results are deterministic on one machine for any thread count, and agree
/// across machines to rounding, not to the bit (goldens compare with tolerances for that reason).
/// </summary>
public static class VectorKernels
{
    /// <summary>x · y.</summary>
    public static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y) => TensorPrimitives.Dot(x, y);

    /// <summary>y ← y + a·x.</summary>
    public static void Axpy(double a, ReadOnlySpan<double> x, Span<double> y) => TensorPrimitives.MultiplyAdd(x, a, y, y);

    /// <summary>y ← a·y.</summary>
    public static void Scale(double a, Span<double> y) => TensorPrimitives.Multiply(y, a, y);

    /// <summary>The largest value; −∞ for an empty span (the identity of max, so an empty row stays empty).</summary>
    public static double Max(ReadOnlySpan<double> x) => x.IsEmpty ? double.NegativeInfinity : TensorPrimitives.Max(x);

    /// <summary>
    /// x ← exp(x − shift) in place, and returns Σ exp(x − shift). With shift = max(x) every term is in [0, 1], so
    /// nothing overflows however large the scores are: the running-max form of log-sum-exp.
    /// </summary>
    public static double ExpShiftedInPlace(Span<double> x, double shift)
    {
        TensorPrimitives.Subtract(x, shift, x);
        TensorPrimitives.Exp(x, x);
        return TensorPrimitives.Sum<double>(x);
    }
}
