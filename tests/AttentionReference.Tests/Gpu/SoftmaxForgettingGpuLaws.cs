using AttentionReference.Forms;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random forgetting call (ForgettingCase: GQA, gates log σ(x)) past the CPU accelerator's tiles: T up to 40 (three
/// 16 × 16 tiles, several query blocks), K up to 19, V up to 40 (two passes of 32 value columns there), varlen or not.
/// </summary>
public sealed record ForgettingGpuCase(ForgettingCase Case, int[]? Lengths)
{
    public static Arbitrary<ForgettingGpuCase> Arbitrary { get; } =
        (from c in ForgettingCase.Arbitrary.Generator
         from t in Gen.Choose(1, 40)
         from k in Gen.Elements(1, 3, 17, 19)
         from v in Gen.Elements(1, 5, 40)
         from varlen in Gen.Elements(false, true)
         from cuts in Gen.ArrayOf(Gen.Choose(0, t), 3)
         select new ForgettingGpuCase(c with { T = t, K = k, V = v, B = varlen ? 1 : c.B }, varlen ? Cut(t, cuts) : null)).ToArbitrary();

    public override string ToString() => $"{Case} lengths [{string.Join(",", Lengths ?? [])}]";

    /// <summary>Sequence lengths summing to <paramref name="t"/>, cut at the given points (empty sequences included).</summary>
    private static int[] Cut(int t, int[] cuts)
    {
        int[] points = [0, .. cuts.Order(), t];
        return points.Skip(1).Zip(points, (end, start) => end - start).ToArray();
    }
}

/// <summary>The GPU version of forgetting (naive, tiled) equals the CPU reference, once per accelerator.</summary>
public abstract class SoftmaxForgettingGpuLaws(AcceleratorFixture accelerator)
{
    // f32 against the f64 reference: inputs rounded to f32 (u = 6e-8) move a score by ≈ 2u·Σ|q_d k_d|/√K ≲ 1e-6 (K ≤ 19)
    // and a bias D_ij, a sum of ≤ 40 gates of size ≲ 5, by ≈ 40u·|D_ij|; only scores within ≈ 20 of the row's max
    // matter, so ≈ 40u·20 ≈ 5e-5 at worst on lse (scale |lse| + 1) and on o (scale |o| + max|v|); 1e-4 bounds it.
    private const double SinglePrecision = 1e-4;

    private static readonly IForm Forgetting = FormCatalog.Find("forgetting");

    private static readonly string[] s_variants = ["naive", "tiled"];

    [AcceleratorLaw(10)]
    public Property Gpu_f64_equals_the_cpu_in_both_variants(ForgettingGpuCase c) => BothVariants(c, accelerator.F64, Agreement.SameMathInDouble);

    [AcceleratorLaw(5)]
    public Property Gpu_f32_is_within_the_f32_bound_in_both_variants(ForgettingGpuCase c) => BothVariants(c, accelerator.F32, SinglePrecision);

    /// <summary>Log gates of −20 per step over 40 steps: the bias reaches −800, and neither side ever subtracts.</summary>
    [AcceleratorLaw(3)]
    public Property Strong_gates_stay_exact(int seed)
    {
        var c = new ForgettingCase(1, 40, 1, 2, 3, 4, 7, 5, seed);
        var (q, k, v, _) = c.Inputs();
        var g = new Tensor([1, 40, 2], Enumerable.Repeat(-20.0, 80).ToArray());
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g };
        var cpu = SoftmaxOutputs.Of(Forgetting.Call("naive", inputs));
        return s_variants.Select(variant => Agreement.Close(SoftmaxOutputs.Of(accelerator.F64.Run(Forgetting, variant, inputs, FormParameters.None)), cpu, v)
            .Label(variant)).Aggregate((a, b) => a.And(b));
    }

    [AcceleratorLaw(1)]
    public bool Every_golden_case_of_forgetting_verifies_on_the_gpu()
    {
        SoftmaxGoldens.AssertVerify(accelerator.F64, "forgetting");
        return true;
    }

    private static Property BothVariants(ForgettingGpuCase x, GpuBackend gpu, double tolerance)
    {
        var c = x.Case;
        var (q, k, v, g) = c.Inputs();
        Tensor? cu = x.Lengths is null ? null : FamilyTensors.CumulativeLengths(x.Lengths);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g };
        if (cu is not null)
        {
            inputs["cu_seqlens"] = cu;
        }
        var parameters = FamilyTensors.Parameters([FamilyTensors.Parameter("block_q", c.BlockQ), FamilyTensors.Parameter("block_k", c.BlockK)]);
        return s_variants.Select(variant =>
            Agreement.Close(SoftmaxOutputs.Of(gpu.Run(Forgetting, variant, inputs, parameters)), c.Run(variant, q, k, v, g, cu), v, tolerance).Label(variant))
            .Aggregate((a, b) => a.And(b));
    }
}

[Accelerator("cpu")]
public sealed class SoftmaxForgettingCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : SoftmaxForgettingGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class SoftmaxForgettingCudaTests(CudaFixture accelerator) : SoftmaxForgettingGpuLaws(accelerator), IClassFixture<CudaFixture>;
