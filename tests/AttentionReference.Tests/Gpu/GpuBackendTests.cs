using System.Reflection;
using AttentionReference.Forms;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// What the GPU backend promises beyond the laws: how a device is chosen and refused, that it refuses what the CPU form
/// refuses, and that every kernel compiles for CUDA (PTX for the H100's SM_90) on a machine without a GPU.
/// </summary>
public sealed class GpuBackendTests(CpuAcceleratorFixture accelerator) : IClassFixture<CpuAcceleratorFixture>
{
    [Fact]
    public void A_device_name_that_matches_nothing_is_bad_input_on_one_line()
    {
        var error = Assert.Throws<InputException>(() => new GpuBackend("no-such-device-xyz"));
        Assert.Contains("no-such-device-xyz", error.Message, StringComparison.Ordinal);
        Assert.Contains("CPU accelerator", error.Message, StringComparison.Ordinal); // lists the devices there are
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void The_cpu_accelerator_is_chosen_by_name_and_described()
    {
        Assert.Equal("gpu", accelerator.F64.Name);
        Assert.False(accelerator.F64.IsCuda);
        Assert.StartsWith("CPU accelerator (ILGPU, ", accelerator.F64.Device, StringComparison.Ordinal);
        Assert.Contains(GpuDevice.Devices(), d => d == accelerator.F64.Device);
    }

    [Fact]
    public void A_form_without_kernels_is_refused_as_unsupported()
    {
        var error = Assert.Throws<InputException>(() => accelerator.F64.Run(FormCatalog.Find("softmax"), "naive", new Dictionary<string, Tensor>(), FormParameters.None));
        Assert.True(error.Unsupported);
        Assert.Contains("--backend gpu", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_chunk_size_below_one_and_an_unknown_variant_are_refused_as_on_the_cpu()
    {
        var c = new DecayGpuCase("gla", "chunked", 1, 4, 1, 2, 2, GateRegime.Mild, 0, false, false, false, 3);
        var onCpu = Assert.Throws<InputException>(() => c.FormUnderTest.Run("chunked", c.Inputs(), c.Parameters()));
        var onGpu = Assert.Throws<InputException>(() => accelerator.F64.Run(c.FormUnderTest, "chunked", c.Inputs(), c.Parameters()));
        Assert.Equal(onCpu.Message, onGpu.Message);
        var unknown = c with { ChunkSize = 2 };
        onCpu = Assert.Throws<InputException>(() => unknown.FormUnderTest.Run("fused", unknown.Inputs(), unknown.Parameters()));
        onGpu = Assert.Throws<InputException>(() => accelerator.F64.Run(unknown.FormUnderTest, "fused", unknown.Inputs(), unknown.Parameters()));
        Assert.Equal(onCpu.Message, onGpu.Message);
    }

    /// <summary>
    /// ILGPU's CPU accelerator runs a kernel as .NET code, so it never meets what the PTX backend cannot translate
    /// (delegates, non-blittable arguments, unsupported library calls): this compiles every kernel, in f64 and f32, to
    /// PTX for SM_90 without a driver, which is where such a kernel fails.
    /// </summary>
    [Fact]
    public void Every_kernel_compiles_to_ptx_for_the_h100()
    {
        using Context context = Context.Create(builder => GpuMath.UseOnCuda(builder.Cuda().DefaultCPU().EnableAlgorithms()));
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        var kernels = Kernels().ToList();
        Assert.Contains(kernels, k => k.Name == "IntraChunk"); // an explicitly grouped kernel with shared memory and barriers
        Assert.Contains(kernels, k => k.Name == "Recurrent");
        foreach (MethodInfo kernel in kernels)
        {
            foreach (Type real in new[] { typeof(double), typeof(float) })
            {
                MethodInfo method = kernel.MakeGenericMethod(real);
                EntryPointDescription entry = method.GetParameters()[0].ParameterType == typeof(Index1D)
                    ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
                    : EntryPointDescription.FromExplicitlyGroupedKernel(method);
                var compiled = (PTXCompiledKernel)ptx.Compile(entry, KernelSpecialization.Empty);
                Assert.Contains(".entry", compiled.PTXAssembly, StringComparison.Ordinal);
            }
        }
    }

    /// <summary>
    /// The double exp that CUDA runs (GpuMath.ExpOnCuda, plain C#, so it can be measured here) is within 1 ulp of .NET's
    /// over the whole range, subnormal results and overflow included. On PTX the Horner steps may be fused into FMAs,
    /// which only removes roundings.
    /// </summary>
    [Fact]
    public void The_exp_compiled_for_cuda_is_within_one_ulp_of_the_cpu()
    {
        var random = new Random(18);
        double[] x = [0, -0.0, 1, -1, 709.78, 709.7827128933839, 710.5, -708.4, -720, -744.4, -745.13, -745.2, -800, 1e-300, -1e-300,
            double.PositiveInfinity, double.NegativeInfinity, double.NaN,
            .. Enumerable.Range(0, 200_000).Select(_ => -746 + 1456 * random.NextDouble()),
            .. Enumerable.Range(0, 100_000).Select(_ => -1 + 2 * random.NextDouble())];
        foreach (double xi in x)
        {
            double expected = Math.Exp(xi), actual = GpuMath.ExpOnCuda(xi);
            Assert.True(actual.Equals(expected) || Math.Abs(actual - expected) <= Math.BitIncrement(Math.Abs(expected)) - Math.Abs(expected),
                $"exp({xi:R}): {actual:R}, .NET {expected:R}");
        }
    }

    [Fact]
    public void Cuda_runs_that_exp_instead_of_ilgpus_cordic_routine()
    {
        using Context context = Context.Create(builder => GpuMath.UseOnCuda(builder.Cuda().DefaultCPU().EnableAlgorithms()));
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        MethodInfo exp = typeof(GpuMathKernels).GetMethod(nameof(GpuMathKernels.Exp))!.MakeGenericMethod(typeof(double));
        string code = ((PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromImplicitlyGroupedKernel(exp), KernelSpecialization.Empty)).PTXAssembly;
        string lastTaylorCoefficient = "0d" + BitConverter.DoubleToInt64Bits(1.0 / 6227020800).ToString("X16", System.Globalization.CultureInfo.InvariantCulture);
        Assert.Contains(lastTaylorCoefficient, code, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>ILGPU compiles √ to PTX's IEEE round-to-nearest instructions (not sqrt.approx), so the device's √ is .NET's.</summary>
    [Fact]
    public void Cuda_computes_sqrt_correctly_rounded()
    {
        using Context context = Context.Create(builder => GpuMath.UseOnCuda(builder.Cuda().DefaultCPU().EnableAlgorithms()));
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        foreach (var (real, instruction) in new[] { (typeof(double), "sqrt.rn.f64"), (typeof(float), "sqrt.rn.f32") })
        {
            MethodInfo sqrt = typeof(GpuMathKernels).GetMethod(nameof(GpuMathKernels.Sqrt))!.MakeGenericMethod(real);
            string code = ((PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromImplicitlyGroupedKernel(sqrt), KernelSpecialization.Empty)).PTXAssembly;
            Assert.Contains(instruction, code, StringComparison.Ordinal);
        }
    }

    /// <summary>Every kernel of the GPU version: the public static void generic methods of its *Kernels classes.</summary>
    private static IEnumerable<MethodInfo> Kernels() =>
        typeof(GpuBackend).Assembly.GetTypes()
            .Where(t => t.Name.EndsWith("Kernels", StringComparison.Ordinal))
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
            .Where(m => m.IsGenericMethodDefinition && m.ReturnType == typeof(void));
}
