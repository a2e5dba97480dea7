using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Hybrid;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random power-attention call for the GPU: the variant, degree 1 to 4 (even when normalised: odd p lets the weight
/// sum vanish), gates none, mild or strong (−20 to −10 per step), normalised or not, eps, scale, batch or varlen, an
/// initial state and normaliser or none; shapes that do not fill a group (T up to 30 and 0, K up to 17 at p ≤ 2 so
/// that D = C(K+p−1, p) reaches 153, V up to 17 against the CPU accelerator's 16 threads), chunk sizes that often do
/// not divide T.
/// </summary>
public sealed record PowerGpuCase(string Variant, int Degree, int Gates, bool Normalize, bool WithEps, int B, int T, int H, int K, int V,
    int ChunkSize, bool Varlen, bool WithState, bool WithScale, int Seed)
{
    public static Arbitrary<PowerGpuCase> Arbitrary { get; } =
        (from variant in Gen.Elements("quadratic", "recurrent", "chunked")
         from normalize in Gen.Elements(true, false)
         from degree in normalize ? Gen.Elements(2, 4) : Gen.Elements(1, 2, 3, 4)
         from gates in Gen.Choose(0, 2)
         from withEps in Gen.Elements(false, true)
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 30)
         from h in Gen.Choose(1, 2)
         from k in degree <= 2 ? Gen.Elements(1, 3, 5, 17) : Gen.Elements(1, 2, 3, 5) // D ≤ 153 keeps a case quick
         from v in Gen.Elements(1, 2, 5, 17)
         from chunk in Gen.Choose(1, 35)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new PowerGpuCase(variant, degree, gates, normalize, withEps, varlen ? 1 : b, t, h, k, v, chunk, varlen, withState, withScale, seed))
        .ToArbitrary();

    public static IForm Form { get; } = FormCatalog.Find("power");

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
            inputs["g"] = HybridTensors.LogGates(random, strong: Gates == 2, B, T, H);
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
            var prefix = Form.Call("recurrent", new Dictionary<string, Tensor>
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
/// A random Based call for the GPU: the variant, windows from 1 to past T, scale, linear scale and eps, batch or varlen,
/// an initial Taylor state or none; T up to 30 and 0, K up to 17 (F = 1 + K + K² up to 307), V up to 17, chunk sizes that
/// often do not divide T.
/// </summary>
public sealed record BasedGpuCase(string Variant, int Window, int B, int T, int H, int K, int V, int ChunkSize, bool Varlen,
    bool WithState, bool WithScales, int Seed)
{
    public static Arbitrary<BasedGpuCase> Arbitrary { get; } =
        (from variant in Gen.Elements("recurrent", "parallel", "chunked")
         from window in Gen.Elements(1, 2, 5, 17, 64)
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 30)
         from h in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 2, 5, 17)
         from v in Gen.Elements(1, 3, 17)
         from chunk in Gen.Choose(1, 35)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScales in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new BasedGpuCase(variant, window, varlen ? 1 : b, t, h, k, v, chunk, varlen, withState, withScales, seed)).ToArbitrary();

    public static IForm Form { get; } = FormCatalog.Find("based");

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
            var prefix = FormCatalog.Find("linear").Call("recurrent", new Dictionary<string, Tensor>
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

/// <summary>A random nats_l call for the GPU: a <see cref="NatsCase"/> in one of the two variants.</summary>
public sealed record NatsGpuCase(string Variant, NatsCase Case)
{
    /// <summary>
    /// NatsCase's routes (all Gated DeltaNet, all softmax, mixed), decay on and off, gates down to −20 and states, widened
    /// to shapes that do not fill a group: T up to 30, K up to 19, V up to 17, chunk sizes that do not divide T and ones
    /// longer than T.
    /// </summary>
    public static Arbitrary<NatsGpuCase> Arbitrary { get; } =
        (from variant in Gen.Elements("recurrent", "chunked")
         from c in NatsCase.Arbitrary.Generator
         from t in Gen.Choose(1, 30)
         from k in Gen.Elements(1, 3, 19)
         from v in Gen.Elements(1, 2, 17)
         from chunk in Gen.Choose(1, 35)
         select new NatsGpuCase(variant, c with { T = t, K = k, V = v, ChunkSize = chunk })).ToArbitrary();

    public static IForm Form { get; } = FormCatalog.Find("nats_l");

    public Dictionary<string, Tensor> Inputs() => Case.Inputs(new Random(Case.Seed));

    /// <summary>The case's chunk size and decay switch, and a scale for a third of the seeds.</summary>
    public FormParameters Parameters()
    {
        var values = Case.Parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        if (Case.Seed % 3 == 0)
        {
            values["scale"] = "0.7";
        }
        return new FormParameters(values);
    }
}

/// <summary>What the hybrid family's GPU laws share: the f64 tolerance, the outputs compared, and a call run on the CPU reference and on a GPU backend.</summary>
internal static class HybridGpu
{
    // f64: the kernels evaluate the CPU forms' expressions on the same inputs (the reasons, form by form, in the law
    // classes); what differs is the summation order of the CPU's blocked products, the device's exp and FMA contraction:
    // a few ulps per term, far below 1e-12.
    public const double SameMathInDouble = 1e-12;

    public static readonly string[] PowerOutputs = ["o", "final_state", "final_normalizer"], NatsOutputs = ["o_linear", "o_softmax", "final_state"];

    /// <summary>Every output in <paramref name="outputs"/> of the GPU's run within <paramref name="tolerance"/> of the CPU's (at unit scale in f32).</summary>
    public static bool Agree(IForm form, string variant, Dictionary<string, Tensor> inputs, FormParameters parameters, string[] outputs,
        GpuBackend gpu, double tolerance)
    {
        var cpu = CpuBackend.Instance.Run(form, variant, inputs, parameters);
        var onGpu = gpu.Run(form, variant, inputs, parameters);
        return outputs.All(name => gpu.Precision == Precision.F64
            ? TestTensors.Close(onGpu[name], cpu[name], tolerance)
            : TestTensors.CloseAtUnitScale(onGpu[name], cpu[name], tolerance));
    }
}

/// <summary>
/// The GPU version of the hybrid family as a whole: empty extents, refusals and the family's goldens (the forms' own laws:
/// HybridPowerGpuLaws.cs, HybridBasedGpuLaws.cs, HybridNatsLGpuLaws.cs); written once, run once per accelerator by the
/// classes below.
/// </summary>
public abstract class HybridGpuLaws(AcceleratorFixture accelerator)
{
    /// <summary>
    /// Empty extents (T = 0, V = 0, K = 0) give the CPU's outputs, NaN for NaN (K = 0 makes the default scale K^-0.5
    /// infinite), the rest within 1e-12 (V = 0 still steps power's and based's normaliser): no kernel reads a row or state
    /// that an empty extent leaves without elements.
    /// </summary>
    [AcceleratorLaw(1)]
    public bool Empty_extents_give_the_cpus_outputs()
    {
        foreach (var (t, k, v) in new[] { (0, 2, 3), (4, 2, 0), (4, 0, 3) })
        {
            foreach (string variant in PowerGpuCase.Form.Variants)
            {
                var c = new PowerGpuCase(variant, 2, 1, false, false, 1, t, 2, k, v, 3, false, true, false, 5);
                AssertSame(PowerGpuCase.Form, variant, c.Inputs(), c.Parameters());
            }
            foreach (string variant in BasedGpuCase.Form.Variants)
            {
                // A given scale at K = 0: the CPU's parallel and chunked variants pass K^-0.5 = ∞ on to softmax's contract,
                // which refuses a scale that is not finite (its recurrent variant and the GPU's run with it).
                var c = new BasedGpuCase(variant, 2, 1, t, 2, k, v, 3, false, true, WithScales: k == 0, 5);
                AssertSame(BasedGpuCase.Form, variant, c.Inputs(), c.Parameters());
            }
            foreach (string variant in NatsGpuCase.Form.Variants)
            {
                // Seed 6 gives a scale (NatsGpuCase.Parameters): with K^-0.5 = ∞ at K = 0 the CPU's recurrent o_linear is a sum
                // of no terms (s · q_a) S_a, 0, where gated_delta_rule's form, which its chunked variant and the GPU run, is ∞ · 0.
                var c = new NatsGpuCase(variant, new NatsCase(1, t, 2, k, v, 3, 2, true, true, false, 6));
                AssertSame(NatsGpuCase.Form, variant, c.Inputs(), c.Parameters());
            }
        }
        return true;
    }

    /// <summary>
    /// Zero-element tensors with a time axis of 2³¹ − 1 give empty outputs of the bound shapes at once, in every variant:
    /// nothing is allocated per step or launched per routing chunk (nats_l: 2²⁵ chunks of 64 steps). No batch entries: a
    /// shape that reaches 2³¹ − 1 before its zero extent is more than a tensor holds.
    /// </summary>
    [AcceleratorLaw(1)]
    public bool Zero_element_tensors_with_a_huge_time_axis_give_empty_outputs()
    {
        const int T = int.MaxValue;
        var qkv = new Dictionary<string, Tensor> { ["q"] = Tensor.Zeros(0, T, 1, 2), ["k"] = Tensor.Zeros(0, T, 1, 2), ["v"] = Tensor.Zeros(0, T, 1, 3) };
        var nats = new Dictionary<string, Tensor>
        {
            ["q"] = qkv["q"], ["k"] = qkv["k"], ["v"] = qkv["v"], ["g"] = Tensor.Zeros(0, T, 1), ["beta"] = Tensor.Zeros(0, T, 1), ["route"] = Tensor.Zeros(0, 1 << 25, 1),
        };
        var chunk = new FormParameters(new Dictionary<string, string> { ["chunk_size"] = "64" });
        foreach (var (form, inputs, shapes) in new (IForm, Dictionary<string, Tensor>, int[][])[]
        {
            (PowerGpuCase.Form, qkv, [[0, T, 1, 3], [0, 1, 3, 3], [0, 1, 3]]),   // D = C(2 + 1, 2) = 3
            (BasedGpuCase.Form, qkv, [[0, T, 1, 3], [0, 1, 7, 3], [0, 1, 7]]),   // F = 1 + 2 + 4 = 7
            (NatsGpuCase.Form, nats, [[0, T, 1, 3], [0, T, 1, 3], [0, 1, 2, 3]]),
        })
        {
            foreach (string variant in form.Variants)
            {
                var outputs = accelerator.F64.Run(form, variant, inputs, chunk);
                Assert.Equal(shapes, outputs.Values.Select(o => o.Shape.ToArray()));
            }
        }
        return true;
    }

    /// <summary>Every golden case of the family verifies on the GPU backend (the other forms' are skipped here).</summary>
    [AcceleratorLaw(1)]
    public bool Every_golden_case_of_the_family_verifies_on_the_gpu()
    {
        string[] family = ["power", "nats_l", "based"];
        bool IsFamily(GoldenResult r) => family.Any(form => r.Id.StartsWith(form + "/", StringComparison.Ordinal)) && !r.IsGradient; // gradient goldens: CPU only
        var results = GoldenStore.Verify(RepoPaths.Of("golden"), new FormsOnGpu(accelerator.F64, family));
        var ours = results.Where(IsFamily).ToList();
        Assert.Equal(16, ours.Count);
        Assert.All(ours, r => Assert.True(r.Passed, $"{r.Id}: {r.Problem ?? r.Skipped ?? string.Join("; ", r.Comparisons.Where(x => !x.Passed))}"));
        Assert.All(results.Where(r => !IsFamily(r)), r => Assert.NotNull(r.Skipped));
        return true;
    }

    /// <summary>
    /// What the CPU form refuses is refused with its message (the contract's and the options' checks, bound once for
    /// both): deg = 0, a window of 0, a route entry other than 0 or 1, a route with the wrong number of chunks.
    /// </summary>
    [AcceleratorLaw(1)]
    public bool What_the_cpu_form_refuses_is_refused_with_the_same_message()
    {
        var power = new PowerGpuCase("quadratic", 0, 0, true, false, 1, 4, 1, 2, 2, 2, false, false, false, 1);
        AssertSameRefusal(PowerGpuCase.Form, "quadratic", power.Inputs(), power.Parameters());
        var based = new BasedGpuCase("recurrent", 0, 1, 4, 1, 2, 2, 2, false, false, false, 1);
        AssertSameRefusal(BasedGpuCase.Form, "recurrent", based.Inputs(), based.Parameters());
        var nats = new NatsGpuCase("chunked", new NatsCase(1, 5, 1, 2, 2, 2, 2, false, true, false, 7));
        var inputs = nats.Inputs();
        inputs["route"] = new Tensor([1, 3, 1], [0, 2, 1]);
        AssertSameRefusal(NatsGpuCase.Form, "chunked", inputs, nats.Parameters());
        inputs["route"] = Tensor.Zeros(1, 2, 1); // ⌈5/2⌉ = 3 chunks
        AssertSameRefusal(NatsGpuCase.Form, "recurrent", inputs, nats.Parameters());
        return true;
    }

    private void AssertSame(IForm form, string variant, Dictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var cpu = CpuBackend.Instance.Run(form, variant, inputs, parameters);
        var gpu = accelerator.F64.Run(form, variant, inputs, parameters);
        Assert.All(cpu, output => Assert.True(output.Value.Data.SequenceEqual(gpu[output.Key].Data)
            || TestTensors.Close(gpu[output.Key], output.Value, HybridGpu.SameMathInDouble), $"{form.Name} {variant}: {output.Key}"));
    }

    private void AssertSameRefusal(IForm form, string variant, Dictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var onCpu = Assert.Throws<InputException>(() => CpuBackend.Instance.Run(form, variant, inputs, parameters));
        var onGpu = Assert.Throws<InputException>(() => accelerator.F64.Run(form, variant, inputs, parameters));
        Assert.Equal(onCpu.Message, onGpu.Message);
    }
}

[Accelerator("cpu")]
public sealed class HybridCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : HybridGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class HybridCudaTests(CudaFixture accelerator) : HybridGpuLaws(accelerator), IClassFixture<CudaFixture>;
