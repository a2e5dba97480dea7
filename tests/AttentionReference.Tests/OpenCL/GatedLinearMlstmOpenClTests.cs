using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.GatedLinear;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

/// <summary>
/// A random mLSTM problem for OpenCL: the CPU laws' <see cref="MlstmCase"/> (gate regimes with log f down to −20,
/// sigmoid or exponential forget gate, eps, an initial (C̃, ñ, m) or none), with a variant, T up to 40 with chunk sizes
/// that often do not divide it, batch or varlen, a scale or the default.
/// </summary>
public sealed record MlstmOpenClCase(MlstmCase Case, string Variant, bool Varlen, bool WithScale)
{
    public static Arbitrary<MlstmOpenClCase> Arbitrary { get; } =
        (from c in MlstmCase.Arbitrary.Generator
         from t in Gen.Choose(0, 40)
         from v in Gen.Elements(1, 5, 17)
         from chunk in Gen.Choose(1, 45)
         from variant in Gen.Elements("recurrent", "chunked", "parallel")
         from varlen in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         select new MlstmOpenClCase(c with { B = varlen ? 1 : c.B, T = t, V = v, ChunkSize = chunk }, variant, varlen, withScale)).ToArbitrary();

    public Dictionary<string, Tensor> Inputs()
    {
        var (q, k, v, i, f) = Case.Inputs();
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["i"] = i, ["f"] = f };
        int n = Case.B;
        if (Varlen)
        {
            var random = new Random(Case.Seed);
            var cuts = Enumerable.Range(0, 3).Select(_ => random.Next(Case.T + 1)).Append(0).Append(Case.T).Order().ToArray();
            inputs["cu_seqlens"] = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I64);
            n = cuts.Length - 1;
        }
        var (c0, n0, m0) = Case.State(n);
        if (c0 is not null)
        {
            (inputs["initial_state"], inputs["initial_normalizer"], inputs["initial_max"]) = (c0, n0!, m0!);
        }
        return inputs;
    }

    public FormParameters Parameters()
    {
        var values = new Dictionary<string, string>
        {
            ["chunk_size"] = Case.ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["eps"] = Case.Eps.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
            ["forget_gate"] = Case.ExpGate ? "exp" : "sigmoid",
        };
        if (WithScale)
        {
            values["scale"] = "0.37";
        }
        return new FormParameters(values);
    }
}

[Collection(OpenClSerial.Name)]
public sealed class GatedLinearMlstmOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // The kernels evaluate the reference's terms in its order (the same stabiliser, the same exponent differences);
    // the OpenCL exp and FMA contraction differ by a few ulps per term over ≤ 40 steps: below 1e-12. (The input gates
    // of MlstmCase stay in [−4, 4], where o is well conditioned; see its comment.)
    private const double SameMathInDouble = 1e-12;

    // f32: u = 6e-8; ≤ 40 steps of ≤ 7-term products, each rescaled by exp once per step; the division by the
    // normaliser max(|qᵀñ|, exp(−m)), whose terms reach e^4·|q·k| and may cancel down to the clamp, amplifies the
    // relative rounding of the sums by up to e^4 ≈ 55: ≈ 55·(T + K)·u ≈ 2e-4 at worst; 1e-3.
    // Observed: every case of 180 within 1e-4, some past 1e-5; the bound keeps a margin of 10.
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double SinglePrecision = 1e-3;

    private static readonly IForm Mlstm = FormCatalog.Find("mlstm");
    private static readonly string[] Outputs = ["o", "final_state", "final_normalizer", "final_max"];

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_for_every_variant() => PropertyRuns.Check(Prop.ForAll(MlstmOpenClCase.Arbitrary, c =>
    {
        var (cpu, gpu) = Both(c, fixture.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], SameMathInDouble));
    }), cases: 100);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_of_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(MlstmOpenClCase.Arbitrary, c =>
    {
        var (cpu, gpu) = Both(c, fixture.F32);
        return Outputs.All(name => TestTensors.CloseAtUnitScale(gpu[name], cpu[name], SinglePrecision));
    }), cases: 60);

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(MlstmOpenClCase c, IBackend gpu)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(Mlstm, c.Variant, inputs, parameters), gpu.Run(Mlstm, c.Variant, inputs, parameters));
    }
}
