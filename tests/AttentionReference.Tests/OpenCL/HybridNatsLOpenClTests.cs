using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Hybrid;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

/// <summary>
/// The OpenCL nats_l (recurrent and chunked) against the CPU reference: the same variant on both sides, mixed and
/// uniform routes, T not a multiple of the chunk (and chunks longer than T), decay through softmax chunks on and off,
/// gates down to −20 per step, state in and out, dims that do not fill a work-group (64 items) and V past it.
/// </summary>
[Collection(OpenClSerial.Name)]
public sealed class HybridNatsLOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // The Gated DeltaNet branch runs WyChunkwise.cl (held to the CPU at 1e-12 by DeltaOpenClTests) on the same chunks
    // as the reference, and the end-of-chunk rule sums the gates in the reference's order; the softmax branch is the
    // tiled softmax over the softmax-routed keys with the own chunk folded in by the online softmax, a different
    // summation order from the reference's single max-shifted sum: relative differences of a few ulps, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32 kernels against the f64 reference: unit roundoff u = 6e-8. The linear branch is the delta rule's (keys of norm
    // ≈ 1 and β ∈ (0, 1): every step's (I − β k kᵀ) exp(g) has eigenvalues in [0, 1], so an error made at one step is not
    // amplified later), each step adding ≈ (2K + 4)u: ≲ 40·44·u ≈ 1e-4 in the worst case, typically √T times less;
    // softmax rows add ≈ (K + log T)u relative. Measured: ≤ 1.6e-6 over 500 runs (250 wide cases, both variants). 1e-4 bounds that;
    // a wrong kernel is wrong by O(1).
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double SinglePrecision = 1e-4;

    private static readonly string[] s_outputs = ["o_linear", "o_softmax", "final_state"];

    public static TheoryData<string> Variants => new() { "recurrent", "chunked" };

    /// <summary>Longer sequences and wider heads than the CPU laws use: T up to 40, K up to 20, V = 65 (more value
    /// columns than a work-group has items), chunk sizes that do not divide T and ones longer than T.</summary>
    private static readonly Arbitrary<NatsCase> Wide =
        (from c in NatsCase.Arbitrary.Generator
         from t in Gen.Choose(1, 40)
         from k in Gen.Elements(1, 7, 20)
         from v in Gen.Elements(2, 5, 65)
         from chunk in Gen.Choose(1, 45)
         select c with { T = t, K = k, V = v, ChunkSize = chunk }).ToArbitrary();

    [Theory]
    [MemberData(nameof(Variants))]
    public void OpenCL_f64_equals_the_cpu_reference(string variant) =>
        PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c => Agree(variant, c, fixture.F64, SameMathInDouble)), cases: 80);

    [Theory]
    [MemberData(nameof(Variants))]
    public void OpenCL_f64_equals_the_cpu_reference_on_long_sequences_and_wide_heads(string variant) =>
        PropertyRuns.Check(Prop.ForAll(Wide, c => Agree(variant, c, fixture.F64, SameMathInDouble)), cases: 50);

    [Theory]
    [MemberData(nameof(Variants))]
    public void OpenCL_f32_is_within_the_f32_bound_of_the_cpu_reference(string variant) =>
        PropertyRuns.Check(Prop.ForAll(Wide, c => Agree(variant, c with { StrongGates = false }, fixture.F32, SinglePrecision)), cases: 60);

    /// <summary>K = 130: the recurrent kernel keeps the state column in the state buffer past K = 128.</summary>
    [Theory]
    [MemberData(nameof(Variants))]
    public void OpenCL_f64_equals_the_cpu_reference_with_more_key_channels_than_fit_in_private_memory(string variant) =>
        Assert.True(Agree(variant, new NatsCase(B: 2, T: 11, H: 2, K: 130, V: 3, ChunkSize: 4, Routes: 2, WithState: true,
            Decay: true, StrongGates: false, Seed: 9), fixture.F64, SameMathInDouble));

    [Fact]
    public void A_parameter_the_kernels_do_not_implement_is_refused()
    {
        var (inputs, _) = Inputs(new NatsCase(1, 3, 1, 2, 2, 2, 2, false, true, false, 6));
        var parameters = new FormParameters(new Dictionary<string, string> { ["ops_for_incomplete_chunks"] = "attn" });
        var error = Assert.Throws<InputException>(() => fixture.F64.Run(FormCatalog.Find("nats_l"), "chunked", inputs, parameters));
        Assert.Contains("--backend opencl", error.Message, StringComparison.Ordinal);
        Assert.True(error.Unsupported);
    }

    [Fact]
    public void Bad_input_gets_the_cpu_forms_error_naming_the_tensor()
    {
        var (inputs, parameters) = Inputs(new NatsCase(1, 5, 1, 2, 2, 2, 2, false, true, false, 7));
        inputs["route"] = Tensor.Zeros(1, 2, 1); // ⌈5/2⌉ = 3 chunks
        var error = Assert.Throws<InputException>(() => fixture.F64.Run(FormCatalog.Find("nats_l"), "recurrent", inputs, parameters));
        Assert.Contains("route", error.Message, StringComparison.Ordinal);
    }

    private static bool Agree(string variant, NatsCase c, IBackend backend, double tolerance)
    {
        var (inputs, parameters) = Inputs(c);
        IForm form = FormCatalog.Find("nats_l");
        var cpu = CpuBackend.Instance.Run(form, variant, inputs, parameters);
        var gpu = backend.Run(form, variant, inputs, parameters);
        return s_outputs.All(name => OpenClAgreement.Close(backend, gpu[name], cpu[name], tolerance));
    }

    /// <summary>The form's inputs under its own names, with the case's chunk size, decay switch and initial state (a scale for a third of the seeds).</summary>
    private static (Dictionary<string, Tensor> Inputs, FormParameters Parameters) Inputs(NatsCase c)
    {
        var parameters = new Dictionary<string, string>
        {
            ["chunk_size"] = c.ChunkSize.ToString(CultureInfo.InvariantCulture),
            ["decay_for_non_gdn_blocks"] = c.Decay ? "true" : "false",
        };
        if (c.Seed % 3 == 0)
        {
            parameters["scale"] = "0.7";
        }
        return (c.Inputs(new Random(c.Seed)), new FormParameters(parameters));
    }
}
