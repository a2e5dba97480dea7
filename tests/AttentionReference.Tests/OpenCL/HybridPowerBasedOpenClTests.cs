using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

/// <summary>
/// A random power-attention problem for OpenCL: degree 1 to 4 (even when normalised: odd p lets the weight sum
/// vanish), gates none, mild or strong, normalised or not, eps, scale, batch or varlen, an initial state or none, and
/// T, K, V that fill neither a query block (16 rows), a key tile (8 keys) nor a column block (128 values), or pass it.
/// </summary>
public sealed record PowerOpenClCase(string Variant, int Degree, int Gates, bool Normalize, bool WithEps, int B, int T, int H, int K, int V,
    int ChunkSize, bool Varlen, bool WithState, bool WithScale, int Seed)
{
    public static Arbitrary<PowerOpenClCase> Arbitrary(params string[] variants) =>
        (from variant in Gen.Elements(variants)
         from normalize in Gen.Elements(true, false)
         from degree in normalize ? Gen.Elements(2, 4) : Gen.Elements(1, 2, 3, 4)
         from gates in Gen.Choose(0, 2)
         from withEps in Gen.Elements(false, true)
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 40)
         from h in Gen.Choose(1, 2)
         from k in degree <= 2 ? Gen.Elements(1, 2, 3, 5, 17) : Gen.Elements(1, 2, 3, 5) // D = C(K+p−1, p) ≤ 153 keeps a case quick
         from v in Gen.Elements(1, 3, 17, 130)
         from chunk in Gen.Choose(1, 20)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new PowerOpenClCase(variant, degree, gates, normalize, withEps, varlen ? 1 : b, t, h, k, v, chunk, varlen, withState, withScale, seed))
        .ToArbitrary();

    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["k"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
        };
        if (Gates != 0)
        {
            inputs["g"] = Forms.Hybrid.HybridTensors.LogGates(random, strong: Gates == 2, B, T, H);
        }
        int n = B;
        if (Varlen)
        {
            var cuts = Enumerable.Range(0, 3).Select(_ => random.Next(T + 1)).Append(0).Append(T).Order().ToArray();
            inputs["cu_seqlens"] = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I64);
            n = cuts.Length - 1;
        }
        if (WithState)
        {
            // A state as a run over three earlier keys leaves it (z > 0 for even p, so the normaliser stays positive).
            var prefix = new Power().Call("recurrent", new Dictionary<string, Tensor>
            {
                ["q"] = TestTensors.Normal(random, 1, n, 3, H, K), ["k"] = TestTensors.Normal(random, 1, n, 3, H, K),
                ["v"] = TestTensors.Normal(random, 1, n, 3, H, V),
            }, "deg=" + Degree.ToString(CultureInfo.InvariantCulture));
            inputs["initial_state"] = prefix["final_state"];
            inputs["initial_normalizer"] = prefix["final_normalizer"];
        }
        return inputs;
    }

    public FormParameters Parameters()
    {
        var values = new Dictionary<string, string>
        {
            ["deg"] = Degree.ToString(CultureInfo.InvariantCulture),
            ["normalize"] = Normalize ? "true" : "false",
            ["chunk_size"] = ChunkSize.ToString(CultureInfo.InvariantCulture),
        };
        if (WithEps)
        {
            values["eps"] = "0.25";
        }
        if (WithScale)
        {
            values["scale"] = "0.37";
        }
        return new FormParameters(values);
    }
}

