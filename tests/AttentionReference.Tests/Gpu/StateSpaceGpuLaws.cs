using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Golden.Cases;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.StateSpace;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Gpu;

/// <summary>How the step sizes dt = exp(log_dt) of a diagonal-SSM case are drawn, per channel (s4d) or head (h3).</summary>
public enum SsmStep
{
    /// <summary>The golden recipe: dt ≈ e^−3 ≈ 0.05.</summary>
    Mild,
    /// <summary>dt ≈ e^4 ≈ 55: |dt·A| from about 10 to past 1000 (Ā underflows to 0), angles dt·A_imag up to ~3500 rad.</summary>
    Strong,
    /// <summary>dt ≈ e^−18 ≈ 1.5e-8: Ā = 1 − O(1e-8), B̄ ≈ dt, where e^{dtA} − 1 must keep its digits.</summary>
    Tiny,
    /// <summary>Each channel or head mild, strong or tiny.</summary>
    Mixed,
}

/// <summary>
/// A random s4d or h3 call: the variant (fft included); shapes that do not fill a group (T up to 40 and 0, so fft's
/// transforms of up to 128 points span several of the CPU accelerator's 16 threads; s4d channels up to 19); modes 1 to
/// 17; complex or real (real_a) modes; D and shift_D present or absent; shift taps fewer or more than T; a dt regime.
/// </summary>
public sealed record DiagonalSsmGpuCase(string Form, string Variant, int B, int T, int H, int N, int D, int M,
    bool RealA, bool WithSkip, SsmStep Regime, int Seed)
{
    public static Arbitrary<DiagonalSsmGpuCase> Arbitrary { get; } = Of(SsmStep.Mild, SsmStep.Mild, SsmStep.Mixed).ToArbitrary();

    /// <summary>Cases of either form with their dt drawn from <paramref name="regimes"/>.</summary>
    public static Gen<DiagonalSsmGpuCase> Of(params SsmStep[] regimes) =>
        from form in Gen.Elements("s4d", "h3")
        from variant in form == "s4d" ? Gen.Elements("recurrent", "convolution", "fft") : Gen.Elements("recurrent", "convolution")
        from b in Gen.Choose(1, 2)
        from t in Gen.Elements(0, 1, 2, 7, 13, 24, 31, 40)
        from h in form == "s4d" ? Gen.Elements(1, 3, 19) : Gen.Elements(1, 2, 3)
        from n in Gen.Elements(1, 3, 8, 17)
        from d in Gen.Elements(1, 2, 5)
        from m in Gen.Elements(1, 2, 4, 45)
        from realA in Gen.Elements(false, true)
        from withSkip in Gen.Elements(false, true)
        from regime in Gen.Elements(regimes)
        from seed in Gen.Choose(0, int.MaxValue)
        select new DiagonalSsmGpuCase(form, variant, b, t, h, n, d, m, realA, withSkip, regime, seed);

    public IForm FormUnderTest => FormCatalog.Find(Form);

    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        Dictionary<string, Tensor> inputs;
        if (Form == "s4d")
        {
            inputs = new Dictionary<string, Tensor> { ["u"] = TestTensors.Normal(random, 1, B, T, H) };
            StateSpaceCases.AddDiagonalSsm(inputs, Source(random), H, N, RealA);
        }
        else
        {
            inputs = StateSpaceCases.H3Inputs(Source(random), B, T, H, D, M, N);
            if (RealA)
            {
                inputs.Remove("A_imag"); // A_real = −½·e^(N(0, 0.3²)) is as good a real spectrum as any
                inputs.Remove("C_imag");
            }
            if (!WithSkip)
            {
                inputs.Remove("shift_D");
            }
        }
        if (!WithSkip)
        {
            inputs.Remove("D");
        }
        double[] shifts = [0, 7, -15];
        inputs["log_dt"] = new Tensor([H], inputs["log_dt"].Data.Select(x => x + Regime switch
        {
            SsmStep.Mild => 0,
            SsmStep.Strong => 7,
            SsmStep.Tiny => -15,
            _ => shifts[random.Next(3)],
        }).ToArray());
        return inputs;
    }

    public FormParameters Parameters() => new(RealA ? new Dictionary<string, string> { ["real_a"] = "true" } : []);
}

