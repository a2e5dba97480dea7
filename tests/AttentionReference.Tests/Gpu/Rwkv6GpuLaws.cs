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
/// A random rwkv6 call for the GPU: the variant; shapes that do not fill a group (K up to 19 against the CPU
/// accelerator's 16 threads and the parallel kernel's tile of keys, V up to 17, T up to 40 and 0); log decays down to
/// −20 per step; a chunk size that often does not divide T; batch or varlen; an initial state or none; a scale or the
/// default.
/// </summary>
public sealed record Rwkv6GpuCase(string Variant, int B, int T, int H, int K, int V, GateRegime Regime, int ChunkSize,
    bool Varlen, bool WithState, bool WithScale, int Seed)
{
    public static Arbitrary<Rwkv6GpuCase> Arbitrary { get; } =
        (from variant in Gen.Elements("recurrent", "chunked", "parallel")
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
         select new Rwkv6GpuCase(variant, varlen ? 1 : b, t, h, k, v, regime, chunk, varlen, withState, withScale, seed)).ToArbitrary();

    public static IForm Form { get; } = FormCatalog.Find("rwkv6");

    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        var gates = new StatefulCase(B, T, H, K, V, Regime, Variant, ChunkSize, 0, WithState, Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["k"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
            ["w"] = gates.Gates(random, B, T, H, K),
            ["u"] = TestTensors.Normal(random, 1, H, K),
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
/// The GPU version of rwkv6 (recurrent, chunked and parallel) equals the CPU reference: written once, run once per
/// accelerator by the classes below.
/// </summary>
public abstract class Rwkv6GpuLaws(AcceleratorFixture accelerator)
{
    // The kernels evaluate the reference's terms in its order (the same exponent differences inside a chunk, the same
    // backward log-decay sums of the parallel form); the device's exp and FMA contraction differ by a few ulps per term
    // over ≤ 40 steps of ≤ 19-term sums, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32: u = 6e-8; ≤ 40 steps of ≤ 19-term products plus the bonus, ≈ (T + K)·u ≈ 4e-6 relative to the sum of
    // |terms|, cancelled by random signs by up to ~10 in these shapes: 1e-4, held at unit scale (CloseAtUnitScale).
    // Observed on the CPU accelerator: 6.9e-6 at most over 300 cases (and f64 identical to the reference there).
    private const double SinglePrecision = 1e-4;

    [AcceleratorLaw(100)]
    public bool Gpu_f64_equals_the_cpu_reference_for_every_variant(Rwkv6GpuCase c)
    {
        var (cpu, gpu) = Both(c, accelerator.F64);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["final_state"], cpu["final_state"], SameMathInDouble);
    }

    [AcceleratorLaw(60)]
    public bool Gpu_f32_is_within_the_f32_bound_of_the_cpu_reference(Rwkv6GpuCase c)
    {
        var (cpu, gpu) = Both(c, accelerator.F32);
        return TestTensors.CloseAtUnitScale(gpu["o"], cpu["o"], SinglePrecision)
            && TestTensors.CloseAtUnitScale(gpu["final_state"], cpu["final_state"], SinglePrecision);
    }

    [AcceleratorLaw(10)]
    public bool Strong_decay_over_a_whole_sequence_stays_exact(bool parallel, int seed)
    {
        // 40 steps of −10 … −20 sum to −600 inside one chunk (and along the parallel form's backward sums): exp of a
        // cumulative product ratio would overflow; the sums and differences of log decays do not.
        var c = new Rwkv6GpuCase(parallel ? "parallel" : "chunked", 1, 40, 2, 19, 3, GateRegime.Strong, 40, false, true, false, seed);
        var (cpu, gpu) = Both(c, accelerator.F64);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["final_state"], cpu["final_state"], SameMathInDouble);
    }

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(Rwkv6GpuCase c, GpuBackend gpu)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(Rwkv6GpuCase.Form, c.Variant, inputs, parameters), gpu.Run(Rwkv6GpuCase.Form, c.Variant, inputs, parameters));
    }
}

[Accelerator("cpu")]
public sealed class Rwkv6CpuAcceleratorTests(CpuAcceleratorFixture accelerator) : Rwkv6GpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class Rwkv6CudaTests(CudaFixture accelerator) : Rwkv6GpuLaws(accelerator), IClassFixture<CudaFixture>;

/// <summary>Every golden case of rwkv6 verifies on the GPU backend (CPU accelerator, f64), the parallel ones included.</summary>
public sealed class Rwkv6GoldenGpuTests(CpuAcceleratorFixture accelerator) : IClassFixture<CpuAcceleratorFixture>
{
    [Fact]
    public void Every_rwkv6_golden_verifies_on_the_gpu_backend() => FormsOnGpu.AssertGoldensVerify(accelerator.F64, "rwkv6");
}
