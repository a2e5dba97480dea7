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
    /// <summary>
    /// The widest SIMD width this process computes with: "Vector512", "Vector256", "Vector128" or "scalar" (what
    /// DOTNET_EnableAVX512=0, DOTNET_EnableAVX2=0 or DOTNET_EnableHWIntrinsic=0 narrow it to). It decides the
    /// summation order of every reduction, so `golden verify` reports it.
    /// </summary>
    public static string SimdWidth =>
        System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "Vector512"
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "Vector256"
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? "Vector128"
        : "scalar";

    /// <summary>x · y.</summary>
    public static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y) => TensorPrimitives.Dot(x, y);

    /// <summary>y ← y + a·x, the product and the sum rounded apart (never fused: the GPU kernels match this).</summary>
    public static void Axpy(double a, ReadOnlySpan<double> x, Span<double> y) => TensorPrimitives.MultiplyAdd(x, a, y, y);

    /// <summary>y ← a·y.</summary>
    public static void Scale(double a, Span<double> y) => TensorPrimitives.Multiply(y, a, y);

    /// <summary>y ← y + x, elementwise.</summary>
    public static void AddTo(ReadOnlySpan<double> x, Span<double> y) => TensorPrimitives.Add(y, x, y);

    /// <summary>result ← x ⊙ y, elementwise (result may be x or y).</summary>
    public static void Multiply(ReadOnlySpan<double> x, ReadOnlySpan<double> y, Span<double> result) => TensorPrimitives.Multiply(x, y, result);

    /// <summary>result = a·x.</summary>
    public static void Multiply(ReadOnlySpan<double> x, double a, Span<double> result) => TensorPrimitives.Multiply(x, a, result);

    /// <summary>result = x / a, elementwise.</summary>
    public static void Divide(ReadOnlySpan<double> x, double a, Span<double> result) => TensorPrimitives.Divide(x, a, result);

    /// <summary>result ← exp(x), elementwise.</summary>
    public static void Exp(ReadOnlySpan<double> x, Span<double> result) => TensorPrimitives.Exp(x, result);

    /// <summary>
    /// result ← exp(x − y), elementwise: one exp of the difference, never exp(x)·exp(−y), so a decay between two
    /// cumulative log gates (x − y ≤ 0) lands in [0, 1] however far both sums have run (exp(−y) alone overflows once
    /// y &lt; −709). result may be x or y.
    /// </summary>
    public static void ExpDifference(ReadOnlySpan<double> x, ReadOnlySpan<double> y, Span<double> result)
    {
        TensorPrimitives.Subtract(x, y, result);
        TensorPrimitives.Exp(result, result);
    }

    /// <summary>
    /// Σ_d x_d y_d exp(gx_d − gy_d): the dot product of x and y under a per-channel decay between two cumulative log
    /// gates (each exponent one difference, as <see cref="ExpDifference"/>). <paramref name="scratch"/> holds at least
    /// x.Length values and is overwritten. The decayed score of the gated linear and gated delta families.
    /// </summary>
    public static double DecayedDot(ReadOnlySpan<double> x, ReadOnlySpan<double> y, ReadOnlySpan<double> gx, ReadOnlySpan<double> gy, Span<double> scratch)
    {
        Span<double> decay = scratch[..x.Length];
        ExpDifference(gx, gy, decay);
        TensorPrimitives.Multiply(decay, y, decay);
        return TensorPrimitives.Dot(x, decay);
    }

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