/// <summary>
/// A random mamba call: the variant; shapes past the CPU accelerator's 16 threads (D up to 19, N up to 19, L up to 40
/// and 0); B time-invariant [D,N] (Groups 0), shared [B,N,L] (−1) or grouped [B,G,N,L] (G | D, G = 1 included), C of the
/// same kind or another; a block size that often does not divide L; Δ·A down to −50 per step; D, z and delta_bias (with
/// softplus in the mild regime); an initial state or none; batch or varlen.
/// </summary>
public sealed record MambaGpuCase(string Variant, int B, int D, int L, int N, int Groups, bool OtherC, int BlockSize,
    StepRegime Regime, bool Extras, bool Softplus, bool Varlen, bool WithState, int Seed)
{
    public static Gen<MambaGpuCase> Generator { get; } =
        from variant in Gen.Elements("recurrent", "scan")
        from b in Gen.Choose(1, 2)
        from d in Gen.Elements(1, 3, 6, 19)
        from l in Gen.Choose(0, 40)
        from n in Gen.Elements(1, 3, 5, 19)
        from kind in Gen.Elements(0, -1, 1)
        from groups in kind < 1 ? Gen.Constant(kind) : Gen.Elements(Enumerable.Range(1, d).Where(g => d % g == 0).ToArray())
        from otherC in Gen.Elements(false, false, true)
        from block in Gen.Choose(1, 45)
        from regime in Gen.Elements(StepRegime.Mild, StepRegime.Strong, StepRegime.Mixed)
        from extras in Gen.Elements(false, true)
        from softplus in Gen.Elements(false, true)
        from varlen in Gen.Elements(false, true)
        from withState in Gen.Elements(false, true)
        from seed in Gen.Choose(0, int.MaxValue)
        select new MambaGpuCase(variant, varlen ? 1 : b, d, l, n, groups, otherC, block, regime, extras,
            softplus && regime == StepRegime.Mild, varlen, withState, seed);

    public static Arbitrary<MambaGpuCase> Arbitrary { get; } = Generator.ToArbitrary();

    /// <summary>The inputs by the form's names: the golden recipe, Δ rewritten for the regime, state and varlen as drawn.</summary>
    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        int[]? cuts = Varlen ? Enumerable.Range(0, 3).Select(_ => random.Next(L + 1)).Append(0).Append(L).Order().ToArray() : null;
        var shape = new StateSpaceCases.MambaShape(B, D, L, N, Math.Abs(Groups)) { Extras = Extras, CuSeqlens = cuts };
        var inputs = StateSpaceCases.MambaInputs(Source(random), shape, Softplus);
        if (Groups == 1)
        {
            // the recipe's G = 1 is the shared [B,N,L]; one group spelled [B,1,N,L]
            inputs["B"] = inputs["B"].Reshape(B, 1, N, L);
            inputs["C"] = inputs["C"].Reshape(B, 1, N, L);
        }
        if (OtherC)
        {
            inputs["C"] = Groups == 0 ? TestTensors.Normal(random, 1, B, N, L) : TestTensors.Normal(random, 1, D, N);
        }
        Tensor a = inputs["A"];
        // Δ[b, d, l] multiplies A[d, :]; the smallest |A_dn| is n = 0's
        Steps(inputs["delta"], i => Math.Abs(a[i / Math.Max(1, L) % D, 0]), Regime, random);
        if (Regime != StepRegime.Mild)
        {
            inputs.Remove("delta_bias"); // Δ is drawn directly so that the regime holds
        }
        else if (!Softplus && inputs.TryGetValue("delta_bias", out Tensor? bias))
        {
            inputs["delta_bias"] = Shrunk(bias); // the recipe's bias ≈ −2 is for softplus; without it Δ would be < 0 (growth)
        }
        inputs.Remove("initial_state");
        if (WithState)
        {
            inputs["initial_state"] = TestTensors.Normal(random, 1, cuts is null ? B : cuts.Length - 1, D, N);
        }
        return inputs;
    }

    /// <summary>A bias of about −0.02: Δ = 0.1·e^(N(0, ½²)) + bias stays positive but for rare draws, and then barely.</summary>
    internal static Tensor Shrunk(Tensor bias) => new(bias.ShapeArray(), bias.Data.Select(x => x / 100).ToArray());

    public FormParameters Parameters() => new(new Dictionary<string, string>
    {
        ["block_size"] = BlockSize.ToString(CultureInfo.InvariantCulture),
        ["delta_softplus"] = Softplus ? "true" : "false",
    });
}

