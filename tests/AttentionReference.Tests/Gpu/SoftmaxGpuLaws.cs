using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.Softmax.FamilyTensors;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random softmax call with every option (SoftmaxOptionsCase: masks of every broadcast shape, bool or additive, with
/// emptied rows; windows; softcap; ALiBi; both alignments; GQA; Tq ≠ Tk; K ≠ V) on shapes past one group: Tq and Tk
/// up to 24 (two query blocks and key tiles of the CPU accelerator's 16 × 16 tiles, and more keys than its 16 threads),
/// K and V up to 19 and 40 (more than the 16 dims of a chunk, two passes of 32 value columns there).
/// </summary>
public sealed record SoftmaxGpuCase(SoftmaxOptionsCase Case)
{
    public static Arbitrary<SoftmaxGpuCase> Arbitrary { get; } =
        (from c in SoftmaxOptionsCase.Generator
         from tq in Gen.Choose(1, 24)
         from tk in Gen.Choose(0, 24)
         from dk in Gen.Elements(1, 3, 17, 19)
         from dv in Gen.Elements(1, 5, 19, 40)
         from wl in Gen.Elements(-1, -1, 0, 3, 21)
         from wr in Gen.Elements(-1, -1, 0, 2, 17)
         select new SoftmaxGpuCase(c with { Tq = tq, Tk = tk, K = dk, V = dv, WindowLeft = wl, WindowRight = wr })).ToArbitrary();

    public override string ToString() => Case.ToString();
}

/// <summary>
/// A softmax call over many query blocks and key tiles of the tiled kernel (Tq, Tk up to 70: five 16 × 16 tiles a side
/// on the CPU accelerator, tiles skipped left of a window and above the diagonal), every option.
/// </summary>
public sealed record LongSoftmaxGpuCase(SoftmaxOptionsCase Case)
{
    public static Arbitrary<LongSoftmaxGpuCase> Arbitrary { get; } =
        (from c in SoftmaxOptionsCase.Generator
         from tq in Gen.Choose(1, 70)
         from tk in Gen.Choose(1, 70)
         from dk in Gen.Elements(1, 7, 16, 17)
         from dv in Gen.Elements(1, 3, 33)
         from wl in Gen.Elements(-1, -1, 0, 5, 40)
         from wr in Gen.Elements(-1, -1, 0, 9, 33)
         select new LongSoftmaxGpuCase(c with { B = 1, Group = Math.Min(c.Group, 2), Tq = tq, Tk = tk, K = dk, V = dv, WindowLeft = wl, WindowRight = wr })).ToArbitrary();

    public override string ToString() => Case.ToString();
}

/// <summary>A softmax call whose head dims go past what the CPU accelerator keeps resident (K up to 400): Q_i read in chunks.</summary>
public sealed record WideSoftmaxGpuCase(SoftmaxOptionsCase Case)
{
    public static Arbitrary<WideSoftmaxGpuCase> Arbitrary { get; } =
        (from c in SoftmaxOptionsCase.Generator
         from tq in Gen.Choose(1, 20)
         from tk in Gen.Choose(1, 20)
         from dk in Gen.Elements(33, 360, 401)
         from dv in Gen.Elements(1, 33, 70)
         select new WideSoftmaxGpuCase(c with { B = 1, Hkv = 1, Group = 1, Tq = tq, Tk = tk, K = dk, V = dv })).ToArbitrary();

    public override string ToString() => Case.ToString();
}

/// <summary>
/// The GPU version of softmax (naive, tiled, split, decode) equals the CPU reference: written once, run once per
/// accelerator by the classes below.
/// </summary>
public abstract class SoftmaxGpuLaws(AcceleratorFixture accelerator)
{
    private static readonly IForm Softmax = FormCatalog.Find("softmax");

    private static readonly string[] s_keyedVariants = ["naive", "tiled", "split"];

    // f32 kernels against the f64 reference: inputs rounded to f32 (u = 6e-8) move a score by ≈ 2u·scale·Σ|q_d k_d|
    // (≤ 19 normal terms) and an ALiBi bias by u·slope·distance ≤ 40u; the softmax adds ≈ u per key (≤ 40) to l and o,
    // the merge ≈ u per part: ≈ 150u ≈ 1e-5 on the scale of |o| + max|v| and |lse| + 1 in the worst case; 3e-5 leaves
    // room for the f32 exp, log and tanh (a few ulps).
    private const double SinglePrecision = 3e-5;

    /// <summary>
    /// Every variant against the CPU's same variant (Agreement: element by element on the scale of max|v| for o and
    /// |lse| + 1, within 1e-12 in f64; the kernels sum in other orders, a few ulps per term).
    /// </summary>
    [AcceleratorLaw(10)]
    public Property Gpu_f64_equals_the_cpu_in_every_variant_with_every_option(SoftmaxGpuCase c) => EveryVariant(c.Case, accelerator.F64, Agreement.SameMathInDouble);

    [AcceleratorLaw(5)]
    public Property Gpu_f32_is_within_the_f32_bound_in_every_variant_with_every_option(SoftmaxGpuCase c) => EveryVariant(c.Case, accelerator.F32, SinglePrecision);

    /// <summary>The tiled kernel over many query blocks and key tiles against the CPU's tiled variant.</summary>
    [AcceleratorLaw(6)]
    public Property Gpu_tiled_f64_equals_the_cpu_over_many_query_blocks_and_key_tiles(LongSoftmaxGpuCase c)
    {
        var x = c.Case.Inputs();
        return Agreement.Close(RunGpu(accelerator.F64, "tiled", x), x.Run("tiled", c.Case.VariantParameters("tiled")), x.V).Label("tiled");
    }

    /// <summary>Head dims past the resident Q tile (the tiled kernel reads Q_i in chunks of 16 dims, as on an H100 at K = 128 in f64).</summary>
    [AcceleratorLaw(6)]
    public Property Gpu_tiled_f64_equals_the_cpu_with_q_read_in_chunks(WideSoftmaxGpuCase c)
    {
        var x = c.Case.Inputs();
        return Agreement.Close(RunGpu(accelerator.F64, "tiled", x), x.Run("tiled", c.Case.VariantParameters("tiled")), x.V).Label("tiled");
    }

    [AcceleratorLaw(8)]
    public Property Gpu_varlen_equals_the_cpu_in_every_keyed_variant(VarlenCase c)
    {
        var s = c.Shared;
        var x = c.Inputs();
        var cpu = x.Run("naive");
        string[] parameters = [Parameter("block_q", s.BlockQ), Parameter("block_k", s.BlockK), Parameter("num_splits", s.NumSplits)];
        return s_keyedVariants.Select(v => Agreement.Close(RunGpu(accelerator.F64, v, x, parameters), cpu, x.V).Label(v))
            .Aggregate((a, b) => a.And(b));
    }

    [AcceleratorLaw(10)]
    public Property Gpu_decode_equals_the_cpu_with_a_paged_or_contiguous_cache(DecodeCase c)
    {
        var (x, paged, contiguous) = c.Inputs();
        string splits = Parameter("num_splits", c.Shared.NumSplits);
        return new[] { ("paged", paged), ("contiguous", contiguous) }.Select(p =>
        {
            var cpu = SoftmaxOutputs.Of(SoftmaxInputs.Form.Call("decode", p.Item2, x.Parameters(splits)));
            var gpu = SoftmaxOutputs.Of(accelerator.F64.Run(Softmax, "decode", p.Item2, x.FormParameters(splits)));
            return Agreement.Close(gpu, cpu, p.Item2["v_cache"]).Label(p.Item1);
        }).Aggregate((a, b) => a.And(b));
    }

    /// <summary>
    /// A cache longer than one decode part (256 keys): the host cuts it into more parts than num_splits = 1, which
    /// changes only the summation order; causal, two batch entries of different valid lengths.
    /// </summary>
    [AcceleratorLaw(1)]
    public bool Gpu_decode_over_a_cache_longer_than_a_part_equals_the_cpu()
    {
        var random = new Random(600);
        var x = new SoftmaxInputs(TestTensors.Normal(random, 1, 2, 3, 2, 5), TestTensors.Normal(random, 1, 2, 600, 1, 5), TestTensors.Normal(random, 1, 2, 600, 1, 3))
        {
            Causal = true,
        };
        var tensors = x.Tensors("decode");
        tensors["cache_seqlens"] = new Tensor([2], [600, 257], DType.I32);
        var cpu = SoftmaxOutputs.Of(SoftmaxInputs.Form.Call("decode", tensors, x.Parameters("num_splits=1")));
        var gpu = SoftmaxOutputs.Of(accelerator.F64.Run(Softmax, "decode", tensors, x.FormParameters("num_splits=1")));
        return Agreement.Close(gpu, cpu, x.V);
    }

    /// <summary>
    /// A NaN, +∞ or −∞ in a few values of v, with masks and windows: every output is what the reference gives, the same
    /// non-finite values at the same places (v_j[d] reaches o_i[d] exactly when j ∈ A_i), the finite ones within 1e-12.
    /// The tiled kernel takes its careful loop for such a sub-tile of V.
    /// </summary>
    [AcceleratorLaw(6)]
    public Property A_nan_or_infinity_in_v_reaches_the_same_outputs_as_in_the_reference(SoftmaxGpuCase c)
    {
        var x = c.Case.Inputs();
        var random = new Random(c.Case.Seed);
        double[] specials = [double.NaN, double.PositiveInfinity, double.NegativeInfinity];
        for (int n = 0; n < 3 && x.V.Length > 0; n++)
        {
            x.V.Data[random.Next(x.V.Length)] = specials[random.Next(specials.Length)];
        }
        var cpu = x.Run("naive");
        return s_keyedVariants.Select(v => Agreement.Close(RunGpu(accelerator.F64, v, x, c.Case.VariantParameters(v)), cpu, x.V).Label(v))
            .Aggregate((a, b) => a.And(b));
    }

    /// <summary>
    /// The mask as the CPU reads it, whatever its type: a bool tensor (safetensors' BOOL) under mask_type=auto is a bool
    /// mask (true keeps a key), as are 0/1 integers, and 0/1 floats under mask_type=bool; each gives on the GPU what the
    /// CPU gives, which is what the additive mask 0 / −∞ gives (the OpenCL host once read a bool tensor as additive:
    /// a kept key then gained +1 and a dropped one stayed in A_i).
    /// </summary>
    [AcceleratorLaw(4)]
    public Property A_bool_mask_is_read_as_the_cpu_reads_it_in_every_keyed_variant(SoftmaxOptionsCase c)
    {
        var baseCase = c with { Mask = MaskChoice.Bool };
        var x = baseCase.Inputs();
        Tensor keep = x.Mask!;
        var additive = x with { Mask = new Tensor(keep.ShapeArray(), keep.Data.Select(k => k != 0 ? 0 : double.NegativeInfinity).ToArray()), MaskType = null };
        var masks = new[]
        {
            ("bool", x with { Mask = new Tensor(keep.ShapeArray(), keep.Data, DType.Bool), MaskType = null }),
            ("i32", x with { Mask = new Tensor(keep.ShapeArray(), keep.Data, DType.I32), MaskType = null }),
            ("float mask_type=bool", x),
        };
        return (from variant in s_keyedVariants
                let parameters = baseCase.VariantParameters(variant)
                let expected = additive.Run(variant, parameters)
                from mask in masks
                select Agreement.Close(RunGpu(accelerator.F64, variant, mask.Item2, parameters), expected, x.V).Label($"{variant}, {mask.Item1}"))
            .Aggregate((a, b) => a.And(b));
    }

    [AcceleratorLaw(1)]
    public bool Empty_rows_give_zero_and_minus_infinity_in_every_variant()
    {
        // Tq > Tk under causal: rows 0..2 see no key; a window left of every key empties more.
        var c = new SoftmaxOptionsCase(1, 5, 2, 1, 2, 4, 3, true, false, -1, -1, 0, false, MaskChoice.None, 0, 2, 2, 3, 7);
        var x = c.Inputs();
        foreach (var (name, cpu) in c.AllVariants(x))
        {
            var gpu = RunGpu(accelerator.F64, name, x, c.VariantParameters(name));
            Assert.Equal(cpu.Lse.Data.Select(double.IsNegativeInfinity), gpu.Lse.Data.Select(double.IsNegativeInfinity));
            Assert.True(Agreement.Close(gpu, cpu, x.V), name);
        }
        return true;
    }

    [AcceleratorLaw(1)]
    public bool A_nan_in_v_reaches_o_even_where_its_weight_underflows_to_zero()
    {
        // 100 queries and keys (several query blocks and key tiles), K = V = 1, causal: key 70 scores −2000 below the
        // others, so exp(s − m) = 0 for every row that sees it, yet its NaN reaches those rows (0·NaN), as in the
        // reference; rows before 70 never see it and stay finite.
        var q = new Tensor([1, 100, 1, 1], Enumerable.Repeat(1.0, 100).ToArray());
        var k = new Tensor([1, 100, 1, 1], Enumerable.Range(0, 100).Select(j => j == 70 ? -2000.0 : 0.01 * j).ToArray());
        var v = new Tensor([1, 100, 1, 1], Enumerable.Range(0, 100).Select(j => j == 70 ? double.NaN : Math.Sin(j)).ToArray());
        var x = new SoftmaxInputs(q, k, v) { Causal = true };
        var cpu = x.Run("naive");
        Assert.True(double.IsNaN(cpu.O.Data[70]) && double.IsFinite(cpu.O.Data[69])); // the law's premise
        foreach (string name in s_keyedVariants)
        {
            Assert.True(Agreement.Close(RunGpu(accelerator.F64, name, x, "num_splits=3"), cpu, v), name);
        }
        return true;
    }

    [AcceleratorLaw(1)]
    public bool A_nan_in_a_masked_value_row_reaches_nothing()
    {
        // Key 3 is masked for every query; its v is NaN. The tiled kernel loads it into its tile but must not use it.
        var c = new SoftmaxOptionsCase(1, 20, 12, 1, 2, 3, 4, false, false, -1, -1, 0, false, MaskChoice.None, 0, 4, 4, 3, 11);
        var x = c.Inputs();
        x.V[0, 3, 0, 1] = double.NaN;
        x = x with { Mask = new Tensor([20, 12], Enumerable.Range(0, 240).Select(e => e % 12 == 3 ? 0.0 : 1.0).ToArray(), DType.I32) };
        foreach (string name in s_keyedVariants)
        {
            var gpu = RunGpu(accelerator.F64, name, x, "num_splits=3");
            Assert.DoesNotContain(gpu.O.Data, double.IsNaN);
            Assert.True(Agreement.Close(gpu, x.Run("naive"), x.V), name);
        }
        return true;
    }

    [AcceleratorLaw(1)]
    public bool Bad_input_is_refused_with_the_cpu_forms_message()
    {
        var c = new SoftmaxOptionsCase(1, 3, 4, 1, 1, 2, 2, false, false, -1, -1, 0, false, MaskChoice.Bool, 4, 4, 4, 3, 1);
        var x = c.Inputs();
        foreach (var bad in new[]
        {
            x with { Mask = new Tensor([2, 4], new double[8], DType.I32) },                          // a mask that does not broadcast
            x with { Mask = new Tensor([3, 4], Enumerable.Repeat(2.0, 12).ToArray(), DType.I32) },  // an integer mask holding 2
            x with { MaskType = "additive", Mask = new Tensor([3, 4], new double[12], DType.I32) },  // an integer mask as additive
        })
        {
            foreach (string variant in s_keyedVariants)
            {
                var cpuError = Assert.Throws<InputException>(() => bad.Run(variant));
                var gpuError = Assert.Throws<InputException>(() => RunGpu(accelerator.F64, variant, bad));
                Assert.Equal(cpuError.Message, gpuError.Message);
            }
        }
        // decode reads a cache and no k, v or mask, as the CPU form says
        var decodeWithK = x.Tensors("naive");
        var cpuDecode = Assert.Throws<InputException>(() => SoftmaxInputs.Form.Call("decode", decodeWithK, x.Parameters()));
        var gpuDecode = Assert.Throws<InputException>(() => accelerator.F64.Run(Softmax, "decode", decodeWithK, x.FormParameters()));
        Assert.Equal(cpuDecode.Message, gpuDecode.Message);
        return true;
    }

    [AcceleratorLaw(1)]
    public bool Every_golden_case_of_softmax_verifies_on_the_gpu()
    {
        SoftmaxGoldens.AssertVerify(accelerator.F64, "softmax");
        return true;
    }

    private static Property EveryVariant(SoftmaxOptionsCase c, GpuBackend gpu, double tolerance)
    {
        var x = c.Inputs();
        return c.AllVariants(x).Select(p => Agreement.Close(RunGpu(gpu, p.Name, x, c.VariantParameters(p.Name)), p.Result, x.V, tolerance).Label(p.Name))
            .Aggregate((a, b) => a.And(b));
    }

    /// <summary>Runs <paramref name="variant"/> on the GPU backend with the case's options as the CLI passes them.</summary>
    private static SoftmaxOutputs RunGpu(GpuBackend gpu, string variant, SoftmaxInputs x, params string[] more) =>
        SoftmaxOutputs.Of(gpu.Run(Softmax, variant, x.Tensors(variant), x.FormParameters(more)));
}

[Accelerator("cpu")]
public sealed class SoftmaxCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : SoftmaxGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class SoftmaxCudaTests(CudaFixture accelerator) : SoftmaxGpuLaws(accelerator), IClassFixture<CudaFixture>;

/// <summary>The softmax family's goldens on the GPU backend.</summary>
internal static class SoftmaxGoldens
{
    /// <summary>
    /// Every shipped golden of <paramref name="form"/> on <paramref name="gpu"/>: each forward case passes, and each
    /// gradient case ("…_grad") is skipped, refused as unsupported (FormRunner: gradients are the CPU reference's only).
    /// </summary>
    public static void AssertVerify(GpuBackend gpu, string form)
    {
        var results = GoldenStore.Verify(RepoPaths.Of("golden"), new FormsOnGpu(gpu, form))
            .Where(r => r.Id.StartsWith(form + "/", StringComparison.Ordinal)).ToList();
        Assert.Contains(results, r => !r.IsGradient);
        Assert.All(results, r => Assert.True(r.IsGradient
                ? r.Skipped?.Contains("CPU reference only", StringComparison.Ordinal) == true
                : r.Passed,
            $"{r.Id}: {r.Skipped ?? r.Problem ?? string.Join("; ", r.Comparisons.Where(c => !c.Passed))}"));
    }
}
