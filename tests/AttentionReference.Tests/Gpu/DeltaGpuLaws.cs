using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Delta;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random call of a form of the delta-rule family (delta_rule, gated_delta_rule, kda, rwkv7) in one of its variants:
/// a <see cref="DeltaCase"/> (GVA, per-value β, the in-kernel L2 norm, the three β regimes, gates down to −20 per step,
/// an initial state or none) widened to shapes that do not fill a group (K up to 19 and V up to 17 against the CPU
/// accelerator's 16 threads, T up to 24 and 0, chunk sizes up to 26 that often do not divide T), batch or varlen.
/// </summary>
public sealed record DeltaGpuCase(string Form, string Variant, DeltaCase Case, bool Varlen)
{
    /// <summary>Every form and variant the GPU version runs.</summary>
    public static IReadOnlyList<(string Form, string Variant)> FormsAndVariants { get; } =
    [
        ("delta_rule", "recurrent"), ("delta_rule", "chunked"), ("delta_rule", "parallel"),
        ("gated_delta_rule", "recurrent"), ("gated_delta_rule", "chunked"),
        ("kda", "recurrent"), ("kda", "chunked"),
        ("rwkv7", "recurrent"), ("rwkv7", "chunked"),
    ];

    public static Arbitrary<DeltaGpuCase> Arbitrary { get; } =
        (from formAndVariant in Gen.Elements(FormsAndVariants.ToArray())
         from c in DeltaCase.Arbitrary.Generator
         from t in Gen.Choose(0, 24)
         from k in Gen.Elements(1, 3, 8, 19)
         from v in Gen.Elements(1, 2, 5, 17)
         from chunk in Gen.Choose(1, 26)
         from varlen in Gen.Elements(false, true)
         select Of(formAndVariant.Form, formAndVariant.Variant, c with { T = t, K = k, V = v, Chunk = chunk }, varlen)).ToArbitrary();

    /// <summary>The case fitted to what <paramref name="form"/> takes: kda a headwise β only; rwkv7 no GVA, β or L2 norm.</summary>
    public static DeltaGpuCase Of(string form, string variant, DeltaCase c, bool varlen)
    {
        DeltaCase fitted = form switch
        {
            "kda" => c with { PerValueBeta = false },
            "rwkv7" => c with { Group = 1, PerValueBeta = false },
            _ => c,
        };
        return new(form, variant, fitted with { B = varlen ? 1 : c.B }, varlen);
    }

    public IForm FormUnderTest => FormCatalog.Find(Form);

    /// <summary>
    /// The form's inputs under its own names, with cu_seqlens cutting the one batch entry at up to three random points
    /// (and a fresh initial state per sequence) when varlen.
    /// </summary>
    public Dictionary<string, Tensor> Inputs()
    {
        var all = Case.All();
        string[] names = Form switch
        {
            "delta_rule" => ["q", "k", "v", "beta"],
            "gated_delta_rule" => ["q", "k", "v", "g", "beta"],
            "kda" => ["q", "k", "v", "gk", "beta"],
            _ => ["q", "k", "v", "a", "b", "w"],
        };
        var inputs = names.ToDictionary(name => name == "w" ? "gk" : name, name => all[name]);
        if (Varlen)
        {
            var random = new Random(Case.Seed);
            int[] cuts = [.. Enumerable.Range(0, 3).Select(_ => random.Next(Case.T + 1)).Append(0).Append(Case.T).Order()];
            inputs["cu_seqlens"] = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I64);
            if (Case.WithInitialState)
            {
                inputs["initial_state"] = TestTensors.Normal(random, 1, cuts.Length - 1, Case.HV, Case.K, Case.V);
            }
        }
        else if (Case.InitialState(all) is { } s0)
        {
            inputs["initial_state"] = s0;
        }
        return inputs;
    }

    /// <summary>The chunk size, the L2 norm where the form has it, and now and then a scale.</summary>
    public FormParameters Parameters()
    {
        var parameters = new Dictionary<string, string> { ["chunk_size"] = Case.Chunk.ToString(CultureInfo.InvariantCulture) };
        if (Form != "rwkv7")
        {
            parameters["use_qk_l2norm_in_kernel"] = Case.L2Norm ? "true" : "false";
        }
        if (Case.Seed % 3 == 0)
        {
            parameters["scale"] = "0.7";
        }
        return new FormParameters(parameters);
    }
}

