using System.Globalization;
using System.Reflection;
using AttentionReference.Gpu;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// The log, sin and cos that the state-space kernels need (softplus's log1p, ZOH's e^z − 1, the phases of Ā^l) as CUDA
/// runs them: GpuMath.LogOnCuda, SinOnCuda and CosOnCuda replace ILGPU's CORDIC routines (double) and approximate
/// instructions (float). They are plain C#, so their accuracy is measured here against .NET's, over the whole range they
/// promise; the PTX test checks that the redirects took.
/// </summary>
public sealed class StateSpaceGpuMathTests
{
    /// <summary>
    /// Within 1 ulp of .NET's (itself within about half an ulp of the true value): log over every positive double,
    /// subnormals included; sin and cos over |x| ≤ 1.7e15, where one ulp of x is a quarter turn, past which both are NaN.
    /// Observed: at most 1 ulp over these points.
    /// </summary>
    [Fact]
    public void Log_sin_and_cos_compiled_for_cuda_are_within_one_ulp_of_the_cpu()
    {
        var random = new Random(18);
        double[] logPoints = [1, 2, 0.5, Math.E, 1 + 1e-15, 1 - 1e-16, double.Epsilon, 1e-310, 2.2250738585072014E-308, double.MaxValue,
            .. Enumerable.Range(0, 100_000).Select(_ => Math.Exp(-744 + 1453 * random.NextDouble())),
            .. Enumerable.Range(0, 50_000).Select(_ => 0.5 + 1.5 * random.NextDouble()),
            .. Enumerable.Range(0, 50_000).Select(_ => 1 + 1e-3 * (2 * random.NextDouble() - 1))];
        double[] anglePoints = [0, -0.0, 1e-300, -1e-20, Math.PI, Math.PI / 2, -Math.PI / 4, 355, 103993, 1e6, 6381956970095103 / 1e3,
            .. Enumerable.Range(0, 100_000).Select(_ => 8 * random.NextDouble() - 4),
            .. Enumerable.Range(0, 100_000).Select(_ => 2e5 * random.NextDouble() - 1e5),
            .. Enumerable.Range(0, 50_000).Select(_ => Math.Exp(Math.Log(1.7e15) * random.NextDouble()) * (random.Next(2) * 2 - 1))];
        Assert.All(logPoints, x => AssertWithinOneUlp("log", x, GpuMath.LogOnCuda(x), Math.Log(x)));
        Assert.All(anglePoints, x => AssertWithinOneUlp("sin", x, GpuMath.SinOnCuda(x), Math.Sin(x)));
        Assert.All(anglePoints, x => AssertWithinOneUlp("cos", x, GpuMath.CosOnCuda(x), Math.Cos(x)));
    }

    [Fact]
    public void Log_sin_and_cos_keep_the_special_values_and_refuse_angles_past_their_range()
    {
        Assert.Equal(double.NegativeInfinity, GpuMath.LogOnCuda(0));
        Assert.Equal(double.NegativeInfinity, GpuMath.LogOnCuda(-0.0));
        Assert.Equal(double.PositiveInfinity, GpuMath.LogOnCuda(double.PositiveInfinity));
        Assert.True(double.IsNaN(GpuMath.LogOnCuda(-1)) && double.IsNaN(GpuMath.LogOnCuda(double.NaN)));
        Assert.Equal(0, GpuMath.LogOnCuda(1));
        Assert.True(double.IsNegative(GpuMath.SinOnCuda(-0.0)));
        foreach (double x in new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity, 1.8e15, -1e300 })
        {
            Assert.True(double.IsNaN(GpuMath.SinOnCuda(x)) && double.IsNaN(GpuMath.CosOnCuda(x)), x.ToString("R", CultureInfo.InvariantCulture));
        }
    }

    /// <summary>The float versions are the double ones rounded once: within 1 ulp of .NET's float functions.</summary>
    [Fact]
    public void The_float_versions_are_within_one_float_ulp_of_the_cpu()
    {
        var random = new Random(19);
        float[] positive = [.. Enumerable.Range(0, 50_000).Select(_ => (float)Math.Exp(-87 + 175 * random.NextDouble())), 1, float.Epsilon];
        float[] angles = [.. Enumerable.Range(0, 50_000).Select(_ => (float)(2e4 * random.NextDouble() - 1e4)), 0, 1e-30f];
        Assert.All(positive, x => AssertWithinOneUlp("log", x, GpuMath.LogOnCuda(x), MathF.Log(x)));
        Assert.All(angles, x => AssertWithinOneUlp("sin", x, GpuMath.SinOnCuda(x), MathF.Sin(x)));
        Assert.All(angles, x => AssertWithinOneUlp("cos", x, GpuMath.CosOnCuda(x), MathF.Cos(x)));
    }

    /// <summary>
    /// On PTX, double and float log, sin and cos are GpuMath's: each compiled kernel holds a constant only that routine
    /// has (log's last Taylor coefficient 2/23, the last 21-bit piece of π/2), and no approximate instruction.
    /// </summary>
    [Fact]
    public void Cuda_runs_these_instead_of_ilgpus_cordic_routines_and_approximate_instructions()
    {
        using Context context = Context.Create(builder => GpuMath.UseOnCuda(builder.Cuda().DefaultCPU().EnableAlgorithms()));
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        string logCoefficient = Hex(2.0 / 23), lastPiece = Hex(2.0683655787896814e-40);
        foreach (Type real in new[] { typeof(double), typeof(float) })
        {
            foreach (var (name, constant) in new[] { ("Log", logCoefficient), ("Sin", lastPiece), ("Cos", lastPiece) })
            {
                MethodInfo kernel = typeof(GpuMathKernels).GetMethod(name)!.MakeGenericMethod(real);
                string code = ((PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromImplicitlyGroupedKernel(kernel), KernelSpecialization.Empty)).PTXAssembly;
                Assert.Contains(constant, code, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain(".approx", code, StringComparison.Ordinal);
            }
        }
    }

    private static string Hex(double x) => "0d" + BitConverter.DoubleToInt64Bits(x).ToString("X16", CultureInfo.InvariantCulture);

    private static void AssertWithinOneUlp(string function, double x, double actual, double expected) =>
        Assert.True(actual.Equals(expected) || Math.Abs(actual - expected) <= Math.BitIncrement(Math.Abs(expected)) - Math.Abs(expected),
            string.Create(CultureInfo.InvariantCulture, $"{function}({x:R}): {actual:R}, .NET {expected:R}"));

    private static void AssertWithinOneUlp(string function, float x, float actual, float expected) =>
        Assert.True(actual.Equals(expected) || Math.Abs(actual - expected) <= MathF.BitIncrement(Math.Abs(expected)) - Math.Abs(expected),
            string.Create(CultureInfo.InvariantCulture, $"{function}({x:R}): {actual:R}, .NET {expected:R}"));
}

