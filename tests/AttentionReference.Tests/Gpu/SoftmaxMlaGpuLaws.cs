using AttentionReference.Forms;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random MLA call (MlaCase: Tq ≠ Sk, causal rows left empty where Tq > Sk) past the CPU accelerator's tiles: Tq and
/// Sk up to 24 (two 16 × 16 tiles), latents Dc up to 40 (absorbed's V = Dc: two passes of 32 value columns; its
/// K = Dc + Dr past the 16 dims of a chunk), the up-projections as w_uk, w_uv or stacked as wkv_b.
/// </summary>
public sealed record MlaGpuCase(MlaCase Case, bool Stacked)
{
    public static Arbitrary<MlaGpuCase> Arbitrary { get; } =
        (from c in MlaCase.Arbitrary.Generator
         from tq in Gen.Choose(1, 24)
         from sk in Gen.Choose(1, 24)
         from dn in Gen.Elements(1, 3, 17)
         from dc in Gen.Elements(1, 5, 19, 40)
         from dv in Gen.Elements(1, 3, 19)
         from stacked in Gen.Elements(false, true)
         select new MlaGpuCase(c with { Tq = tq, Sk = sk, Dn = dn, Dc = dc, Dv = dv }, stacked)).ToArbitrary();
}

/// <summary>The GPU version of mla (naive, absorbed) equals the CPU reference, once per accelerator.</summary>
public abstract class SoftmaxMlaGpuLaws(AcceleratorFixture accelerator)
{
    // f32 against the f64 reference: the up-projections and scores are dot products of ≤ 57 terms of size O(1) (weights
    // 1/√Dc), ≈ 57u ≈ 3.4e-6 each; the softmax adds ≈ u per key (≤ 24), the output projection another ≈ 40u: ≈ 130u
    // ≈ 8e-6 on the scale of |o| + max|v| and |lse| + 1; 3e-5 leaves room for the f32 exp and log.
    private const double SinglePrecision = 3e-5;

    private static readonly IForm Mla = FormCatalog.Find("mla");

    private static readonly string[] s_variants = ["naive", "absorbed"];

    [AcceleratorLaw(15)]
    public Property Gpu_f64_equals_the_cpu_in_both_variants(MlaGpuCase c) => BothVariants(c, accelerator.F64, Agreement.SameMathInDouble);

    [AcceleratorLaw(5)]
    public Property Gpu_f32_is_within_the_f32_bound_in_both_variants(MlaGpuCase c) => BothVariants(c, accelerator.F32, SinglePrecision);

    [AcceleratorLaw(1)]
    public bool Bad_input_is_refused_with_the_cpu_forms_message()
    {
        var c = new MlaCase(1, 2, 3, 2, 3, 2, 4, 3, true, 5);
        var x = c.Inputs();
        var both = x.Tensors();
        both["wkv_b"] = x.Stacked()["wkv_b"];
        var neither = x.Tensors();
        neither.Remove("w_uv");
        foreach (var tensors in new[] { both, neither })
        {
            foreach (string variant in s_variants)
            {
                var cpu = Assert.Throws<InputException>(() => c.Run(variant, tensors));
                var gpu = Assert.Throws<InputException>(() => accelerator.F64.Run(Mla, variant, tensors, FormParameters.None));
                Assert.Equal(cpu.Message, gpu.Message);
            }
        }
        return true;
    }

    [AcceleratorLaw(1)]
    public bool Every_golden_case_of_mla_verifies_on_the_gpu()
    {
        SoftmaxGoldens.AssertVerify(accelerator.F64, "mla");
        return true;
    }

    private static Property BothVariants(MlaGpuCase g, GpuBackend gpu, double tolerance)
    {
        var (c, x) = (g.Case, g.Case.Inputs());
        var inputs = g.Stacked ? x.Stacked() : x.Tensors();
        // o is a combination of the expanded values W_UV c_j: their largest entry is the scale of its rounding.
        double[] expanded = ExpandedValues(x, c);
        var values = new Tensor([expanded.Length], expanded);
        return s_variants.Select(variant =>
        {
            var cpu = c.Run(variant, inputs);
            var result = SoftmaxOutputs.Of(gpu.Run(Mla, variant, inputs, FamilyTensors.Parameters([FamilyTensors.Parameter("causal", c.Causal)])));
            return Agreement.Close(result, cpu, values, tolerance).Label(variant);
        }).Aggregate((a, b) => a.And(b));
    }

    /// <summary>W_UV[h] c_j for every cache row and head (0 when there are none).</summary>
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
        return values.Count == 0 ? [0] : values.ToArray();
    }
}

[Accelerator("cpu")]
public sealed class SoftmaxMlaCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : SoftmaxMlaGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class SoftmaxMlaCudaTests(CudaFixture accelerator) : SoftmaxMlaGpuLaws(accelerator), IClassFixture<CudaFixture>;