/// <summary>
/// A random Based problem for OpenCL: windows from 1 to past T, scale and linear scale, batch or varlen, an initial
/// Taylor state or none, and T, K, V that fill neither a query block, a key tile nor a column block, or pass it.
/// </summary>
public sealed record BasedOpenClCase(string Variant, int Window, int B, int T, int H, int K, int V, int ChunkSize, bool Varlen,
    bool WithState, bool WithScales, int Seed)
{
    public static Arbitrary<BasedOpenClCase> Arbitrary(params string[] variants) =>
        (from variant in Gen.Elements(variants)
         from window in Gen.Elements(1, 2, 5, 17, 64)
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 40)
         from h in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 2, 3, 5, 17)
         from v in Gen.Elements(1, 3, 17, 130)
         from chunk in Gen.Choose(1, 20)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScales in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new BasedOpenClCase(variant, window, varlen ? 1 : b, t, h, k, v, chunk, varlen, withState, withScales, seed)).ToArbitrary();

    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["k"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
        };
        int n = B;
        if (Varlen)
        {
            var cuts = Enumerable.Range(0, 3).Select(_ => random.Next(T + 1)).Append(0).Append(T).Order().ToArray();
            inputs["cu_seqlens"] = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I64);
            n = cuts.Length - 1;
        }
        if (WithState)
        {
            // The linear branch's state as a run over three earlier keys leaves it (z > 0: φ(q)·φ(k) ≥ 1/2).
            var prefix = new AttentionReference.Forms.Linear.Linear().Call("recurrent", new Dictionary<string, Tensor>
            {
                ["q"] = TestTensors.Normal(random, 1, n, 3, H, K), ["k"] = TestTensors.Normal(random, 1, n, 3, H, K),
                ["v"] = TestTensors.Normal(random, 1, n, 3, H, V),
            }, "feature_map=taylor2");
            inputs["initial_state"] = prefix["final_state"];
            inputs["initial_normalizer"] = prefix["final_normalizer"];
        }
        return inputs;
    }

    public FormParameters Parameters()
    {
        var values = new Dictionary<string, string>
        {
            ["window"] = Window.ToString(CultureInfo.InvariantCulture),
            ["chunk_size"] = ChunkSize.ToString(CultureInfo.InvariantCulture),
        };
        if (WithScales)
        {
            values["scale"] = "0.37";
            values["linear_scale"] = "0.5";
            values["eps"] = "0.125";
        }
        return new FormParameters(values);
    }
}

