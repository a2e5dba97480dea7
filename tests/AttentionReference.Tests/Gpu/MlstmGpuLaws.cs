using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.GatedLinear;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random mLSTM call for the GPU: the CPU laws' <see cref="MlstmCase"/> (log forget gates down to −20, sigmoid or
/// exponential forget gate, eps 0 or 1e-6, an initial (C̃, ñ, m) or none) with a variant; shapes that do not fill a
/// group (K up to 19 against the CPU accelerator's 16 threads, V up to 17, T up to 40 and 0); a chunk size that often
/// does not divide T; batch or varlen; a scale or the default.
/// </summary>
public sealed record MlstmGpuCase(MlstmCase Case, string Variant, bool Varlen, bool WithScale)
{
    public static Arbitrary<MlstmGpuCase> Arbitrary { get; } =
        (from c in MlstmCase.Arbitrary.Generator
         from t in Gen.Choose(0, 40)
         from k in Gen.Elements(1, 3, 8, 19)
         from v in Gen.Elements(1, 5, 17)
         from chunk in Gen.Choose(1, 45)
         from variant in Gen.Elements("recurrent", "chunked", "parallel")
         from varlen in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         select new MlstmGpuCase(c with { B = varlen ? 1 : c.B, T = t, K = k, V = v, ChunkSize = chunk }, variant, varlen, withScale)).ToArbitrary();

    public static IForm Form { get; } = FormCatalog.Find("mlstm");

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
            ["chunk_size"] = Case.ChunkSize.ToString(CultureInfo.InvariantCulture),
            ["eps"] = Case.Eps.ToString("R", CultureInfo.InvariantCulture),
            ["forget_gate"] = Case.ExpGate ? "exp" : "sigmoid",
        };
        if (WithScale)
        {
            values["scale"] = "0.37";
        }
        return new FormParameters(values);
    }
}

/// <summary>
/// The GPU version of mlstm (recurrent, chunked and parallel) equals the CPU reference: written once, run once per
/// accelerator by the classes below.
/// </summary>
public abstract class MlstmGpuLaws(AcceleratorFixture accelerator)
{
    // The kernels evaluate the reference's terms in its order (the same stabiliser, the same exponent differences; the
    // host reduces f to log f by the CPU form's own logsigmoid); the device's exp and FMA contraction differ by a few
    // ulps per term over ≤ 40 steps: below 1e-12 (MlstmCase's input gates stay in [−4, 4], where o is well conditioned).
    private const double SameMathInDouble = 1e-12;

    // f32: u = 6e-8; ≤ 40 steps of ≤ 19-term products, each rescaled by exp once per step; the division by the
    // normaliser max(|qᵀñ|, exp(−m)), whose terms reach e^4·|q·k| and may cancel down to the clamp, amplifies the
    // relative rounding of the sums by up to e^4 ≈ 55: ≈ 55·(T + K)·u ≈ 2e-4 at worst; 1e-3, held at unit scale.
    // Observed on the CPU accelerator: 3.2e-5 at most over 300 cases (f64: 7e-15).
    private const double SinglePrecision = 1e-3;

    private static readonly string[] Outputs = ["o", "final_state", "final_normalizer", "final_max"];

    [AcceleratorLaw(100)]
    public bool Gpu_f64_equals_the_cpu_reference_for_every_variant(MlstmGpuCase c)
    {
        var (cpu, gpu) = Both(c, accelerator.F64);
        return Outputs.All(name => TestTensors.Close(gpu[name], cpu[name], SameMathInDouble));
    }

    [AcceleratorLaw(60)]
    public bool Gpu_f32_is_within_the_f32_bound_of_the_cpu_reference(MlstmGpuCase c)
    {
        var (cpu, gpu) = Both(c, accelerator.F32);
        return Outputs.All(name => TestTensors.CloseAtUnitScale(gpu[name], cpu[name], SinglePrecision));
    }

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(MlstmGpuCase c, GpuBackend gpu)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(MlstmGpuCase.Form, c.Variant, inputs, parameters), gpu.Run(MlstmGpuCase.Form, c.Variant, inputs, parameters));
    }
}

[Accelerator("cpu")]
public sealed class MlstmCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : MlstmGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class MlstmCudaTests(CudaFixture accelerator) : MlstmGpuLaws(accelerator), IClassFixture<CudaFixture>;

/// <summary>Every golden case of mlstm verifies on the GPU backend (CPU accelerator, f64).</summary>
public sealed class MlstmGoldenGpuTests(CpuAcceleratorFixture accelerator) : IClassFixture<CpuAcceleratorFixture>
{
    [Fact]
    public void Every_mlstm_golden_verifies_on_the_gpu_backend() => FormsOnGpu.AssertGoldensVerify(accelerator.F64, "mlstm");
}