/// <summary>
/// A random ssd call: the variant (all three); shapes past the CPU accelerator's 16 threads (P up to 17, chunks up to
/// 45 steps, N up to 19, T up to 40 and 0); groups dividing the heads; a chunk size that often does not divide T; Δ·A
/// down to −50 per step; D per head or per channel, z, dt_bias with softplus (mild regime); an initial state or none;
/// batch or varlen.
/// </summary>
public sealed record SsdGpuCase(string Variant, int B, int T, int H, int P, int G, int N, int Chunk, StepRegime Regime,
    bool Extras, bool Softplus, bool Varlen, bool WithState, int Seed)
{
    public static Gen<SsdGpuCase> Generator { get; } =
        from variant in Gen.Elements("recurrent", "chunked", "quadratic")
        from b in Gen.Choose(1, 2)
        from t in Gen.Choose(0, 40)
        from g in Gen.Choose(1, 2)
        from ratio in Gen.Elements(1, 3)
        from p in Gen.Elements(1, 2, 5, 17)
        from n in Gen.Elements(1, 3, 4, 19)
        from chunk in Gen.Choose(1, 45)
        from regime in Gen.Elements(StepRegime.Mild, StepRegime.Strong, StepRegime.Mixed)
        from extras in Gen.Elements(false, true)
        from softplus in Gen.Elements(false, true)
        from varlen in Gen.Elements(false, true)
        from withState in Gen.Elements(false, true)
        from seed in Gen.Choose(0, int.MaxValue)
        select new SsdGpuCase(variant, varlen ? 1 : b, t, g * ratio, p, g, n, chunk, regime, extras,
            softplus && regime == StepRegime.Mild, varlen, withState, seed);

    public static Arbitrary<SsdGpuCase> Arbitrary { get; } = Generator.ToArbitrary();

    /// <summary>The inputs by the form's names (D [H], or with extras D [H,P], z and dt_bias), Δ as the regime says.</summary>
    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        int[]? cuts = Varlen ? Enumerable.Range(0, 3).Select(_ => random.Next(T + 1)).Append(0).Append(T).Order().ToArray() : null;
        var shape = new StateSpaceCases.SsdShape(B, T, H, P, G, N) { Extras = Extras, CuSeqlens = cuts };
        var inputs = StateSpaceCases.SsdInputs(Source(random), shape, Softplus);
        Tensor a = inputs["A"];
        Steps(inputs["dt"], i => Math.Abs(a.Data[i % H]), Regime, random);
        if (Regime != StepRegime.Mild)
        {
            inputs.Remove("dt_bias"); // Δ is drawn directly so that the regime holds
        }
        else if (!Softplus && inputs.TryGetValue("dt_bias", out Tensor? bias))
        {
            inputs["dt_bias"] = MambaGpuCase.Shrunk(bias); // the recipe's bias ≈ −2 is for softplus; without it Δ would be < 0
        }
        inputs.Remove("initial_state");
        if (WithState)
        {
            inputs["initial_state"] = TestTensors.Normal(random, 1, cuts is null ? B : cuts.Length - 1, H, P, N);
        }
        return inputs;
    }

    public FormParameters Parameters() => new(new Dictionary<string, string>
    {
        ["chunk_size"] = Chunk.ToString(CultureInfo.InvariantCulture),
        ["dt_softplus"] = Softplus ? "true" : "false",
    });
}

