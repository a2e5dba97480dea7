using AttentionReference.Gpu;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// The GPU version of power attention (every variant, recurrent included) equals the CPU reference: written once, run
/// once per accelerator by the classes below.
/// </summary>
public abstract class HybridPowerGpuLaws(AcceleratorFixture accelerator)
{
    // f64: the kernels evaluate the CPU form's expressions (the map's table entry by entry, (s q·k)^p by p − 1 products,
    // the quadratic form's log decays summed key by key from the diagonal down, the chunked form's b_t and exp(b_last − b_t))
    // on the same inputs; what differs is the summation order of the CPU's blocked products, the device's exp and FMA
    // contraction: a few ulps per term over ≤ 30 steps of ≤ 190-term reads of the state (observed: 2e-15).

    // f32 against the f64 reference, unit roundoff u = 6e-8: a weight is a K ≤ 17 term dot product raised to p ≤ 4 times
    // exp of a log decay summed over ≤ 30 gates, ≈ (K + p + 30)·u ≈ 3e-6 relative to its size; the sums over ≤ 30 keys,
    // the state's ≤ 30 steps and the D ≤ 153 term reads of the state add ≈ (30 + 153)·u relative to the sum of |terms|,
    // which random signs cancel by a small factor; a normalised row divides two such sums. 1e-4 (OpenCL's bound for the
    // same form). Observed: at most 8e-6 over 450 cases. Held at unit scale (TestTensors.CloseAtUnitScale): an output
    // that random signs cancel to far below the sum of |terms| is compared at the scale of its terms.
    private const double SinglePrecision = 1e-4;

    [AcceleratorLaw(60)]
    public bool F64_equals_the_cpu_reference_in_every_variant(PowerGpuCase c) =>
        HybridGpu.Agree(PowerGpuCase.Form, c.Variant, c.Inputs(), c.Parameters(), HybridGpu.PowerOutputs, accelerator.F64, HybridGpu.SameMathInDouble);

    /// <summary>
    /// Every variant in f32, the normalised recurrent one with eps = 0.25. Its denominator is the definition's
    /// φ(s q_t)·z_t, a D-term sum whose terms φ_α(s q_t) φ_α(k_j) cancel to (s q_t·k_j)^p: in f32 it carries an absolute
    /// error ≈ D·u·Σ_j (Σ_a |s q_ta k_ja|)^p, which no relative bound holds once the weights of a row are tiny (its first
    /// step with q_0·k_0 ≈ 0, or a step after strong gates): up to 5e-3 at eps = 0 over 250 such cases, where the
    /// quadratic form divides the rounded weights by their own rounded sum. That is the recurrent form's conditioning in
    /// f32 (the CPU's arithmetic in f32 would round the same sums), not the kernel's error; eps bounds the division.
    /// </summary>
    [AcceleratorLaw(30)]
    public bool F32_is_within_the_f32_bound_of_the_cpu_reference(PowerGpuCase c)
    {
        c = c.Variant == "recurrent" && c.Normalize ? c with { WithEps = true } : c;
        return HybridGpu.Agree(PowerGpuCase.Form, c.Variant, c.Inputs(), c.Parameters(), HybridGpu.PowerOutputs, accelerator.F32, SinglePrecision);
    }

    /// <summary>
    /// K = 19 at p = 2 (D = 190 feature rows of the state, more than a group has threads) and p = 3 at K = 7 (D = 84), V = 17,
    /// strong gates and an initial state: every variant, the recurrent one reading the whole D × V state at every step.
    /// </summary>
    [AcceleratorLaw(2)]
    public bool F64_equals_the_cpu_reference_with_more_feature_rows_than_a_group_has_threads(bool cubic, int seed)
    {
        var c = new PowerGpuCase("recurrent", cubic ? 3 : 2, 2, !cubic, true, 2, 21, 1, cubic ? 7 : 19, 17, 6, false, true, false, seed);
        return PowerGpuCase.Form.Variants.All(variant =>
            HybridGpu.Agree(PowerGpuCase.Form, variant, c.Inputs(), c.Parameters(), HybridGpu.PowerOutputs, accelerator.F64, HybridGpu.SameMathInDouble));
    }
}

[Accelerator("cpu")]
public sealed class HybridPowerCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : HybridPowerGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class HybridPowerCudaTests(CudaFixture accelerator) : HybridPowerGpuLaws(accelerator), IClassFixture<CudaFixture>;
