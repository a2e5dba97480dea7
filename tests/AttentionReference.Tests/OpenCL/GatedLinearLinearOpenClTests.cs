using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

/// <summary>
/// A random linear-attention problem for OpenCL: every feature map, causal or not, normalised or not, any variant
/// and chunk size (often not dividing T), batch or varlen, initial state and normaliser or none, head dims that do
/// not fill a work-group.
/// </summary>
public sealed record LinearOpenClCase(string Variant, string FeatureMap, bool Causal, bool Normalize, int B, int T, int H, int K, int V,
    int M, int ChunkSize, bool Varlen, bool WithState, bool WithScale, int Seed)
{
    public static Arbitrary<LinearOpenClCase> Arbitrary { get; } =
        (from variant in Gen.Elements("recurrent", "chunked", "parallel")
         from map in Gen.Elements("identity", "elu1", "relu", "taylor2", "performer")
         from causal in Gen.Elements(true, true, false)
         from normalize in Gen.Elements(false, true)
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 30)
         from h in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 3, 4)
         from v in Gen.Elements(1, 2, 5, 17)
         from m in Gen.Elements(1, 6)
         from chunk in Gen.Choose(1, 35)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new LinearOpenClCase(variant, map, causal, normalize, varlen ? 1 : b, t, h, k, v, m, chunk, varlen, withState, withScale, seed)).ToArbitrary();

    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["k"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
        };
        if (FeatureMap == "performer")
        {
            inputs["proj"] = TestTensors.Normal(random, 1, M, K);
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
            int f = FeatureMap switch { "taylor2" => 1 + K + K * K, "performer" => M, _ => K };
            inputs["initial_state"] = TestTensors.Normal(random, 1, n, H, f, V);
            // A positive normaliser, as a running sum of positive features is (the normalised output divides by it).
            inputs["initial_normalizer"] = new Tensor([n, H, f], TestTensors.Normal(random, 1, n, H, f).Data.Select(x => 5 + Math.Abs(x)).ToArray());
        }
        return inputs;
    }

    public FormParameters Parameters()
    {
        var values = new Dictionary<string, string>
        {
            ["chunk_size"] = ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["feature_map"] = FeatureMap,
            ["causal"] = Causal ? "true" : "false",
            ["normalize"] = Normalize ? "true" : "false",
        };
        if (WithScale)
        {
            values["scale"] = "0.37";
        }
        return new FormParameters(values);
    }

    /// <summary>Normalising divides by φ(q)·z, which only positive maps keep away from zero (ill-posed cases: the
    /// unnormalised ones of the same draw cover identity and relu).</summary>
    public bool IsWellPosed => !Normalize || FeatureMap is "elu1" or "performer" or "taylor2";
}

[Collection(OpenClSerial.Name)]
public sealed class GatedLinearLinearOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // The kernels evaluate the reference's sums in the reference's order on the same host-computed features; only
    // FMA contraction and rounding of the division differ: a few ulps per term over ≤ 30 steps of ≤ 21-term sums.
    private const double SameMathInDouble = 1e-12;

    // f32 against the f64 reference: features rounded to f32 (u = 6e-8), sums of ≤ 30 steps of ≤ 21-term dot
    // products: ≈ (T + F)·u ≈ 3e-6 relative to the sum of |terms|, which random signs cancel by up to ~30 here;
    // the normalised output divides two such sums. 1e-4.
    // Observed: every case of 180 within 1e-5, some past 1e-6; the bound keeps a margin of 10.
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double SinglePrecision = 1e-4;

    private static readonly IForm Linear = FormCatalog.Find("linear");
    private static readonly string[] Outputs = ["o", "final_state", "final_normalizer"];

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_for_every_feature_map_and_variant() => PropertyRuns.Check(Prop.ForAll(LinearOpenClCase.Arbitrary, c =>
    {
        if (!c.IsWellPosed)
        {
            return true; // φ(q)·z near zero (identity, relu) turns an ulp of contraction into any relative error
        }
        var (cpu, gpu) = Both(c, fixture.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], SameMathInDouble));
    }), cases: 100);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_of_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(LinearOpenClCase.Arbitrary, c =>
    {
        if (!c.IsWellPosed)
        {
            return true; // a normaliser near zero amplifies f32 rounding without bound; f64 covers these cases
        }
        var (cpu, gpu) = Both(c, fixture.F32);
        return Outputs.All(name => TestTensors.CloseAtUnitScale(gpu[name], cpu[name], SinglePrecision));
    }), cases: 60);

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(LinearOpenClCase c, IBackend gpu)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(Linear, c.Variant, inputs, parameters), gpu.Run(Linear, c.Variant, inputs, parameters));
    }
}
