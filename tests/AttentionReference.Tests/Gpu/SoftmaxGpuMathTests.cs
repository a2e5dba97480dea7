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
/// The tanh of softmax's softcap (c·tanh(s/c)) as CUDA runs it: GpuMath.TanhOnCuda replaces ILGPU.Algorithms' XMath.Tanh
/// (built on its CORDIC exp) in double and tanh.approx.f32 in float. It is plain C#, so its accuracy is measured here
/// against .NET's; the PTX test checks that the redirect took.
/// </summary>
public sealed class SoftmaxGpuMathTests
{
    /// <summary>
    /// Within 2 ulps of .NET's (itself within about 1 ulp of the true value) over every double: the series branch
    /// (|x| &lt; 0.625), the exp branch, tiny and huge arguments. Observed: at most 2 ulps, on 0.7% of the points of
    /// [−0.7, 0.7], 1 ulp elsewhere.
    /// </summary>
    [Fact]
    public void Tanh_compiled_for_cuda_is_within_two_ulps_of_the_cpu()
    {
        var random = new Random(18);
        double[] points = [0, 0.625, 0.6249999999999999, 1e-300, -1e-20, 3.725290298461914e-09, 3.7e-09, 19.06, 22, 354, 400, -800, double.MaxValue,
            .. Enumerable.Range(0, 100_000).Select(_ => 40 * random.NextDouble() - 20),
            .. Enumerable.Range(0, 100_000).Select(_ => 1.4 * random.NextDouble() - 0.7),
            .. Enumerable.Range(0, 50_000).Select(_ => Math.Exp(-40 * random.NextDouble()) * (random.Next(2) * 2 - 1))];
        Assert.All(points, x => AssertWithinUlps(x, GpuMath.TanhOnCuda(x), Math.Tanh(x), 2));
    }

    [Fact]
    public void Tanh_keeps_the_special_values()
    {
        Assert.True(double.IsNegative(GpuMath.TanhOnCuda(-0.0)) && GpuMath.TanhOnCuda(-0.0) == 0);
        Assert.Equal(1, GpuMath.TanhOnCuda(double.PositiveInfinity));
        Assert.Equal(-1, GpuMath.TanhOnCuda(double.NegativeInfinity));
        Assert.True(double.IsNaN(GpuMath.TanhOnCuda(double.NaN)));
        Assert.True(float.IsNaN(GpuMath.TanhOnCuda(float.NaN)));
    }

    /// <summary>The float version is the double one rounded once: tanh rounded to float (observed: always exactly).</summary>
    [Fact]
    public void The_float_tanh_is_within_one_float_ulp_of_the_rounded_tanh()
    {
        var random = new Random(19);
        float[] points = [0, 1e-30f, float.Epsilon, 0.625f, 9.01f,
            .. Enumerable.Range(0, 50_000).Select(_ => (float)(40 * random.NextDouble() - 20)),
            .. Enumerable.Range(0, 50_000).Select(_ => (float)(Math.Exp(-40 * random.NextDouble()) * (random.Next(2) * 2 - 1)))];
        Assert.All(points, x =>
        {
            float actual = GpuMath.TanhOnCuda(x), expected = (float)Math.Tanh(x);
            Assert.True(actual.Equals(expected) || Math.Abs(actual - expected) <= MathF.BitIncrement(Math.Abs(expected)) - Math.Abs(expected),
                string.Create(CultureInfo.InvariantCulture, $"tanh({x:R}): {actual:R}, rounded {expected:R}"));
        });
    }

    /// <summary>
    /// On PTX, double and float tanh are GpuMath's: the compiled kernel holds a constant only that routine has (cosh's
    /// last Taylor coefficient 1/16!), no approximate instruction, and none of XMath's CORDIC routines.
    /// </summary>
    [Fact]
    public void Cuda_runs_this_tanh_instead_of_cordic_and_tanh_approx()
    {
        using Context context = Context.Create(builder => GpuMath.UseOnCuda(builder.Cuda().DefaultCPU().EnableAlgorithms()));
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        string coefficient = "0d" + BitConverter.DoubleToInt64Bits(1.0 / 20922789888000).ToString("X16", CultureInfo.InvariantCulture);
        foreach (Type real in new[] { typeof(double), typeof(float) })
        {
            MethodInfo kernel = typeof(GpuMathKernels).GetMethod(nameof(GpuMathKernels.Tanh))!.MakeGenericMethod(real);
            string code = ((PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromImplicitlyGroupedKernel(kernel), KernelSpecialization.Empty)).PTXAssembly;
            Assert.Contains(coefficient, code, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(".approx", code, StringComparison.Ordinal);
            Assert.DoesNotContain("Hyperbolic", code, StringComparison.Ordinal); // XMath's CORDIC rotations
        }
    }

    private static void AssertWithinUlps(double x, double actual, double expected, int ulps)
    {
        double ulp = Math.BitIncrement(Math.Abs(expected)) - Math.Abs(expected);
        Assert.True(actual.Equals(expected) || Math.Abs(actual - expected) <= ulps * ulp,
            string.Create(CultureInfo.InvariantCulture, $"tanh({x:R}): {actual:R}, .NET {expected:R}"));
    }
}

/// <summary>
/// GpuMath's tanh evaluated on the device against .NET's on the CPU over [−40, 40] (softcap's s/c: scores over c; past
/// ±20, tanh is ±1 in double). Run once per accelerator.
/// </summary>
public abstract class SoftmaxGpuMathLaws(AcceleratorFixture accelerator)
{
    // f64: on the CPU accelerator .NET's own (no difference); on CUDA, within 2 ulps of .NET's (SoftmaxGpuMathTests):
    // 4.4e-16 relative, and 1e-15 leaves a margin of 2.
    private const double InDouble = 1e-15;

    // f32: the CPU accelerator's MathF.Tanh is within 2 float ulps of tanh rounded to float (2.4e-7); CUDA's is tanh
    // rounded to float. 1e-6 leaves a margin of 4.
    private const double InSingle = 1e-6;

    [AcceleratorLaw(10)]
    public bool Tanh_on_the_device_is_within_1e_15_of_the_cpu_in_f64(int seed) => MaxRelativeError(accelerator.F64, seed) <= InDouble;

    [AcceleratorLaw(10)]
    public bool Tanh_on_the_device_is_within_1e_6_of_the_cpu_in_f32(int seed) => MaxRelativeError(accelerator.F32, seed) <= InSingle;

    private static double MaxRelativeError(GpuBackend backend, int seed)
    {
        var random = new Random(seed);
        // Points exactly representable in f32 too, so both precisions are held to tanh of the same x.
        double[] x = [0, .. Enumerable.Range(0, 1000).Select(_ => (double)(float)(80 * random.NextDouble() - 40))];
        double[] y = backend.EvaluateMath("tanh", x);
        return x.Zip(y, (xi, yi) => Math.Abs(yi - Math.Tanh(xi)) / Math.Max(Math.Abs(Math.Tanh(xi)), double.Epsilon)).Max();
    }
}

[Accelerator("cpu")]
public sealed class SoftmaxGpuMathCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : SoftmaxGpuMathLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class SoftmaxGpuMathCudaTests(CudaFixture accelerator) : SoftmaxGpuMathLaws(accelerator), IClassFixture<CudaFixture>;
