using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random linear-attention call for the GPU: the variant, every feature map, causal or not, normalised or not; shapes
/// that do not fill a group (K and performer's M up to 19 against the CPU accelerator's 16 threads, so taylor2's F = 1 +
/// K + K² reaches 381; V up to 17; T up to 30 and 0); a chunk size that often does not divide T; batch or varlen; an
/// initial state and normaliser or none; a scale or the default.
/// </summary>
public sealed record LinearGpuCase(string Variant, string FeatureMap, bool Causal, bool Normalize, int B, int T, int H, int K, int V,
    int M, int ChunkSize, bool Varlen, bool WithState, bool WithScale, int Seed)
{
    public static Arbitrary<LinearGpuCase> Arbitrary { get; } =
        (from variant in Gen.Elements("recurrent", "chunked", "parallel")
         from map in Gen.Elements("identity", "elu1", "relu", "taylor2", "performer")
         from causal in Gen.Elements(true, true, false)
         from normalize in Gen.Elements(false, true)
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 30)
         from h in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 3, 8, 19)
         from v in Gen.Elements(1, 2, 5, 17)
         from m in Gen.Elements(1, 6, 19)
         from chunk in Gen.Choose(1, 35)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new LinearGpuCase(variant, map, causal, normalize, varlen ? 1 : b, t, h, k, v, m, chunk, varlen, withState, withScale, seed)).ToArbitrary();

    public static IForm Form { get; } = FormCatalog.Find("linear");

    /// <summary>The feature dimension F.</summary>
    public int F => FeatureMap switch { "taylor2" => 1 + K + K * K, "performer" => M, _ => K };

    /// <summary>
    /// Normalising divides by φ(q)·z, which only positive maps keep away from zero; identity and relu are held
    /// unnormalised (the same draw covers them).
    /// </summary>
    public bool IsWellPosed => !Normalize || FeatureMap is "elu1" or "performer" or "taylor2";

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
            inputs["initial_state"] = TestTensors.Normal(random, 1, n, H, F, V);
            // A positive normaliser, as a running sum of positive features is (the normalised output divides by it).
            inputs["initial_normalizer"] = new Tensor([n, H, F], TestTensors.Normal(random, 1, n, H, F).Data.Select(x => 5 + Math.Abs(x)).ToArray());
        }
        return inputs;
    }

    public FormParameters Parameters()
    {
        var values = new Dictionary<string, string>
        {
            ["chunk_size"] = ChunkSize.ToString(CultureInfo.InvariantCulture),
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
}

/// <summary>
/// The GPU version of linear (every variant, feature map and option) equals the CPU reference: written once, run once
/// per accelerator by the classes below.
/// </summary>
public abstract class LinearGpuLaws(AcceleratorFixture accelerator)
{
    // The kernels evaluate the reference's expressions (the features, taylor2's 1 + s + s²/2, the finish) on the same
    // inputs; the sums run in the reference's order up to its SIMD blocking, and the device's exp and FMA contraction
    // differ by an ulp or two: a few ulps per term over ≤ 30 steps of ≤ 381-term sums, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32 against the f64 reference: u = 6e-8, the features computed in f32 (exp included), sums of ≤ 30 steps of dot
    // products over F features: ≈ (T + F)·u relative to the sum of |terms| (≤ 3e-6 for F ≤ 21; taylor2's F = 381 is
    // 1 + K + K² features of which only K² are products, each ≤ u off), which random signs cancel by up to ~10 here;
    // the normalised output divides two such sums. 1e-4, held at unit scale (TestTensors.CloseAtUnitScale).
    // Observed on the CPU accelerator: 1.5e-6 at most over 300 cases.
    private const double SinglePrecision = 1e-4;

    private static readonly string[] Outputs = ["o", "final_state", "final_normalizer"];

    [AcceleratorLaw(100)]
    public bool Gpu_f64_equals_the_cpu_reference_for_every_feature_map_and_variant(LinearGpuCase c)
    {
        if (!c.IsWellPosed)
        {
            return true; // φ(q)·z near zero (identity, relu) turns an ulp of contraction into any relative error
        }
        var (cpu, gpu) = Both(c, accelerator.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], SameMathInDouble));
    }

    [AcceleratorLaw(60)]
    public bool Gpu_f32_is_within_the_f32_bound_of_the_cpu_reference(LinearGpuCase c)
    {
        if (!c.IsWellPosed)
        {
            return true; // a normaliser near zero amplifies f32 rounding without bound; f64 covers these cases
        }
        var (cpu, gpu) = Both(c, accelerator.F32);
        return Outputs.All(name => TestTensors.CloseAtUnitScale(gpu[name], cpu[name], SinglePrecision));
    }

    [AcceleratorLaw(10)]
    public bool Taylor2_and_performer_at_a_wide_key_equal_the_cpu_reference(bool taylor2, bool causal, int seed)
    {
        // K = 19: taylor2's 381 features and its scores by 1 + s + s²/2; performer's 19 features of 19-term projections.
        var c = new LinearGpuCase("parallel", taylor2 ? "taylor2" : "performer", causal, true, 1, 21, 2, 19, 17, 19, 8, false, true, false, seed);
        var (cpu, gpu) = Both(c, accelerator.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], SameMathInDouble));
    }

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(LinearGpuCase c, GpuBackend gpu)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(LinearGpuCase.Form, c.Variant, inputs, parameters), gpu.Run(LinearGpuCase.Form, c.Variant, inputs, parameters));
    }
}

[Accelerator("cpu")]
public sealed class LinearCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : LinearGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class LinearCudaTests(CudaFixture accelerator) : LinearGpuLaws(accelerator), IClassFixture<CudaFixture>;