/// <summary>Long sequences of strong and tiny steps in every form: s4d and h3 with dt ≈ e^4 or e^−18, mamba and ssd with Δ·A down to −50 or Δ = 1e-8.</summary>
public sealed record StrongStateSpaceGpuCase(DiagonalSsmGpuCase Diagonal, MambaGpuCase Mamba, SsdGpuCase Ssd)
{
    public static Arbitrary<StrongStateSpaceGpuCase> Arbitrary { get; } =
        (from diagonal in DiagonalSsmGpuCase.Of(SsmStep.Strong, SsmStep.Tiny)
         from mamba in MambaGpuCase.Generator
         from ssd in SsdGpuCase.Generator
         from regime in Gen.Elements(StepRegime.Strong, StepRegime.Mixed)
         select new StrongStateSpaceGpuCase(
             // Without D when tiny: D·u ≈ 1 would hide the ≈ dt response whose digits are the point.
             diagonal with { T = 40, WithSkip = diagonal.WithSkip && diagonal.Regime != SsmStep.Tiny },
             mamba with { L = 40, Regime = regime, Softplus = false },
             ssd with { T = 40, Regime = regime, Softplus = false })).ToArbitrary();
}

/// <summary>
/// The GPU version of the state-space family (s4d, h3, mamba, ssd; every variant and option) equals the CPU reference:
/// written once, run once per accelerator by the classes below.
/// </summary>
public abstract class StateSpaceGpuLaws(AcceleratorFixture accelerator)
{
    // s4d, h3: the kernels evaluate the reference's terms in its order (System.Numerics.Complex's operations, Smith's
    // division, Kahan's expm1, sums over modes, lags and channels in the same sequence); what differs is the device's exp,
    // sin, cos and log (.NET's on the CPU accelerator, GpuMath's within 1 ulp of them on CUDA), the reference's SIMD exp
    // and angle-addition phases of K_l against direct ones (a few ε each), and FMA contraction on PTX: a few ulps per term
    // through ≤ 40 steps and ≤ 17 modes, far below 1e-12. fft: the reference's transform, twiddles from the same angles.
    // mamba, ssd: the reference's expressions in the reference's order (the same products, the same running sums from the
    // same ends: the scan's block pairs, ssd's segment sums from l down (chunked) or grown with t (quadratic), y summed
    // over n upwards); what differs is exp, log of softplus and SiLU (a few ulps each) and the reference's SIMD dot
    // products: a few ulps per term, decays only shrinking terms, over ≤ 40 steps — far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32: u = 6e-8. Ā, B̄ come from f32 exp/cos/sin of an f32 dt·A (a few u each), and the convolution's exp(l·dtA) of an
    // angle l·dt·A_imag up to ~120 rad in the mild regime, whose f32 rounding alone is ~120·u ≈ 7e-6 absolute in the
    // phase; the recurrence carries an error of Ā through ≤ 40 steps (≈ 40·4u ≈ 1e-5); fft's rounding is about
    // log2(n)·u relative to ‖K‖₂‖u‖₂. Sums over ≤ 17 modes (× 2 for conjugates) and ≤ 40 lags of random-sign terms can
    // cancel the result by ~10 against the sum of |terms|: ≈ 1e-4 at the very worst, 1e-5 typically. Held at unit scale
    // (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below its terms is compared at their scale.
    // mamba, ssd: an output is a sum over ≤ 40 steps and N ≤ 19 states (P·N ≤ 323 for ssd's state), each term a product
    // of a few factors (exp included, a few u each), the state carrying every earlier step's rounding: ≈ (L + N)·u ≈
    // 4e-6 relative to the sum of |terms|, cancelled by random signs by up to ~10; Δ·A is rounded too (u of a log decay
    // of 50 is 3e-6 in the decay itself). The same bound, at unit scale.
    private const double SinglePrecision = 1e-4;

