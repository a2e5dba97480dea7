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
/// multiplications); <see cref="UseOnCuda"/> redirects it to <see cref="ExpOnCuda"/> instead. Double log, sin and cos
/// are CORDIC routines there too (log off by up to 9e4 ulps near 1, sin and cos by 1e-10 absolute at 1e4 rad), and float
/// log, sin and cos are the approximate instructions lg2.approx.f32, sin.approx.f32 and cos.approx.f32, whose errors are
/// absolute (about 2^-22 and 2^-21), so log near 1 and the sine of a small angle lose every digit: all six go to
/// <see cref="LogOnCuda(double)"/>, <see cref="SinOnCuda(double)"/> and <see cref="CosOnCuda(double)"/> (float through
/// double, rounded once). A kernel that needs a new function adds it here, with a line in <see cref="GpuMathKernels"/>
/// to measure it.
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

    /// <summary>The natural logarithm of x.</summary>
    public static Real Log<Real>(Real x) where Real : ILogarithmicFunctions<Real> => Real.Log(x);

    /// <summary>sin x (x in radians).</summary>
    public static Real Sin<Real>(Real x) where Real : ITrigonometricFunctions<Real> => Real.Sin(x);

    /// <summary>cos x (x in radians).</summary>
    public static Real Cos<Real>(Real x) where Real : ITrigonometricFunctions<Real> => Real.Cos(x);

    /// <summary>
    /// Makes the PTX backend of <paramref name="builder"/>'s context compile double exp as <see cref="ExpOnCuda"/>, and
    /// double and float log, sin and cos as <see cref="LogOnCuda(double)"/>, <see cref="SinOnCuda(double)"/> and
    /// <see cref="CosOnCuda(double)"/>.
    /// </summary>
    public static Context.Builder UseOnCuda(Context.Builder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // Registered after ILGPU.Algorithms' own, so they replace them (a later registration wins, as ILGPU's hardware
        // intrinsics replace its software fallbacks).
        IntrinsicImplementationManager manager = builder.GetIntrinsicManager();
        Redirect(manager, UnaryArithmeticKind.ExpF, BasicValueType.Float64, nameof(ExpOnCuda), typeof(double));
        foreach (Type real in new[] { typeof(double), typeof(float) })
        {
            BasicValueType type = real == typeof(double) ? BasicValueType.Float64 : BasicValueType.Float32;
            Redirect(manager, UnaryArithmeticKind.LogF, type, nameof(LogOnCuda), real);
            Redirect(manager, UnaryArithmeticKind.SinF, type, nameof(SinOnCuda), real);
            Redirect(manager, UnaryArithmeticKind.CosF, type, nameof(CosOnCuda), real);
        }
        return builder;
    }

    private static void Redirect(IntrinsicImplementationManager manager, UnaryArithmeticKind kind, BasicValueType type, string method, Type real) =>
        manager.RegisterUnaryArithmetic(kind, type,
            new PTXIntrinsic(typeof(GpuMath).GetMethod(method, [real])!, IntrinsicImplementationMode.Redirect));

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

    /// <summary>
    /// log x in double within 1 ulp of .NET's, for CUDA: x = 2^k·m with √½ &lt; m ≤ √2 (subnormals scaled by 2^54 first),
    /// f = m − 1 exactly, s = f/(2 + f), and log(1 + f) = 2·atanh(s) = f − f²/2 + s·(f²/2 + R), R = Σ_{j≥1} 2s^{2j}/(2j + 1)
    /// to j = 11 (|s| ≤ 0.172, the next term is under 1e-18 relative); then k·ln 2 added in two parts (Ln2Hi with
    /// trailing zero bits, so k·Ln2Hi is exact). This is fdlibm's arrangement, with the Taylor series of atanh.
    /// </summary>
    public static double LogOnCuda(double x)
    {
        const double Ln2Hi = 6.93147180369123816490e-01, Ln2Lo = 1.90821492927058770002e-10, Sqrt2 = 1.4142135623730951;
        if (!(x > 0))
        {
            return x == 0 ? double.NegativeInfinity : double.NaN; // negative or NaN
        }
        if (x == double.PositiveInfinity)
        {
            return x;
        }
        long bits = BitConverter.DoubleToInt64Bits(x);
        int k = 0;
        if (bits < 1L << 52)
        {
            bits = BitConverter.DoubleToInt64Bits(x * 18014398509481984.0); // a subnormal x times 2^54
            k = -54;
        }
        k += (int)(bits >> 52) - 1023;
        double m = BitConverter.Int64BitsToDouble((bits & 0x000FFFFFFFFFFFFFL) | 0x3FF0000000000000L); // [1, 2)
        if (m > Sqrt2)
        {
            m *= 0.5;
            k++;
        }
        double f = m - 1, s = f / (2 + f), z = s * s;
        double R = z * (2.0 / 3 + z * (2.0 / 5 + z * (2.0 / 7 + z * (2.0 / 9 + z * (2.0 / 11 + z * (2.0 / 13 + z * (2.0 / 15
            + z * (2.0 / 17 + z * (2.0 / 19 + z * (2.0 / 21 + z * (2.0 / 23)))))))))));
        double hfsq = 0.5 * f * f;
        return k * Ln2Hi + (f - (hfsq - (s * (hfsq + R) + k * Ln2Lo)));
    }

    /// <summary>log x in float: <see cref="LogOnCuda(double)"/> rounded once.</summary>
    public static float LogOnCuda(float x) => (float)LogOnCuda((double)x);

    /// <summary>sin x in double within 1 ulp of .NET's, for CUDA (see <see cref="SineOfQuadrant"/>).</summary>
    public static double SinOnCuda(double x) => SineOfQuadrant(x, 0);

    /// <summary>sin x in float: <see cref="SinOnCuda(double)"/> rounded once.</summary>
    public static float SinOnCuda(float x) => (float)SinOnCuda((double)x);

    /// <summary>cos x = sin(x + π/2) in double within 1 ulp of .NET's, for CUDA (see <see cref="SineOfQuadrant"/>).</summary>
    public static double CosOnCuda(double x) => SineOfQuadrant(x, 1);

    /// <summary>cos x in float: <see cref="CosOnCuda(double)"/> rounded once.</summary>
    public static float CosOnCuda(float x) => (float)CosOnCuda((double)x);

    /// <summary>
    /// sin(x + shift·π/2): x = n·π/2 + r with n = round(x·2/π), r reduced exactly as a double-double hi + lo by
    /// subtracting n·C_i for seven pieces C_i of π/2 with 21 significant bits each (147 bits in all), n split as
    /// nHi + nLo (nHi a multiple of 2^21) so that every product is exact, each difference kept exactly by TwoSum; then
    /// sin or cos of r by Taylor series to r^19 and r^20 (|r| ≤ 1.1; the next terms are under 1e-19), with lo's first-order
    /// term, and the quadrant's sign. Exact products also make the reduction immune to the FMA contraction that PTX
    /// allows. For |x| ≥ 2^50·π/2 (where one ulp of x is a quarter turn) the result is NaN.
    /// </summary>
    private static double SineOfQuadrant(double x, int shift)
    {
        const double TwoOverPi = 0.6366197723675814, TwoTo50 = 1125899906842624.0, TwoToMinus27 = 7.450580596923828e-09;
        const double C1 = 1.570796012878418, C2 = 3.139164164167596e-07, C3 = 6.22337468017542e-14, C4 = -2.5082791584901525e-20,
            C5 = 3.521561362568105e-27, C6 = -1.4973851116957393e-33, C7 = 2.0683655787896814e-40;
        double n = Math.Floor(x * TwoOverPi + 0.5);
        if (!(Math.Abs(n) < TwoTo50))
        {
            return double.NaN; // also for NaN and ±∞
        }
        if (Math.Abs(x) < TwoToMinus27)
        {
            return shift == 0 ? x : 1; // sin x = x and cos x = 1 once rounded; keeps the sign of ±0
        }
        double nHi = Math.Floor(n * (1.0 / 2097152)) * 2097152, nLo = n - nHi; // 0 ≤ nLo < 2^21
        double hi = x, lo = 0;
        SubtractMultiple(ref hi, ref lo, nHi, nLo, C1);
        SubtractMultiple(ref hi, ref lo, nHi, nLo, C2);
        SubtractMultiple(ref hi, ref lo, nHi, nLo, C3);
        SubtractMultiple(ref hi, ref lo, nHi, nLo, C4);
        SubtractMultiple(ref hi, ref lo, nHi, nLo, C5);
        SubtractMultiple(ref hi, ref lo, nHi, nLo, C6);
        SubtractMultiple(ref hi, ref lo, nHi, nLo, C7);
        double r = hi + lo;
        lo -= r - hi;
        hi = r;
        double z = hi * hi;
        long quadrant = (long)n + shift;
        double value;
        if ((quadrant & 1) == 0)
        {
            // sin(hi + lo) = sin hi + lo·cos hi
            double p = z * (-1.0 / 6 + z * (1.0 / 120 + z * (-1.0 / 5040 + z * (1.0 / 362880 + z * (-1.0 / 39916800 + z * (1.0 / 6227020800
                + z * (-1.0 / 1307674368000 + z * (1.0 / 355687428096000 + z * (-1.0 / 121645100408832000)))))))));
            value = hi + (hi * p + lo * (1 - 0.5 * z));
        }
        else
        {
            // cos(hi + lo) = cos hi − lo·sin hi, with 1 − z/2 rounded once and its rounding error added back
            double p = z * z * (1.0 / 24 + z * (-1.0 / 720 + z * (1.0 / 40320 + z * (-1.0 / 3628800 + z * (1.0 / 479001600
                + z * (-1.0 / 87178291200 + z * (1.0 / 20922789888000 + z * (-1.0 / 6402373705728000 + z * (1.0 / 2432902008176640000)))))))));
            double hz = 0.5 * z, w = 1 - hz;
            value = w + (((1 - w) - hz) + (p - hi * lo));
        }
        return (quadrant & 2) == 0 ? value : -value;
    }

    /// <summary>(hi, lo) −= nHi·c + nLo·c, both products exact.</summary>
    private static void SubtractMultiple(ref double hi, ref double lo, double nHi, double nLo, double c)
    {
        Subtract(ref hi, ref lo, nHi * c);
        Subtract(ref hi, ref lo, nLo * c);
    }

    /// <summary>hi − b = s + e exactly (TwoSum); hi becomes s and e is added to lo.</summary>
    private static void Subtract(ref double hi, ref double lo, double b)
    {
        double s = hi - b, bb = s - hi;
        lo += (hi - (s - bb)) - (b + bb);
        hi = s;
    }

    /// <summary>2^n for −1022 ≤ n ≤ 1023, from its bits.</summary>
    private static double TwoTo(int n) => BitConverter.Int64BitsToDouble((long)(n + 1023) << 52);
}
