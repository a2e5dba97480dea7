namespace AttentionReference.Tests.Gpu;

/// <summary>
/// The GPU version of based (every variant, recurrent included) equals the CPU reference: written once, run once per
/// accelerator by the classes below.
/// </summary>
public abstract class HybridBasedGpuLaws(AcceleratorFixture accelerator)
{
    // f64: linear's taylor2 kernels (held to the CPU at 1e-12 by LinearGpuLaws; weights ≥ 1/2, so no cancellation) plus a
    // softmax over ≤ 30 keys streamed with the online rescaling instead of one max-shifted row: a few ulps (observed 2e-15).

    // f32 against the f64 reference, u = 6e-8: Taylor weights 1 + x + x²/2 ≥ 1/2 from K ≤ 17 term dot products, summed
    // over ≤ 30 keys and divided by their own positive sum, ≈ (K + 30)·u ≈ 3e-6 in the worst case; the window branch is
    // a softmax over ≤ 30 keys (≈ 2e-6); the states are ≤ 33 step sums of φ(k) v, ≈ 33u relative to the sum of |terms|.
    // 1e-5 (OpenCL's bound for the same form). Observed: at most 4.5e-7 over 200 cases. At unit scale.
    private const double SinglePrecision = 1e-5;

    [AcceleratorLaw(50)]
    public bool F64_equals_the_cpu_reference_in_every_variant(BasedGpuCase c) =>
        HybridGpu.Agree(BasedGpuCase.Form, c.Variant, c.Inputs(), c.Parameters(), HybridGpu.PowerOutputs, accelerator.F64, HybridGpu.SameMathInDouble);

    [AcceleratorLaw(30)]
    public bool F32_is_within_the_f32_bound_of_the_cpu_reference(BasedGpuCase c) =>
        HybridGpu.Agree(BasedGpuCase.Form, c.Variant, c.Inputs(), c.Parameters(), HybridGpu.PowerOutputs, accelerator.F32, SinglePrecision);
}

[Accelerator("cpu")]
public sealed class HybridBasedCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : HybridBasedGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class HybridBasedCudaTests(CudaFixture accelerator) : HybridBasedGpuLaws(accelerator), IClassFixture<CudaFixture>;