    [AcceleratorLaw(60)]
    public bool S4d_and_h3_f64_equal_the_cpu_reference_in_every_variant(DiagonalSsmGpuCase c)
    {
        var (cpu, gpu) = Both(c.FormUnderTest, c.Variant, c.Inputs(), c.Parameters(), accelerator.F64);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble);
    }

    [AcceleratorLaw(30)]
    public bool S4d_and_h3_f32_are_within_the_f32_bound_of_the_cpu_reference(DiagonalSsmGpuCase c)
    {
        var (cpu, gpu) = Both(c.FormUnderTest, c.Variant, c.Inputs(), c.Parameters(), accelerator.F32);
        return TestTensors.CloseAtUnitScale(gpu["o"], cpu["o"], SinglePrecision);
    }

    [AcceleratorLaw(60)]
    public bool Mamba_f64_equals_the_cpu_reference_in_both_variants_with_every_option(MambaGpuCase c) =>
        Agree(Both(FormCatalog.Find("mamba"), c.Variant, c.Inputs(), c.Parameters(), accelerator.F64), SameMathInDouble);

    [AcceleratorLaw(30)]
    public bool Mamba_f32_is_within_the_f32_bound_of_the_cpu_reference(MambaGpuCase c) =>
        AgreeInF32(Both(FormCatalog.Find("mamba"), c.Variant, c.Inputs(), c.Parameters(), accelerator.F32), SinglePrecision);

    [AcceleratorLaw(60)]
    public bool Ssd_f64_equals_the_cpu_reference_in_every_variant_with_every_option(SsdGpuCase c) =>
        Agree(Both(FormCatalog.Find("ssd"), c.Variant, c.Inputs(), c.Parameters(), accelerator.F64), SameMathInDouble);

    [AcceleratorLaw(30)]
    public bool Ssd_f32_is_within_the_f32_bound_of_the_cpu_reference(SsdGpuCase c) =>
        AgreeInF32(Both(FormCatalog.Find("ssd"), c.Variant, c.Inputs(), c.Parameters(), accelerator.F32), SinglePrecision);

    [AcceleratorLaw(20)]
    public bool Strong_decay_and_tiny_steps_stay_finite_and_equal_to_the_cpu_reference(StrongStateSpaceGpuCase c)
    {
        // 40 steps of Δ·A ≤ −10 sum to ≤ −400: a cumulative product would underflow long before; none is formed.
        var (d, m, s) = (c.Diagonal, c.Mamba, c.Ssd);
        var diagonal = Both(d.FormUnderTest, d.Variant, d.Inputs(), d.Parameters(), accelerator.F64);
        var mamba = Both(FormCatalog.Find("mamba"), m.Variant, m.Inputs(), m.Parameters(), accelerator.F64);
        var ssd = Both(FormCatalog.Find("ssd"), s.Variant, s.Inputs(), s.Parameters(), accelerator.F64);
        return Finite(diagonal.Gpu["o"]) && TestTensors.Close(diagonal.Gpu["o"], diagonal.Cpu["o"], SameMathInDouble)
            && new[] { mamba, ssd }.All(run => Finite(run.Gpu["o"]) && Finite(run.Gpu["final_state"]) && Agree(run, SameMathInDouble));
    }

    private static bool Agree((IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) run, double tolerance) =>
        run.Gpu.Keys.Order().SequenceEqual(run.Cpu.Keys.Order())
        && TestTensors.Close(run.Gpu["o"], run.Cpu["o"], tolerance)
        && TestTensors.Close(run.Gpu["final_state"], run.Cpu["final_state"], tolerance);

    private static bool AgreeInF32((IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) run, double tolerance) =>
        run.Gpu.Keys.Order().SequenceEqual(run.Cpu.Keys.Order())
        && TestTensors.CloseAtUnitScale(run.Gpu["o"], run.Cpu["o"], tolerance)
        && TestTensors.CloseAtUnitScale(run.Gpu["final_state"], run.Cpu["final_state"], tolerance);

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(IForm form, string variant,
        Dictionary<string, Tensor> inputs, FormParameters parameters, GpuBackend gpu) =>
        (CpuBackend.Instance.Run(form, variant, inputs, parameters), gpu.Run(form, variant, inputs, parameters));
}

[Accelerator("cpu")]
public sealed class StateSpaceCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : StateSpaceGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class StateSpaceCudaTests(CudaFixture accelerator) : StateSpaceGpuLaws(accelerator), IClassFixture<CudaFixture>;