[Collection(OpenClSerial.Name)]
public sealed class HybridPowerBasedOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // power: the kernels evaluate the reference's sums in the reference's order (keys j = i, i−1, …, the log decay
    // summed key by key, the state step by step); only exp and the power (repeated squaring against Math.Pow) round
    // differently, by a few ulps per weight. Far below 1e-12 relative.
    private const double SameMathInDouble = 1e-12;

    // power in f32 against the f64 reference, unit roundoff u = 6e-8: a weight is a K ≤ 5 term dot product raised to
    // p ≤ 4 times exp of a log decay summed over ≤ 40 gates, ≈ (K + p + 40)·u ≈ 3e-6 relative to its size; the sums
    // over ≤ 40 keys, the state's ≤ 40 steps and the D-term read of an initial state add ≈ 40u relative to the sum of
    // |terms|, which random signs cancel by a small factor; a normalised row divides two such sums. 1e-4.
    // Observed: at most 4.3e-6 over 200 cases of both variants; the bound keeps a margin of 20.
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double PowerSinglePrecision = 1e-4;

    // based in f32 against the f64 reference, u = 6e-8: Taylor weights 1 + x + x²/2 ≥ 1/2 from K ≤ 5 term dot
    // products, summed over ≤ 40 keys and divided by their own positive sum, ≈ (K + 40)·u ≈ 3e-6 in the worst case;
    // the window branch is a softmax over ≤ 40 keys (≈ 2e-6, as softmax's f32 bound); the states are ≤ 43 step sums
    // of φ(k) v, ≈ 43u relative to the sum of |terms|. 1e-5.
    // Observed: at most 2.5e-7 over 200 cases of both variants.
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double BasedSinglePrecision = 1e-5;

    // based: the linear branch's weight is 1 + x + x²/2 from one K-term dot product where the reference sums the
    // 1 + K + K² terms of φ(q)·φ(k); both are within a few ulps of the weight, which is ≥ 1/2, so no cancellation
    // amplifies them. The window branch streams its keys with the online softmax, the reference materialises a row:
    // rounding-order differences of a few ulps per term. Far below 1e-12.
    private const double BasedSameMathInDouble = 1e-12;

    private static readonly IForm PowerForm = FormCatalog.Find("power");
    private static readonly IForm BasedForm = FormCatalog.Find("based");
    private static readonly string[] Outputs = ["o", "final_state", "final_normalizer"];

    [Fact]
    public void OpenCL_f64_power_quadratic_equals_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(PowerOpenClCase.Arbitrary("quadratic"), c =>
    {
        var (cpu, gpu) = Both(PowerForm, c.Variant, c.Inputs(), c.Parameters(), fixture.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], SameMathInDouble));
    }), cases: 100);

    [Fact]
    public void OpenCL_f64_power_chunked_equals_the_cpu_reference_for_any_chunk_size() => PropertyRuns.Check(Prop.ForAll(PowerOpenClCase.Arbitrary("chunked"), c =>
    {
        var (cpu, gpu) = Both(PowerForm, c.Variant, c.Inputs(), c.Parameters(), fixture.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], SameMathInDouble));
    }), cases: 100);

    [Fact]
    public void OpenCL_f32_power_is_within_the_f32_bound_of_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(PowerOpenClCase.Arbitrary("quadratic", "chunked"), c =>
    {
        var (cpu, gpu) = Both(PowerForm, c.Variant, c.Inputs(), c.Parameters(), fixture.F32);
        return Outputs.All(name => TestTensors.CloseAtUnitScale(gpu[name], cpu[name], PowerSinglePrecision));
    }), cases: 60);

    [Fact]
    public void Power_recurrent_is_refused_as_unsupported_with_its_reason()
    {
        var c = new PowerOpenClCase("recurrent", 2, 0, true, false, 1, 4, 1, 2, 2, 2, false, false, false, 1);
        var error = Assert.Throws<InputException>(() => fixture.F64.Run(PowerForm, "recurrent", c.Inputs(), c.Parameters()));
        Assert.True(error.Unsupported);
        Assert.Contains("no OpenCL kernel", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Power_bad_input_gets_the_cpu_forms_message()
    {
        var c = new PowerOpenClCase("quadratic", 0, 0, true, false, 1, 4, 1, 2, 2, 2, false, false, false, 1);
        var inputs = c.Inputs();
        var cpu = Assert.Throws<InputException>(() => CpuBackend.Instance.Run(PowerForm, "quadratic", inputs, c.Parameters()));
        var gpu = Assert.Throws<InputException>(() => fixture.F64.Run(PowerForm, "quadratic", inputs, c.Parameters()));
        Assert.Equal(cpu.Message, gpu.Message);
    }

    [Fact]
    public void OpenCL_f64_based_equals_the_cpu_reference_in_parallel_and_chunked_form() => PropertyRuns.Check(Prop.ForAll(BasedOpenClCase.Arbitrary("parallel", "chunked"), c =>
    {
        var (cpu, gpu) = Both(BasedForm, c.Variant, c.Inputs(), c.Parameters(), fixture.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], BasedSameMathInDouble));
    }), cases: 100);

    [Fact]
    public void OpenCL_f32_based_is_within_the_f32_bound_of_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(BasedOpenClCase.Arbitrary("parallel", "chunked"), c =>
    {
        var (cpu, gpu) = Both(BasedForm, c.Variant, c.Inputs(), c.Parameters(), fixture.F32);
        return Outputs.All(name => TestTensors.CloseAtUnitScale(gpu[name], cpu[name], BasedSinglePrecision));
    }), cases: 60);

    [Fact]
    public void Based_recurrent_is_refused_as_unsupported_with_its_reason()
    {
        var c = new BasedOpenClCase("recurrent", 2, 1, 4, 1, 2, 2, 2, false, false, false, 1);
        var error = Assert.Throws<InputException>(() => fixture.F64.Run(BasedForm, "recurrent", c.Inputs(), c.Parameters()));
        Assert.True(error.Unsupported);
        Assert.Contains("no OpenCL kernel", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Based_bad_input_gets_the_cpu_forms_message()
    {
        var c = new BasedOpenClCase("parallel", 0, 1, 4, 1, 2, 2, 2, false, false, false, 1);
        var inputs = c.Inputs();
        var cpu = Assert.Throws<InputException>(() => CpuBackend.Instance.Run(BasedForm, "parallel", inputs, c.Parameters()));
        var gpu = Assert.Throws<InputException>(() => fixture.F64.Run(BasedForm, "parallel", inputs, c.Parameters()));
        Assert.Equal(cpu.Message, gpu.Message);
    }

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(IForm form, string variant,
        Dictionary<string, Tensor> inputs, FormParameters parameters, IBackend gpu) =>
        (CpuBackend.Instance.Run(form, variant, inputs, parameters), gpu.Run(form, variant, inputs, parameters));
}
