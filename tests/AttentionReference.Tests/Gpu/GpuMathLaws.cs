using AttentionReference.Gpu;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// The device's math (GpuMath, the only math the kernels call) against .NET's on the CPU, over the arguments the
/// kernels meet where the result matters: decay factors exp(Γ_t − Γ_j) of summed log gates, exp(x) for x in [−40, 40]
/// (below −40 a factor is under 4e-18 and does not reach an output at 1e-12). Run once per accelerator.
/// </summary>
public abstract class GpuMathLaws(AcceleratorFixture accelerator)
{
    // On the CPU accelerator GpuMath is .NET's: no difference at all. On CUDA, double exp is GpuMath.ExpOnCuda (ILGPU's
    // own CORDIC routine is replaced), within 1 ulp of .NET's over its whole range (GpuBackendTests checks its C# here);
    // .NET's itself is within 1 ulp of e^x: 2 ulps apart at most, 4.4e-16. 1e-15 leaves a margin of 2.
    private const double ExpInDouble = 1e-15;

    // f32: the CPU accelerator's float exp is within 1 ulp (6e-8); CUDA's is ex2.approx of x·log2(e) rounded to float,
    // whose argument rounding adds up to |x|·2^−24 ≈ 2.4e-6 at |x| = 40; 1e-5 leaves a margin of 4 and is 10 times
    // below the forms' f32 bound.
    private const double ExpInSingle = 1e-5;

    [AcceleratorLaw(20)]
    public bool Exp_on_the_device_is_within_1e_15_of_the_cpu_in_f64(int seed) => MaxRelativeError(accelerator.F64, seed) <= ExpInDouble;

    [AcceleratorLaw(20)]
    public bool Exp_on_the_device_is_within_1e_5_of_the_cpu_in_f32(int seed) => MaxRelativeError(accelerator.F32, seed) <= ExpInSingle;

    // √ is correctly rounded on both sides (.NET's, and CUDA's sqrt.rn.f64 / sqrt.rn.f32): the device's must be the
    // CPU's to the bit, in both precisions, over the arguments the L2 norm meets (Σx² + 1e-6) and far beyond.
    [AcceleratorLaw(20)]
    public bool Sqrt_on_the_device_is_the_cpus_to_the_bit_in_f64(int seed) =>
        SqrtPoints(seed).Zip(accelerator.F64.EvaluateMath("sqrt", SqrtPoints(seed)), (x, y) => y.Equals(Math.Sqrt(x))).All(same => same);

    [AcceleratorLaw(20)]
    public bool Sqrt_on_the_device_is_the_cpus_to_the_bit_in_f32(int seed) =>
        SqrtPoints(seed).Zip(accelerator.F32.EvaluateMath("sqrt", SqrtPoints(seed)), (x, y) => y.Equals((double)MathF.Sqrt((float)x))).All(same => same);

    /// <summary>0, 1, and 1000 points log-uniform in [1e-12, 1e12] drawn from <paramref name="seed"/>, each exactly a float.</summary>
    private static double[] SqrtPoints(int seed)
    {
        var random = new Random(seed);
        return [0, 1, .. Enumerable.Range(0, 1000).Select(_ => (double)(float)Math.Pow(10, 24 * random.NextDouble() - 12))];
    }

    /// <summary>max |exp_device(x) − exp(x)| / exp(x) over 1000 points of [−40, 40] drawn from <paramref name="seed"/>, and 0.</summary>
    private static double MaxRelativeError(GpuBackend backend, int seed)
    {
        var random = new Random(seed);
        // Points exactly representable in f32 too, so both precisions are held to exp of the same x.
        double[] x = [0, .. Enumerable.Range(0, 1000).Select(_ => (double)(float)(80 * random.NextDouble() - 40))];
        double[] y = backend.EvaluateMath("exp", x);
        return x.Zip(y, (xi, yi) => Math.Abs(yi - Math.Exp(xi)) / Math.Exp(xi)).Max();
    }
}

[Accelerator("cpu")]
public sealed class GpuMathCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : GpuMathLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class GpuMathCudaTests(CudaFixture accelerator) : GpuMathLaws(accelerator), IClassFixture<CudaFixture>;