/// <summary>
/// The GPU version of delta_rule, gated_delta_rule, kda and rwkv7 (every variant) equals the CPU reference, and the
/// family's goldens verify on it: written once, run once per accelerator by the classes below.
/// </summary>
public abstract class DeltaGpuLaws(AcceleratorFixture accelerator)
{
    // The kernels evaluate the reference's expressions in the reference's order (the same log sums and exponent
    // differences, the same forward substitutions); what differs is the summation order of the CPU's SIMD dot products,
    // the device's exp and FMA contraction: relative differences of ~1e-15, amplified at most by the conditioning of
    // T = (I + A)⁻¹ at β near 2 (rwkv7's (I − A_ab)⁻¹ by up to ~300), far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32 kernels against the f64 reference, unit roundoff u = 6e-8: an output is a dot product of ≤ 19 terms of a state
    // that went through ≤ 24 steps of (I − β k kᵀ) D (eigenvalues in [1 − β, 1] ⊂ [−0.99, 1]: an error made at one step
    // is not amplified later), each adding ≈ (2K + 4)u: ≲ 24·42·u ≈ 6e-5 in the worst case, and typically far less (the
    // OpenCL kernels measured ≤ 8e-6 over every form, β near 2 and gates down to −20 included). The chunked forms add a
    // forward substitution over ≤ C rows. A wrong kernel is wrong by O(1). Held at unit scale
    // (TestTensors.CloseAtUnitScale): an output that random signs cancel far below its terms is compared at their scale.
    private const double SinglePrecision = 1e-4;

    [AcceleratorLaw(80)]
    public bool Gpu_f64_equals_the_cpu_reference_for_every_form_and_variant(DeltaGpuCase c) => Agree(c, accelerator.F64, SameMathInDouble);

    [AcceleratorLaw(40)]
    public bool Gpu_f32_is_within_the_f32_bound_of_the_cpu_reference(DeltaGpuCase c) => Agree(c, accelerator.F32, SinglePrecision);

    [AcceleratorLaw(30)]
    public bool Gpu_f64_equals_the_cpu_reference_with_beta_near_2_and_gates_down_to_minus_20(DeltaGpuCase c) =>
        Agree(DeltaGpuCase.Of(c.Form, c.Variant, c.Case.NearTwo().StrongGates(), c.Varlen), accelerator.F64, SameMathInDouble);

    /// <summary>
    /// K = 130: more key channels than a group has threads, and than the OpenCL kernels kept in private memory; no kernel
    /// assumes a small K. Every form and variant, with per-value β, the L2 norm, β near 2 and an initial state.
    /// </summary>
    [AcceleratorLaw(1)]
    public bool Gpu_f64_equals_the_cpu_reference_with_more_key_channels_than_a_group_has_threads(int seed)
    {
        var wide = new DeltaCase(B: 2, T: 6, H: 1, Group: 2, K: 130, V: 3, Chunk: 4, BetaRegime.NearTwo, GateFloor: 20,
            PerValueBeta: true, L2Norm: true, WithInitialState: true, Seed: seed);
        return DeltaGpuCase.FormsAndVariants.All(fv => Agree(DeltaGpuCase.Of(fv.Form, fv.Variant, wide, varlen: false), accelerator.F64, SameMathInDouble));
    }

    /// <summary>
    /// Empty extents (K = 0, V = 0, T = 0) give the CPU's outputs exactly, NaN for NaN (K = 0 makes the default scale
    /// K^-0.5 infinite): no kernel reads a workspace or row that an empty extent leaves without elements.
    /// </summary>
    [AcceleratorLaw(1)]
    public bool Empty_extents_give_the_cpus_outputs()
    {
        foreach (var (k, v, t) in new[] { (0, 2, 3), (2, 0, 3), (2, 2, 0), (0, 0, 0) })
        {
            foreach (var (form, variant) in DeltaGpuCase.FormsAndVariants)
            {
                var c = DeltaGpuCase.Of(form, variant, new DeltaCase(1, t, 1, 1, k, v, 2, BetaRegime.Usual, 1, false, false, true, 3), false);
                var cpu = CpuBackend.Instance.Run(c.FormUnderTest, variant, c.Inputs(), c.Parameters());
                var gpu = accelerator.F64.Run(c.FormUnderTest, variant, c.Inputs(), c.Parameters());
                Assert.All(cpu, output => Assert.Equal(output.Value.Data, gpu[output.Key].Data));
            }
        }
        return true;
    }

