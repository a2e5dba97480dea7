namespace AttentionReference.Tests.Gpu;

/// <summary>
/// The GPU version of nats_l (both variants) equals the CPU reference: written once, run once per accelerator by the
/// classes below.
/// </summary>
public abstract class HybridNatsLGpuLaws(AcceleratorFixture accelerator)
{
    // f64: gated_delta_rule's kernels (held at 1e-12 by DeltaGpuLaws, gates to −20 included) on the same chunks as the CPU,
    // the end-of-chunk rule with the gates summed in the CPU's order, and the softmax over A_t streamed as based's window:
    // a few ulps (observed 5e-16).

    // f32 against the f64 reference: the Gated DeltaNet branch as DeltaGpuLaws' (≤ 30 contractive steps of ≈ (2K + 4)u
    // each, its bound 1e-4) and a softmax over ≤ 30 keys (≈ (K + log T)·u). 1e-4. Observed: at most 2.1e-7 over 200
    // cases. At unit scale.
    private const double SinglePrecision = 1e-4;

    [AcceleratorLaw(40)]
    public bool F64_equals_the_cpu_reference_in_both_variants(NatsGpuCase c) =>
        HybridGpu.Agree(NatsGpuCase.Form, c.Variant, c.Inputs(), c.Parameters(), HybridGpu.NatsOutputs, accelerator.F64, HybridGpu.SameMathInDouble);

    [AcceleratorLaw(25)]
    public bool F32_is_within_the_f32_bound_of_the_cpu_reference(NatsGpuCase c) =>
        HybridGpu.Agree(NatsGpuCase.Form, c.Variant, c.Inputs(), c.Parameters(), HybridGpu.NatsOutputs, accelerator.F32, SinglePrecision);
}

[Accelerator("cpu")]
public sealed class HybridNatsLCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : HybridNatsLGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class HybridNatsLCudaTests(CudaFixture accelerator) : HybridNatsLGpuLaws(accelerator), IClassFixture<CudaFixture>;