/// <summary>
/// What the GPU version of the state-space family promises beyond the laws, on the CPU accelerator: every golden case of
/// its forms verifies, and bad input is refused with the CPU form's own message.
/// </summary>
public sealed class StateSpaceGpuBackendTests(CpuAcceleratorFixture accelerator) : IClassFixture<CpuAcceleratorFixture>
{
    private static readonly string[] s_forms = ["s4d", "h3", "mamba", "ssd"];

    [Fact]
    public void Every_golden_case_of_the_family_verifies_on_the_gpu_backend()
    {
        var results = AttentionReference.Golden.GoldenStore.Verify(RepoPaths.Of("golden"), new FormsOnGpu(accelerator.F64, s_forms))
            .Where(r => s_forms.Contains(r.Id.Split('/')[0]) && !r.IsGradient) // gradient goldens: CPU only
            .ToList();
        Assert.Equal(19, results.Count);
        Assert.All(results, r => Assert.True(r.Passed, $"{r.Id}: {r.Problem ?? r.Skipped}"));
    }

    [Fact]
    public void A_block_or_chunk_size_far_past_the_sequence_is_one_block_per_sequence()
    {
        var mamba = new MambaGpuCase("scan", 1, 3, 11, 2, 1, false, int.MaxValue, StepRegime.Mild, true, false, true, true, 5);
        var ssd = new SsdGpuCase("chunked", 1, 11, 2, 3, 1, 2, int.MaxValue, StepRegime.Mild, true, false, true, true, 5);
        foreach (var (form, variant, inputs, parameters) in new[]
        {
            (FormCatalog.Find("mamba"), "scan", mamba.Inputs(), mamba.Parameters()),
            (FormCatalog.Find("ssd"), "chunked", ssd.Inputs(), ssd.Parameters()),
        })
        {
            var cpu = CpuBackend.Instance.Run(form, variant, inputs, parameters);
            var gpu = accelerator.F64.Run(form, variant, inputs, parameters);
            Assert.True(TestTensors.Close(gpu["o"], cpu["o"], 1e-12) && TestTensors.Close(gpu["final_state"], cpu["final_state"], 1e-12), form.Name);
        }
    }

    [Fact]
    public void Bad_input_is_refused_with_the_cpu_forms_own_message()
    {
        var h3 = new DiagonalSsmGpuCase("h3", "recurrent", 1, 5, 2, 3, 2, 2, true, true, SsmStep.Mild, 7);
        var withImag = h3.Inputs();
        withImag["A_imag"] = Tensor.Zeros(2, 3); // real_a with a complex part given
        var mamba = new MambaGpuCase("scan", 1, 4, 5, 2, -1, false, 0, StepRegime.Mild, false, false, false, false, 3);
        var grouped = mamba.Inputs();
        grouped["B"] = Tensor.Zeros(1, 3, 2, 5); // 3 groups do not divide 4 channels
        var ssd = new SsdGpuCase("chunked", 1, 5, 2, 2, 1, 3, 0, StepRegime.Mild, false, false, false, false, 3);
        foreach (var (form, variant, inputs, parameters) in new[]
        {
            (h3.FormUnderTest, "recurrent", withImag, h3.Parameters()),
            (FormCatalog.Find("mamba"), "scan", mamba.Inputs(), mamba.Parameters()), // block_size 0
            (FormCatalog.Find("mamba"), "recurrent", grouped, mamba.Parameters()),
            (FormCatalog.Find("ssd"), "chunked", ssd.Inputs(), ssd.Parameters()), // chunk_size 0
            (FormCatalog.Find("ssd"), "fused", ssd.Inputs(), (ssd with { Chunk = 2 }).Parameters()),
        })
        {
            var cpu = Assert.Throws<InputException>(() => CpuBackend.Instance.Run(form, variant, inputs, parameters));
            var gpu = Assert.Throws<InputException>(() => accelerator.F64.Run(form, variant, inputs, parameters));
            Assert.Equal(cpu.Message, gpu.Message);
            Assert.Equal(cpu.Tensor, gpu.Tensor);
            Assert.False(gpu.Unsupported);
        }
    }
}
