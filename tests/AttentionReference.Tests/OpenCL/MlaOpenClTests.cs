using AttentionReference.Forms;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

[Collection(OpenClSerial.Name)]
public sealed class MlaOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // f32 kernels against the f64 reference: the up-projections and scores are dot products of ≤ 20 terms of size O(1)
    // (weights 1/√Dc), ≈ 20u ≈ 1.2e-6 each; the online softmax adds ≈ u per key (≤ 30), the output projection another
    // ≈ 20u: ≈ 100u ≈ 6e-6 on the scale of |o| + max|v| and |lse| + 1; 2e-5 leaves room for f32 exp/log.
    private const double SinglePrecision = 2e-5;

    private static readonly IForm Mla = FormCatalog.Find("mla");

    private static readonly string[] s_variants = ["naive", "absorbed"];

    /// <summary>The CPU cases with longer caches and wider latents, causal rows left empty where Tq > Sk.</summary>
    private static readonly Arbitrary<(MlaCase Case, bool Stacked)> Cases =
        (from c in MlaCase.Arbitrary.Generator
         from tq in Gen.Choose(1, 20)
         from sk in Gen.Choose(1, 30)
         from dc in Gen.Elements(1, 5, 19)
         from stacked in Gen.Elements(false, true)
         select (c with { Tq = tq, Sk = sk, Dc = dc }, stacked)).ToArbitrary();

    /// <summary>
    /// Cases past the kernels' tiles, none a multiple of them: more than 64 queries and keys (softmax_tiled's query
    /// blocks and key tiles), Tq ≠ Sk, latents and value widths past 128 (two passes of value columns: absorbed's
    /// V = Dc, naive's V = Dv; scores over K = Dc + Dr past 128) and projections wider than mla_project's 64 × 64 tiles.
    /// </summary>
    private static readonly Arbitrary<MlaCase> PastTheTiles =
        (from c in MlaCase.Arbitrary.Generator
         from tq in Gen.Choose(50, 140)
         from sk in Gen.Choose(50, 140)
         from dn in Gen.Elements(8, 70)
         from dc in Gen.Elements(17, 130)
         from dv in Gen.Elements(3, 130)
         select c with { Tq = tq, Sk = sk, Dn = dn, Dc = dc, Dv = dv }).ToArbitrary();

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_in_both_variants() => PropertyRuns.Check(Prop.ForAll(Cases, x =>
        s_variants.All(variant => Agree(fixture.F64, variant, x.Case, x.Stacked, Agreement.SameMathInDouble))), cases: 80);

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_past_the_kernels_tiles() => PropertyRuns.Check(Prop.ForAll(PastTheTiles, c =>
        s_variants.All(variant => Agree(fixture.F64, variant, c, stacked: false, Agreement.SameMathInDouble))), cases: 8);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_in_both_variants() => PropertyRuns.Check(Prop.ForAll(Cases, x =>
        s_variants.All(variant => Agree(fixture.F32, variant, x.Case, x.Stacked, SinglePrecision))), cases: 50);

    private static bool Agree(OpenClBackend backend, string variant, MlaCase c, bool stacked, double tolerance)
    {
        var x = c.Inputs();
        var inputs = stacked ? x.Stacked() : x.Tensors();
        var cpu = c.Run(variant, inputs);
        var gpu = SoftmaxOutputs.Of(backend.Run(Mla, variant, inputs, FamilyTensors.Parameters([FamilyTensors.Parameter("causal", c.Causal)])));
        // o is a combination of the expanded values W_UV c_j: their largest entry is the scale of its rounding.
        var values = new Tensor([c.B * c.Sk * c.H * c.Dv], ExpandedValues(x, c));
        return Agreement.Close(gpu, cpu, values, tolerance);
    }

    private static double[] ExpandedValues(MlaCase.MlaInputs x, MlaCase c)
    {
        var values = new List<double>();
        for (int row = 0; row < c.B * c.Sk; row++)
        {
            for (int h = 0; h < c.H; h++)
            {
                for (int n = 0; n < c.Dv; n++)
                {
                    double y = 0;
                    for (int e = 0; e < c.Dc; e++)
                    {
                        y += x.WUv[h, n, e] * x.CKv.Data[row * c.Dc + e];
                    }
                    values.Add(y);
                }
            }
        }
        return values.ToArray();
    }
}
