using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random call of a form of the diagonal-decay engine (gla with and without gv, simple_gla, retention, hgrn2): the
/// variant; shapes that do not fill a group (odd K and V up to 19 against the CPU accelerator's 16 threads, T up to 40
/// and 0); a gate regime down to −20 per step; a chunk size that often does not divide T; batch or varlen; an initial
/// state or none; a scale or the default.
/// </summary>
public sealed record DecayGpuCase(string Form, string Variant, int B, int T, int H, int K, int V, GateRegime Regime,
    int ChunkSize, bool Varlen, bool WithState, bool WithScale, int Seed)
{
    public static Arbitrary<DecayGpuCase> Arbitrary { get; } =
        (from form in Gen.Elements("gla", "gla_gv", "simple_gla", "retention", "hgrn2")
         from variant in Gen.Elements("recurrent", "chunked", "parallel")
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 40)
         from h in Gen.Choose(1, 3)
         from k in Gen.Elements(1, 3, 8, 19)
         from v in Gen.Elements(1, 2, 5, 17)
         from regime in Gen.Elements(GateRegime.Mild, GateRegime.Strong, GateRegime.Mixed)
         from chunk in Gen.Choose(1, 45)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new DecayGpuCase(form, variant, varlen ? 1 : b, t, h, k, v, regime, chunk, varlen, withState, withScale, seed)).ToArbitrary();

    public IForm FormUnderTest => FormCatalog.Find(Form == "gla_gv" ? "gla" : Form);

    /// <summary>The form's inputs by their canonical names.</summary>
    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        var gates = new StatefulCase(B, T, H, K, V, Regime, Variant, ChunkSize, 0, WithState, Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
        };
        if (Form != "hgrn2")
        {
            inputs["k"] = TestTensors.Normal(random, 1, B, T, H, K);
        }
        switch (Form)
        {
            case "simple_gla":
                inputs["g"] = gates.Gates(random, B, T, H);
                break;
            case "retention":
                inputs["gamma"] = new Tensor([H], Enumerable.Range(0, H)
                    .Select(_ => Regime == GateRegime.Mild ? 1 - random.NextDouble() / 4 : Math.Exp(-20 * random.NextDouble())).ToArray());
                break;
            default:
                inputs["gk"] = gates.Gates(random, B, T, H, K);
                if (Form == "gla_gv")
                {
                    inputs["gv"] = gates.Gates(random, B, T, H, V);
                }
                break;
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
            inputs["initial_state"] = TestTensors.Normal(random, 1, n, H, K, V);
        }
        return inputs;
    }

    public FormParameters Parameters()
    {
        var values = new Dictionary<string, string> { ["chunk_size"] = ChunkSize.ToString(CultureInfo.InvariantCulture) };
        if (WithScale)
        {
            values["scale"] = "0.37";
        }
        return new FormParameters(values);
    }
}

/// <summary>
/// The GPU version of gla, simple_gla, retention and hgrn2 (every variant) equals the CPU reference: written once, run
/// once per accelerator by the classes below.
/// </summary>
public abstract class GatedLinearGpuLaws(AcceleratorFixture accelerator)
{
    // The kernels evaluate the reference's expressions in the reference's order (the same exponent differences, the
    // same running sums); what differs is the device's exp (.NET's on the CPU accelerator; ILGPU's on CUDA) and FMA
    // contraction: a few ulps per term over ≤ 40 steps of ≤ 19-term sums of factors ≤ 1, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32 kernels against the f64 reference: unit roundoff u = 6e-8. Each output is a sum over ≤ 40 steps of ≤ 19-term
    // products, each factor carrying a few u (exp included), and the state carries the rounding of every step before:
    // ≈ (T + K)·u ≈ 4e-6 relative to the sum of |terms|; random signs cancel that sum down to the output's norm by up
    // to ~10 in these shapes, hence 1e-4, held at unit scale (TestTensors.CloseAtUnitScale: an output that cancels to
    // far below its terms is compared at the scale of its terms).
    private const double SinglePrecision = 1e-4;

    [AcceleratorLaw(100)]
    public bool Gpu_f64_equals_the_cpu_reference_for_every_form_and_variant(DecayGpuCase c)
    {
        var (cpu, gpu) = Both(c, accelerator.F64);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["final_state"], cpu["final_state"], SameMathInDouble);
    }

    [AcceleratorLaw(60)]
    public bool Gpu_f32_is_within_the_f32_bound_of_the_cpu_reference(DecayGpuCase c)
    {
        var (cpu, gpu) = Both(c, accelerator.F32);
        return TestTensors.CloseAtUnitScale(gpu["o"], cpu["o"], SinglePrecision)
            && TestTensors.CloseAtUnitScale(gpu["final_state"], cpu["final_state"], SinglePrecision);
    }

    [AcceleratorLaw(10)]
    public bool Strong_decay_over_a_whole_sequence_stays_exact(bool parallel, int seed)
    {
        // 40 steps of −20 sum to −800 inside one chunk: the factorised exp(Γ_t)·exp(−Γ_j) would overflow; the differences do not.
        var c = new DecayGpuCase("gla_gv", parallel ? "parallel" : "chunked", 1, 40, 2, 5, 3, GateRegime.Strong, 40, false, true, false, seed);
        var (cpu, gpu) = Both(c, accelerator.F64);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["final_state"], cpu["final_state"], SameMathInDouble);
    }

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(DecayGpuCase c, GpuBackend gpu)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(c.FormUnderTest, c.Variant, inputs, parameters), gpu.Run(c.FormUnderTest, c.Variant, inputs, parameters));
    }
}

[Accelerator("cpu")]
public sealed class GatedLinearCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : GatedLinearGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class GatedLinearCudaTests(CudaFixture accelerator) : GatedLinearGpuLaws(accelerator), IClassFixture<CudaFixture>;
