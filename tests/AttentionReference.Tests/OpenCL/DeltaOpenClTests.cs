using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Forms.Delta;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

/// <summary>
/// The OpenCL kernels of delta_rule, gated_delta_rule, kda and rwkv7 (recurrent and chunked) against the CPU reference:
/// the same variant on both sides, with GVA, per-value β, the in-kernel L2 norm, β near 2, gates down to −20 per step,
/// state in and out, varlen, T not a multiple of C and dims that do not fill a work-group (64 items).
/// </summary>
[Collection(OpenClSerial.Name)]
public sealed class DeltaOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // The kernels run the reference's loops in the reference's order with fma contraction off; what differs is exp
    // (a few ulps in OpenCL C double) and, nowhere else, rounding: relative differences of ~1e-15, amplified at most by
    // the conditioning of T = (I + A)⁻¹ at β near 2, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32 kernels against the f64 reference: unit roundoff u = 6e-8. An output is a dot product of ≤ 8 terms of a state
    // that went through ≤ 17 steps of (I − β k kᵀ) D (eigenvalues in [1 − β, 1] ⊂ [−0.99, 1]: an error made at one
    // step is not amplified later), each step adding ≈ (2K + 4)u: ≲ 17·20·u ≈ 2e-5 in the worst case. The chunked
    // forms add a forward substitution over ≤ C rows; rwkv7's T = (I − A_ab)⁻¹ with α near 2 amplifies rounding
    // by up to ~300 (its f64 error reaches 6e-14 where the others stay at 2e-16). Measured: ≤ 8e-6 over 1400 cases of
    // every form and variant, β near 2 and gates down to −20 included. 1e-4 bounds that; a wrong kernel is wrong by O(1).
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double SinglePrecision = 1e-4;

    public static TheoryData<string, string> FormsAndVariants => new()
    {
        { "delta_rule", "recurrent" }, { "delta_rule", "chunked" },
        { "gated_delta_rule", "recurrent" }, { "gated_delta_rule", "chunked" },
        { "kda", "recurrent" }, { "kda", "chunked" },
        { "rwkv7", "recurrent" }, { "rwkv7", "chunked" },
    };

    /// <summary>Longer sequences and wider heads than the CPU laws use: T up to 40, K up to 20, V = 65 (more value
    /// columns than a work-group has items), chunk sizes that do not divide T and ones longer than T.</summary>
    private static readonly Arbitrary<DeltaCase> Wide =
        (from c in DeltaCase.Arbitrary.Generator
         from t in Gen.Choose(1, 40)
         from k in Gen.Elements(1, 7, 20)
         from v in Gen.Elements(3, 65)
         from chunk in Gen.Choose(1, 45)
         select c with { T = t, K = k, V = v, Chunk = chunk, B = 1 }).ToArbitrary();

    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void OpenCL_f64_equals_the_cpu_reference(string form, string variant) =>
        PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c => Agree(form, variant, Fit(form, c), fixture.F64, SameMathInDouble)), cases: 80);

    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void OpenCL_f64_equals_the_cpu_reference_with_beta_near_2_and_gates_down_to_minus_20(string form, string variant) =>
        PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c =>
            Agree(form, variant, Fit(form, c.NearTwo().StrongGates()), fixture.F64, SameMathInDouble)), cases: 60);

    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void OpenCL_f64_equals_the_cpu_reference_on_long_sequences_and_wide_heads(string form, string variant) =>
        PropertyRuns.Check(Prop.ForAll(Wide, c => Agree(form, variant, Fit(form, c), fixture.F64, SameMathInDouble)), cases: 30);

    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void OpenCL_f64_equals_the_cpu_reference_with_cu_seqlens(string form, string variant) =>
        PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, Gen.ListOf(Gen.Choose(0, 17)).ToArbitrary(), (c, cuts) =>
        {
            DeltaCase single = Fit(form, c with { B = 1 });
            int[] offsets = [0, .. cuts.Select(x => Math.Min(x, single.T)).Order(), single.T];
            return Agree(form, variant, single, fixture.F64, SameMathInDouble, offsets);
        }), cases: 60);

    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void OpenCL_f32_is_within_the_f32_bound_of_the_cpu_reference(string form, string variant) =>
        PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c => Agree(form, variant, Fit(form, c), fixture.F32, SinglePrecision)), cases: 60);

    /// <summary>K = 130: the recurrent kernels keep the state column in the final_state buffer past K = 128.</summary>
    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void OpenCL_f64_equals_the_cpu_reference_with_more_key_channels_than_fit_in_private_memory(string form, string variant)
    {
        var c = new DeltaCase(B: 2, T: 6, H: 1, Group: 2, K: 130, V: 3, Chunk: 4, BetaRegime.NearTwo, GateFloor: 20,
            PerValueBeta: true, L2Norm: true, WithInitialState: true, Seed: 9);
        Assert.True(Agree(form, variant, Fit(form, c), fixture.F64, SameMathInDouble));
    }

    [Fact]
    public void The_parallel_delta_rule_is_refused_on_opencl_with_exit_2_and_one_clear_line()
    {
        using var temp = new TempFolder();
        var c = new DeltaCase(1, 5, 1, 1, 3, 2, 2, BetaRegime.Usual, 1, false, false, false, 5);
        var all = c.All();
        var file = new TensorFile();
        foreach (string name in new[] { "q", "k", "v", "beta" })
        {
            file.Add(name, all[name]);
        }
        TensorFiles.Write(temp.File("in.safetensors"), file);
        var outcome = CliRunner.Run("run", "delta_rule", "--backend", "opencl", "--variant", "parallel",
            "--in", temp.File("in.safetensors"), "--out", temp.File("out.safetensors"));
        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("--backend opencl: delta_rule variant 'parallel' has no OpenCL kernel", outcome.Error, StringComparison.Ordinal);
        Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void A_parameter_the_kernels_do_not_implement_is_refused()
    {
        var c = new DeltaCase(1, 3, 1, 1, 2, 2, 2, BetaRegime.Usual, 1, false, false, false, 6);
        var (inputs, _) = Inputs("rwkv7", c, null);
        var parameters = new FormParameters(new Dictionary<string, string> { ["use_qk_l2norm_in_kernel"] = "true" });
        var error = Assert.Throws<InputException>(() => fixture.F64.Run(FormCatalog.Find("rwkv7"), "recurrent", inputs, parameters));
        Assert.Contains("--backend opencl", error.Message, StringComparison.Ordinal);
    }

    /// <summary>kda takes a headwise β only; rwkv7 has no GVA and no L2 norm parameter.</summary>
    private static DeltaCase Fit(string form, DeltaCase c) => form switch
    {
        "kda" => c with { PerValueBeta = false },
        "rwkv7" => c with { Group = 1, PerValueBeta = false },
        _ => c,
    };

    private static bool Agree(string form, string variant, DeltaCase c, IBackend backend, double tolerance, int[]? offsets = null)
    {
        var (inputs, parameters) = Inputs(form, c, offsets);
        IForm f = FormCatalog.Find(form);
        var cpu = CpuBackend.Instance.Run(f, variant, inputs, parameters);
        var gpu = backend.Run(f, variant, inputs, parameters);
        return OpenClAgreement.Close(backend, gpu["o"], cpu["o"], tolerance) && OpenClAgreement.Close(backend, gpu["final_state"], cpu["final_state"], tolerance);
    }

    /// <summary>The form's inputs under its own names, with the case's chunk size, L2 norm, initial state and (when
    /// <paramref name="offsets"/> is given) cu_seqlens with a fresh initial state per sequence.</summary>
    private static (Dictionary<string, Tensor> Inputs, FormParameters Parameters) Inputs(string form, DeltaCase c, int[]? offsets)
    {
        var all = c.All();
        string[] names = form switch
        {
            "delta_rule" => ["q", "k", "v", "beta"],
            "gated_delta_rule" => ["q", "k", "v", "g", "beta"],
            "kda" => ["q", "k", "v", "gk", "beta"],
            _ => ["q", "k", "v", "a", "b", "w"],
        };
        var inputs = names.ToDictionary(name => name == "w" ? "gk" : name, name => all[name]);
        if (offsets is not null)
        {
            inputs["cu_seqlens"] = new Tensor([offsets.Length], offsets.Select(x => (double)x).ToArray(), DType.I32);
            if (c.WithInitialState)
            {
                inputs["initial_state"] = TestTensors.Normal(new Random(c.Seed), 1, offsets.Length - 1, c.HV, c.K, c.V);
            }
        }
        else if (c.InitialState(all) is { } s0)
        {
            inputs["initial_state"] = s0;
        }
        var parameters = new Dictionary<string, string> { ["chunk_size"] = c.Chunk.ToString(CultureInfo.InvariantCulture) };
        if (form != "rwkv7")
        {
            parameters["use_qk_l2norm_in_kernel"] = c.L2Norm ? "true" : "false";
        }
        if (c.Seed % 3 == 0)
        {
            parameters["scale"] = "0.7";
        }
        return (inputs, new FormParameters(parameters));
    }
}