    /// <summary>Every golden case of the family verifies on the GPU backend (the other forms' are skipped here).</summary>
    [AcceleratorLaw(1)]
    public bool Every_golden_case_of_the_family_verifies_on_the_gpu()
    {
        var results = GoldenStore.Verify(RepoPaths.Of("golden"), new FormsOnGpu(accelerator.F64, [.. DeltaGpuCase.FormsAndVariants.Select(fv => fv.Form).Distinct()]));
        var ours = results.Where(IsFamily).ToList();
        Assert.Equal(20, ours.Count);
        Assert.All(ours, r => Assert.True(r.Passed, $"{r.Id}: {r.Problem ?? r.Skipped ?? string.Join("; ", r.Comparisons.Where(x => !x.Passed))}"));
        Assert.All(results.Where(r => !IsFamily(r)), r => Assert.NotNull(r.Skipped));
        return true;
    }

    /// <summary>
    /// A variant the form does not have, a chunk size below 1 and a per-value β where kda takes a headwise one are refused
    /// with the CPU's message (the contract's, bound once for both).
    /// </summary>
    [AcceleratorLaw(1)]
    public bool What_the_cpu_form_refuses_is_refused_with_the_same_message()
    {
        var c = DeltaGpuCase.Of("gated_delta_rule", "parallel", new DeltaCase(1, 4, 1, 1, 2, 2, 2, BetaRegime.Usual, 1, false, false, false, 3), false);
        AssertSameRefusal(c, c.Parameters());
        var chunked = c with { Variant = "chunked" };
        AssertSameRefusal(chunked, new FormParameters(new Dictionary<string, string> { ["chunk_size"] = "0" }));
        var kda = c with { Form = "kda", Variant = "recurrent", Case = c.Case with { PerValueBeta = true } };
        AssertSameRefusal(kda, kda.Parameters());
        return true;
    }

    private void AssertSameRefusal(DeltaGpuCase c, FormParameters parameters)
    {
        var onCpu = Assert.Throws<InputException>(() => CpuBackend.Instance.Run(c.FormUnderTest, c.Variant, c.Inputs(), parameters));
        var onGpu = Assert.Throws<InputException>(() => accelerator.F64.Run(c.FormUnderTest, c.Variant, c.Inputs(), parameters));
        Assert.Equal(onCpu.Message, onGpu.Message);
    }

    private static bool Agree(DeltaGpuCase c, GpuBackend gpu, double tolerance)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        var cpu = CpuBackend.Instance.Run(c.FormUnderTest, c.Variant, inputs, parameters);
        var onGpu = gpu.Run(c.FormUnderTest, c.Variant, inputs, parameters);
        return gpu.Precision == Precision.F64
            ? TestTensors.Close(onGpu["o"], cpu["o"], tolerance) && TestTensors.Close(onGpu["final_state"], cpu["final_state"], tolerance)
            : TestTensors.CloseAtUnitScale(onGpu["o"], cpu["o"], tolerance) && TestTensors.CloseAtUnitScale(onGpu["final_state"], cpu["final_state"], tolerance);
    }

    // Gradient goldens (<case>_grad) are the CPU reference's alone: the GPU backend skips them with the others.
    private static bool IsFamily(GoldenResult r) => DeltaGpuCase.FormsAndVariants.Any(fv => r.Id.StartsWith(fv.Form + "/", StringComparison.Ordinal))
        && !r.IsGradient;

}

[Accelerator("cpu")]
public sealed class DeltaCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : DeltaGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class DeltaCudaTests(CudaFixture accelerator) : DeltaGpuLaws(accelerator), IClassFixture<CudaFixture>;
