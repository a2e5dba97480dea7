using System.Numerics;
using ILGPU;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;
using ILGPU.IR.Values;

namespace AttentionReference.Gpu;

/// <summary>
/// Every math function the kernels call, and nothing else may: one place whose accuracy on each accelerator can be
/// measured against the CPU's (<see cref="GpuMathKernels"/>). On ILGPU's CPU accelerator these are .NET's own (a kernel
/// runs as .NET code there). On CUDA, ILGPU compiles Math.Exp(double) to ILGPU.Algorithms' CORDIC routine (up to 28 ulps
/// on [−30, 30], hundreds below −100, 0 instead of the subnormals below −709, and a loop of up to a thousand
/// multiplications); <see cref="UseOnCuda"/> redirects it to <see cref="ExpOnCuda"/> instead. A kernel that needs a new
/// function adds it here, with a line in <see cref="GpuMathKernels"/> to measure it.
/// </summary>
internal static class GpuMath
{
    /// <summary>e^x.</summary>
    public static Real Exp<Real>(Real x) where Real : IExponentialFunctions<Real> => Real.Exp(x);

    /// <summary>
    /// √x, correctly rounded on both accelerators: .NET's on the CPU accelerator, and on CUDA ILGPU's <c>sqrt.rn.f64</c> /
    /// <c>sqrt.rn.f32</c> (IEEE round-to-nearest, as .NET's), so the device's √ is the CPU's to the bit.
    /// </summary>
    public static Real Sqrt<Real>(Real x) where Real : IRootFunctions<Real> => Real.Sqrt(x);

    /// <summary>Makes the PTX backend of <paramref name="builder"/>'s context compile double exp as <see cref="ExpOnCuda"/>.</summary>
    public static Context.Builder UseOnCuda(Context.Builder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // Registered after ILGPU.Algorithms' own, so it replaces it (a later registration wins, as ILGPU's hardware
        // intrinsics replace its software fallbacks).
        builder.GetIntrinsicManager().RegisterUnaryArithmetic(UnaryArithmeticKind.ExpF, BasicValueType.Float64,
            new PTXIntrinsic(typeof(GpuMath).GetMethod(nameof(ExpOnCuda))!, IntrinsicImplementationMode.Redirect));
        return builder;
    }

    /// <summary>
    /// e^x in double within about 1 ulp, for CUDA (the CPU accelerator uses .NET's): x = k·ln 2 + r with k = round(x / ln 2)
    /// and r reduced in two steps (ln 2 = Ln2Hi + Ln2Lo, Ln2Hi with trailing zero bits so k·Ln2Hi is exact), |r| ≤ 0.35;
    /// e^r by its Taylor series to r^13 in Horner form (the next term is under 4e-18); then scaled by 2^k exactly, in two
    /// factors where the result is subnormal so that it is rounded once.
    /// </summary>
    public static double ExpOnCuda(double x)
    {
        const double Log2E = 1.4426950408889634, Ln2Hi = 6.93147180369123816490e-01, Ln2Lo = 1.90821492927058770002e-10;
        if (double.IsNaN(x))
        {
            return x;
        }
        if (x > 710)
        {
            return double.PositiveInfinity;
        }
        if (x < -746)
        {
            return 0;
        }
        double k = Math.Floor(x * Log2E + 0.5);
        double r = x - k * Ln2Hi - k * Ln2Lo;
        double p = 1.0 / 6227020800;                 // 1/13!
        p = p * r + 1.0 / 479001600;                 // 1/12!
        p = p * r + 1.0 / 39916800;
        p = p * r + 1.0 / 3628800;
        p = p * r + 1.0 / 362880;
        p = p * r + 1.0 / 40320;
        p = p * r + 1.0 / 5040;
        p = p * r + 1.0 / 720;
        p = p * r + 1.0 / 120;
        p = p * r + 1.0 / 24;
        p = p * r + 1.0 / 6;
        p = p * r + 0.5;
        p = p * r + 1;
        p = p * r + 1;                               // e^r
        int n = (int)k;
        return n > 1023 ? p * 2 * TwoTo(1023)
            : n < -1022 ? p * TwoTo(n + 64) * TwoTo(-64)
            : p * TwoTo(n);
    }

    /// <summary>2^n for −1022 ≤ n ≤ 1023, from its bits.</summary>
    private static double TwoTo(int n) => BitConverter.Int64BitsToDouble((long)(n + 1023) << 52);
}