/// <summary>
/// GpuMath's log, sin and cos evaluated on the device against .NET's on the CPU, over the arguments the state-space
/// kernels meet: log on (0, 40] (softplus's 1 + e^x, e^{dt·A} in e^z − 1), sin and cos on [−4000, 4000] (phases l·dt·A_imag
/// and dt·A_imag at the strongest steps the tests draw). Run once per accelerator.
/// </summary>
public abstract class StateSpaceGpuMathLaws(AcceleratorFixture accelerator)
{
    // f64: on the CPU accelerator these are .NET's own (no difference); on CUDA, GpuMath's routines, within 1 ulp of .NET's
    // (StateSpaceGpuMathTests). Relative to max(|f(x)|, 1e-3) — sin and cos at their zeros are held absolutely, as a
    // phase is used, since the angle's own rounding is already absolute: 1e-15 leaves a margin of 4 over 1 ulp.
    private const double InDouble = 1e-15;

    // f32: within 1 float ulp (6e-8) on both accelerators (CUDA: the double routine rounded once); 1e-6 leaves a margin.
    private const double InSingle = 1e-6;

    [AcceleratorLaw(10)]
    public bool Log_sin_and_cos_on_the_device_are_within_1e_15_of_the_cpu_in_f64(int seed) =>
        MaxError(accelerator.F64, seed) <= InDouble;

    [AcceleratorLaw(10)]
    public bool Log_sin_and_cos_on_the_device_are_within_1e_6_of_the_cpu_in_f32(int seed) =>
        MaxError(accelerator.F32, seed) <= InSingle;

    /// <summary>The largest error of the three functions over 500 points each drawn from <paramref name="seed"/>.</summary>
    private static double MaxError(GpuBackend backend, int seed)
    {
        var random = new Random(seed);
        // Points exactly representable in f32 too, so both precisions are held to f of the same x.
        double[] positive = [.. Enumerable.Range(0, 500).Select(_ => (double)(float)(40 * random.NextDouble() + 1e-30))];
        double[] angles = [.. Enumerable.Range(0, 500).Select(_ => (double)(float)(8000 * random.NextDouble() - 4000))];
        return new[]
        {
            Error(backend.EvaluateMath("log", positive), positive.Select(x => Math.Log(x))),
            Error(backend.EvaluateMath("sin", angles), angles.Select(Math.Sin)),
            Error(backend.EvaluateMath("cos", angles), angles.Select(Math.Cos)),
        }.Max();
    }

    private static double Error(double[] device, IEnumerable<double> cpu) =>
        device.Zip(cpu, (d, c) => Math.Abs(d - c) / Math.Max(Math.Abs(c), 1e-3)).Max();
}

[Accelerator("cpu")]
public sealed class StateSpaceGpuMathCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : StateSpaceGpuMathLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class StateSpaceGpuMathCudaTests(CudaFixture accelerator) : StateSpaceGpuMathLaws(accelerator), IClassFixture<CudaFixture>;
