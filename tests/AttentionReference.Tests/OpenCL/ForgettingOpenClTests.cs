using AttentionReference.Forms;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

[Collection(OpenClSerial.Name)]
public sealed class ForgettingOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // f32 kernel against the f64 reference: inputs rounded to f32 (u = 6e-8) move a score by ≈ 2u·Σ|q_d k_d|/√K ≲ 1e-6
    // (K ≤ 17) and a bias D_ij, a sum of ≤ 40 gates of size ≲ 5, by ≈ 40u·|D_ij|; only differences of scores within
    // ≈ 20 of the row's max matter, so ≈ 40u·20 ≈ 5e-5 at worst on lse (scale |lse| + 1) and on o (scale |o| + max|v|)
    // through exp; 1e-4 bounds it.
    private const double SinglePrecision = 1e-4;

    private static readonly IForm Forgetting = FormCatalog.Find("forgetting");

    private static readonly string[] s_variants = ["naive", "tiled"];

    /// <summary>The CPU cases, longer (T up to 40: several of the reference's tiles, partial ones included), varlen or not.</summary>
    private static readonly Arbitrary<(ForgettingCase Case, int[]? Lengths)> Cases =
        (from c in ForgettingCase.Arbitrary.Generator
         from t in Gen.Choose(1, 40)
         from k in Gen.Elements(1, 3, 17)
         from varlen in Gen.Elements(false, true)
         from cuts in Gen.ArrayOf(Gen.Choose(0, t), 3)
         select (c with { T = t, K = k, B = varlen ? 1 : c.B },
                 varlen ? Lengths(t, cuts) : null)).ToArbitrary();

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_in_both_variants() => PropertyRuns.Check(Prop.ForAll(Cases, x =>
        s_variants.All(variant => Agree(fixture.F64, variant, x.Case, x.Lengths, Agreement.SameMathInDouble))), cases: 80);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_in_both_variants() => PropertyRuns.Check(Prop.ForAll(Cases, x =>
        s_variants.All(variant => Agree(fixture.F32, variant, x.Case, x.Lengths, SinglePrecision))), cases: 50);

    [Fact]
    public void Strong_gates_stay_exact_on_opencl()
    {
        // log gates of −20 per step over 40 steps: the bias reaches −800, and the reference never subtracts.
        var c = new ForgettingCase(1, 40, 1, 2, 3, 4, 7, 5, 3);
        var (q, k, v, _) = c.Inputs();
        var g = new Tensor([1, 40, 2], Enumerable.Repeat(-20.0, 80).ToArray());
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g };
        var cpu = SoftmaxOutputs.Of(Forgetting.Call("naive", inputs));
        foreach (string variant in s_variants)
        {
            var gpu = fixture.F64.Run(Forgetting, variant, inputs, new FormParameters(new Dictionary<string, string>()));
            Assert.True(Agreement.Close(SoftmaxOutputs.Of(gpu), cpu, v), variant);
        }
    }

    private static bool Agree(OpenClBackend backend, string variant, ForgettingCase c, int[]? lengths, double tolerance)
    {
        var (q, k, v, g) = c.Inputs();
        var cpu = c.Run(variant, q, k, v, g, lengths is null ? null : FamilyTensors.CumulativeLengths(lengths));
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g };
        if (lengths is not null)
        {
            inputs["cu_seqlens"] = FamilyTensors.CumulativeLengths(lengths);
        }
        var parameters = FamilyTensors.Parameters([FamilyTensors.Parameter("block_q", c.BlockQ), FamilyTensors.Parameter("block_k", c.BlockK)]);
        var gpu = SoftmaxOutputs.Of(backend.Run(Forgetting, variant, inputs, parameters));
        return Agreement.Close(gpu, cpu, v, tolerance);
    }

    /// <summary>Sequence lengths summing to <paramref name="t"/>, cut at the given points (empty sequences included).</summary>
    private static int[] Lengths(int t, int[] cuts)
    {
        int[] points = [0, .. cuts.Order(), t];
        return points.Skip(1).Zip(points, (end, start) => end - start).ToArray();
    }
}
