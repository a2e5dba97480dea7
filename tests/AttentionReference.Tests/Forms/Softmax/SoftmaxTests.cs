using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.Softmax.FamilyTensors;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>A random softmax problem: shapes covering T = 1, Tq ≠ Tk, GQA/MQA, Dk ≠ Dv, odd head dims.</summary>
public sealed record SoftmaxCase(int B, int Tq, int Tk, int Hkv, int Group, int K, int V, bool Causal, int Seed)
{
    public int Hq => Hkv * Group;

    public (Tensor Q, Tensor K, Tensor V) Inputs(double scale = 1)
    {
        var random = new Random(Seed);
        return (TestTensors.Normal(random, scale, B, Tq, Hq, K),
                TestTensors.Normal(random, scale, B, Tk, Hkv, K),
                TestTensors.Normal(random, scale, B, Tk, Hkv, V));
    }

    public static Arbitrary<SoftmaxCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from tq in Gen.Choose(1, 9)
         from tk in Gen.Choose(1, 9)
         from hkv in Gen.Choose(1, 2)
         from g in Gen.Choose(1, 3)
         from k in Gen.Elements(1, 3, 8, 17)
         from v in Gen.Elements(1, 4, 5)
         from causal in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new SoftmaxCase(b, tq, tk, hkv, g, k, v, causal, seed)).ToArbitrary();
}

/// <summary>Which mask a case carries and in which broadcast shape.</summary>
public enum MaskChoice { None, Bool, Additive }

/// <summary>
/// One softmax call as the command line makes it: q, k, v, the optional tensors and the options as parameters.
/// </summary>
public sealed record SoftmaxInputs(Tensor Q, Tensor K, Tensor V)
{
    public static IForm Form { get; } = new AttentionReference.Forms.Softmax.Softmax();

    public bool Causal { get; init; }
    public bool TopLeft { get; init; }
    public int WindowLeft { get; init; } = -1;
    public int WindowRight { get; init; } = -1;
    public double Softcap { get; init; }
    public double? Scale { get; init; }
    public Tensor? Slopes { get; init; }
    public Tensor? Mask { get; init; }

    /// <summary>mask_type; null: auto.</summary>
    public string? MaskType { get; init; }

    public Tensor? CuSeqlensQ { get; init; }
    public Tensor? CuSeqlensK { get; init; }

    /// <summary>The tensors of a call of <paramref name="variant"/>: decode reads k and v as an unpaged cache.</summary>
    public Dictionary<string, Tensor> Tensors(string variant)
    {
        var tensors = new Dictionary<string, Tensor> { ["q"] = Q };
        (tensors[variant == "decode" ? "k_cache" : "k"], tensors[variant == "decode" ? "v_cache" : "v"]) = (K, V);
        foreach (var (name, tensor) in new[] { ("alibi_slopes", Slopes), ("mask", Mask), ("cu_seqlens_q", CuSeqlensQ), ("cu_seqlens_k", CuSeqlensK) })
        {
            if (tensor is not null)
            {
                tensors[name] = tensor;
            }
        }
        return tensors;
    }

    /// <summary>The options as "name=value" parameters, then <paramref name="more"/>.</summary>
    public string[] Parameters(params string[] more)
    {
        var parameters = new List<string>
        {
            Parameter("causal", Causal), "causal_align=" + (TopLeft ? "top_left" : "bottom_right"),
            Parameter("window_left", WindowLeft), Parameter("window_right", WindowRight), Parameter("softcap", Softcap),
        };
        if (Scale is { } scale)
        {
            parameters.Add(Parameter("scale", scale));
        }
        if (MaskType is { } maskType)
        {
            parameters.Add("mask_type=" + maskType);
        }
        return [.. parameters, .. more];
    }

    /// <summary>The parameters as a backend takes them.</summary>
    public FormParameters FormParameters(params string[] more) => FamilyTensors.Parameters(Parameters(more));

    /// <summary>o and lse of <paramref name="variant"/> on the CPU.</summary>
    public SoftmaxOutputs Run(string variant, params string[] more) => SoftmaxOutputs.Of(Form.Call(variant, Tensors(variant), Parameters(more)));
}

/// <summary>
/// A random softmax problem with every option: shapes covering T = 1, Tq ≠ Tk, GQA/MQA, head dims 1, 3, 17; causal
/// in both alignments; windows that empty some rows; softcap; ALiBi; bool or additive masks of every broadcast shape
/// (some rows all masked); block sizes that do not divide T; more splits than keys.
/// </summary>
public sealed record SoftmaxOptionsCase(
    int B, int Tq, int Tk, int Hkv, int Group, int K, int V,
    bool Causal, bool TopLeft, int WindowLeft, int WindowRight, double Softcap, bool Alibi,
    MaskChoice Mask, int MaskShape, int BlockQ, int BlockK, int NumSplits, int Seed)
{
    public int Hq => Hkv * Group;

    /// <summary>The mask's shape: one of the shapes SDPA broadcasts to [B,Hq,Tq,Tk].</summary>
    public int[] MaskDims => MaskShape switch
    {
        0 => [Tq, Tk],
        1 => [B, 1, Tq, Tk],
        2 => [1, Hq, Tq, Tk],
        3 => [Hq, 1, Tk],
        _ => [B, Hq, Tq, Tk],
    };

    public SoftmaxInputs Inputs(double scale = 1)
    {
        var random = new Random(Seed);
        var q = TestTensors.Normal(random, scale, B, Tq, Hq, K);
        var k = TestTensors.Normal(random, scale, B, Tk, Hkv, K);
        var v = TestTensors.Normal(random, 1, B, Tk, Hkv, V);
        Tensor? slopes = Alibi ? new Tensor([Hq], Enumerable.Range(0, Hq).Select(_ => random.NextDouble()).ToArray()) : null;
        Tensor? mask = null;
        if (Mask != MaskChoice.None)
        {
            int[] dims = MaskDims;
            var data = new double[Tensor.ElementCount(dims)];
            int rowLength = dims[^1];
            for (int n = 0; n < data.Length; n++)
            {
                bool keep = random.NextDouble() < 0.7;
                data[n] = Mask == MaskChoice.Bool ? (keep ? 1 : 0) : keep ? random.NextDouble() * 2 - 1 : double.NegativeInfinity;
            }
            if (data.Length >= rowLength && rowLength > 0 && random.Next(2) == 0)
            {
                // One row masked entirely: an empty row even where the window is not.
                int row = random.Next(data.Length / rowLength);
                Array.Fill(data, Mask == MaskChoice.Bool ? 0 : double.NegativeInfinity, row * rowLength, rowLength);
            }
            mask = new Tensor(dims, data);
        }
        return new SoftmaxInputs(q, k, v)
        {
            Causal = Causal,
            TopLeft = TopLeft,
            WindowLeft = WindowLeft,
            WindowRight = WindowRight,
            Softcap = Softcap,
            Slopes = slopes,
            Mask = mask,
            MaskType = Mask == MaskChoice.Bool ? "bool" : null,
        };
    }

    /// <summary>The parameters of a variant beyond the options: block sizes, number of splits.</summary>
    public string[] VariantParameters(string variant) => variant switch
    {
        "tiled" => [Parameter("block_q", BlockQ), Parameter("block_k", BlockK)],
        "split" or "decode" => [Parameter("num_splits", NumSplits)],
        _ => [],
    };

    /// <summary>Every variant on the same inputs (decode reads k, v as an unpaged cache; it takes no mask).</summary>
    public IEnumerable<(string Name, SoftmaxOutputs Result)> AllVariants(SoftmaxInputs x)
    {
        foreach (string variant in (string[])["naive", "tiled", "split", "decode"])
        {
            if (variant != "decode" || x.Mask is null)
            {
                yield return (variant, x.Run(variant, VariantParameters(variant)));
            }
        }
    }

    public static Gen<SoftmaxOptionsCase> Generator { get; } =
        from b in Gen.Choose(1, 2)
        from tq in Gen.Choose(1, 9)
        from tk in Gen.Choose(1, 9)
        from hkv in Gen.Choose(1, 2)
        from g in Gen.Choose(1, 3)
        from k in Gen.Elements(1, 3, 8, 17)
        from v in Gen.Elements(1, 4, 5)
        from causal in Gen.Elements(false, true)
        from topLeft in Gen.Elements(false, false, true)
        from wl in Gen.Elements(-1, -1, 0, 1, 3)
        from wr in Gen.Elements(-1, -1, 0, 2)
        from softcap in Gen.Elements(0.0, 0.0, 0.5, 5.0)
        from alibi in Gen.Elements(false, true)
        from mask in Gen.Elements(MaskChoice.None, MaskChoice.Bool, MaskChoice.Additive)
        from maskShape in Gen.Choose(0, 4)
        from bq in Gen.Choose(1, 5)
        from bk in Gen.Choose(1, 5)
        from splits in Gen.Choose(1, 12)
        from seed in Gen.Choose(0, int.MaxValue)
        select new SoftmaxOptionsCase(b, tq, tk, hkv, g, k, v, causal, topLeft, wl, wr, softcap, alibi, mask, maskShape, bq, bk, splits, seed);

    public static Arbitrary<SoftmaxOptionsCase> Arbitrary { get; } = Generator.ToArbitrary();

    /// <summary>Whether query i may read key j: the window around the diagonal and the mask, spelled out.</summary>
    public bool Allowed(SoftmaxInputs x, int b, int h, int i, int j)
    {
        int diagonal = TopLeft ? i : i + Tk - Tq;
        int right = Causal ? 0 : WindowRight;
        if ((WindowLeft >= 0 && j < diagonal - WindowLeft) || (right >= 0 && j > diagonal + right))
        {
            return false;
        }
        return MaskValue(x, b, h, i, j) is not double.NegativeInfinity;
    }

    /// <summary>s_ij, with −∞ for a key that is not allowed, with none of the library's code.</summary>
    public double Score(SoftmaxInputs x, int b, int h, int i, int j)
    {
        if (!Allowed(x, b, h, i, j))
        {
            return double.NegativeInfinity;
        }
        double s = Textbook.Dot(x.Q, x.K, b, h, i, j, Group) / Math.Sqrt(K);
        if (Softcap > 0)
        {
            s = Softcap * Math.Tanh(s / Softcap);
        }
        if (x.Slopes is { } slopes)
        {
            int diagonal = TopLeft ? i : i + Tk - Tq;
            s -= slopes[h] * Math.Abs(diagonal - j);
        }
        return s + MaskValue(x, b, h, i, j);
    }

    /// <summary>The mask's value at (b, h, i, j) by broadcasting by hand; bool false reads as −∞, true as 0.</summary>
    public double MaskValue(SoftmaxInputs x, int b, int h, int i, int j)
    {
        if (x.Mask is not { } mask)
        {
            return 0;
        }
        int[] full = [b, h, i, j];
        int[] index = new int[mask.Rank];
        for (int axis = 0; axis < mask.Rank; axis++)
        {
            int fullAxis = axis + 4 - mask.Rank;
            index[axis] = mask.Dim(axis) == 1 ? 0 : full[fullAxis];
        }
        double value = mask[index];
        return Mask == MaskChoice.Bool ? (value == 1 ? 0 : double.NegativeInfinity) : value;
    }

    /// <summary>The definition, as <see cref="Textbook"/> computes it.</summary>
    public SoftmaxOutputs TextbookOf(SoftmaxInputs x) => Textbook.Attention(B, Tq, Tk, Hq, V,
        (b, h, i, j) => Score(x, b, h, i, j), (b, h, j, d) => x.V[b, j, h / Group, d]);

    public IEnumerable<(int B, int I, int H)> Rows() =>
        from b in Enumerable.Range(0, B) from i in Enumerable.Range(0, Tq) from h in Enumerable.Range(0, Hq) select (b, i, h);
}

/// <summary>Shared options of a varlen or decode case.</summary>
public sealed record SoftmaxCommon(int Hkv, int Group, int K, int V, bool Causal, int WindowLeft, double Softcap, bool Alibi, int BlockQ, int BlockK, int NumSplits, int Seed)
{
    public int Hq => Hkv * Group;

    /// <summary>q, k, v with these options (ALiBi slopes drawn from <paramref name="random"/>).</summary>
    public SoftmaxInputs With(Tensor q, Tensor k, Tensor v, Random random) => new(q, k, v)
    {
        Causal = Causal,
        WindowLeft = WindowLeft,
        Softcap = Softcap,
        Slopes = Alibi ? new Tensor([Hq], Enumerable.Range(0, Hq).Select(_ => random.NextDouble()).ToArray()) : null,
    };

    public static Gen<SoftmaxCommon> Generator { get; } =
        from hkv in Gen.Choose(1, 2)
        from g in Gen.Choose(1, 3)
        from k in Gen.Elements(1, 3, 17)
        from v in Gen.Elements(1, 4)
        from causal in Gen.Elements(false, true)
        from wl in Gen.Elements(-1, -1, 0, 2)
        from softcap in Gen.Elements(0.0, 0.0, 2.0)
        from alibi in Gen.Elements(false, true)
        from bq in Gen.Choose(1, 4)
        from bk in Gen.Choose(1, 4)
        from splits in Gen.Choose(1, 7)
        from seed in Gen.Choose(0, int.MaxValue)
        select new SoftmaxCommon(hkv, g, k, v, causal, wl, softcap, alibi, bq, bk, splits, seed);
}

/// <summary>Packed sequences of Tq_n queries and Tk_n keys (empty ones included), with or without a bool mask.</summary>
public sealed record VarlenCase(int[] Tq, int[] Tk, bool Masked, SoftmaxCommon Shared)
{
    public override string ToString() => $"Tq [{string.Join(",", Tq)}] Tk [{string.Join(",", Tk)}] masked {Masked} {Shared}";

    /// <summary>The packed call (B = 1) and its bool mask over the packed positions [ΣTq, ΣTk].</summary>
    public SoftmaxInputs Inputs()
    {
        var s = Shared;
        var random = new Random(s.Seed);
        var q = TestTensors.Normal(random, 1, 1, Tq.Sum(), s.Hq, s.K);
        var k = TestTensors.Normal(random, 1, 1, Tk.Sum(), s.Hkv, s.K);
        var v = TestTensors.Normal(random, 1, 1, Tk.Sum(), s.Hkv, s.V);
        var mask = new Tensor([Tq.Sum(), Tk.Sum()], Enumerable.Range(0, Tq.Sum() * Tk.Sum()).Select(_ => random.Next(4) == 0 ? 0.0 : 1.0).ToArray(), DType.I32);
        return s.With(q, k, v, random) with
        {
            CuSeqlensQ = CumulativeLengths(Tq),
            CuSeqlensK = CumulativeLengths(Tk),
            Mask = Masked ? mask : null,
        };
    }

    public static Arbitrary<VarlenCase> Arbitrary { get; } =
        (from n in Gen.Choose(1, 4)
         from tq in Gen.ArrayOf(Gen.Choose(0, 6), n)
         from tk in Gen.ArrayOf(Gen.Choose(0, 6), n)
         from masked in Gen.Elements(false, true)
         from shared in SoftmaxCommon.Generator
         select new VarlenCase(tq, tk, masked, shared)).ToArbitrary();
}

/// <summary>A decode problem: B entries of Tq queries against a paged cache (pages shuffled) of per-entry lengths.</summary>
public sealed record DecodeCase(int B, int Tq, int Page, int MaxBlocks, int[] Lengths, int ExtraBlocks, SoftmaxCommon Shared)
{
    public override string ToString() => $"B {B} Tq {Tq} page {Page} max_blocks {MaxBlocks} lengths [{string.Join(",", Lengths)}] extra {ExtraBlocks} {Shared}";

    public static Arbitrary<DecodeCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 3)
         from tq in Gen.Choose(1, 3)
         from page in Gen.Choose(1, 4)
         from maxBlocks in Gen.Choose(1, 4)
         from lengths in Gen.ArrayOf(Gen.Choose(0, page * maxBlocks), b)
         from extra in Gen.Choose(0, 2)
         from shared in SoftmaxCommon.Generator
         select new DecodeCase(b, tq, page, maxBlocks, lengths, extra, shared)).ToArbitrary();

    /// <summary>
    /// The call's q and options, its paged cache (tensors of a decode call), and the same keys gathered into a
    /// contiguous cache [B, capacity, Hkv, D] whose slots past each length hold garbage.
    /// </summary>
    public (SoftmaxInputs Options, Dictionary<string, Tensor> Paged, Dictionary<string, Tensor> Contiguous) Inputs()
    {
        var s = Shared;
        var random = new Random(s.Seed);
        int blocks = B * MaxBlocks + ExtraBlocks, capacity = Page * MaxBlocks;
        var q = TestTensors.Normal(random, 1, B, Tq, s.Hq, s.K);
        var kPaged = TestTensors.Normal(random, 1, blocks, Page, s.Hkv, s.K);
        var vPaged = TestTensors.Normal(random, 1, blocks, Page, s.Hkv, s.V);
        // Pages handed out in a shuffled order, as an allocator would.
        int[] order = Enumerable.Range(0, blocks).OrderBy(_ => random.Next()).ToArray();
        var table = new Tensor([B, MaxBlocks], order.Take(B * MaxBlocks).Select(x => (double)x).ToArray(), DType.I32);
        var lengths = new Tensor([B], Lengths.Select(x => (double)x).ToArray(), DType.I32);
        var kCache = TestTensors.Normal(random, 1, B, capacity, s.Hkv, s.K);
        var vCache = TestTensors.Normal(random, 1, B, capacity, s.Hkv, s.V);
        for (int b = 0; b < B; b++)
        {
            for (int j = 0; j < Lengths[b]; j++)
            {
                int block = (int)table[b, j / Page];
                CopyRow(kPaged, block * Page + j % Page, kCache, b * capacity + j);
                CopyRow(vPaged, block * Page + j % Page, vCache, b * capacity + j);
            }
        }
        var options = s.With(q, kCache, vCache, random);
        Dictionary<string, Tensor> Call(Tensor k, Tensor v)
        {
            var tensors = options.Tensors("decode");
            (tensors["k_cache"], tensors["v_cache"], tensors["cache_seqlens"]) = (k, v, lengths);
            return tensors;
        }
        var paged = Call(kPaged, vPaged);
        paged["block_table"] = table;
        return (options, paged, Call(kCache, vCache));
    }

    private static void CopyRow(Tensor from, int fromRow, Tensor to, int toRow)
    {
        int row = from.Dim(2) * from.Dim(3);
        Array.Copy(from.Data, fromRow * row, to.Data, toRow * row, row);
    }
}

/// <summary>softmax's laws: the definition against the textbook, every variant against it under every option, varlen and decode.</summary>
public sealed class SoftmaxTests
{
    // Every side computes the same sums in double, in different orders (blocks, parts, rescalings) and with
    // different exp routines: Agreement.Close's bounds (1e-12 on the scale of each output) and their reasons.

    private static readonly string[] s_variants = ["naive", "tiled", "split", "decode"];

    private static SoftmaxOutputs Run(SoftmaxCase c, string variant, Tensor q, Tensor k, Tensor v) =>
        new SoftmaxInputs(q, k, v) { Causal = c.Causal }.Run(variant);

    [Law]
    public bool Naive_equals_the_textbook_definition(SoftmaxCase c)
    {
        var (q, k, v) = c.Inputs();
        var textbook = Textbook.Attention(c.B, c.Tq, c.Tk, c.Hq, c.V,
            (b, h, i, j) => c.Causal && j > i + c.Tk - c.Tq ? double.NegativeInfinity : Textbook.Dot(q, k, b, h, i, j, c.Group) / Math.Sqrt(c.K),
            (b, h, j, d) => v[b, j, h / c.Group, d]);
        return Agreement.Close(Run(c, "naive", q, k, v), textbook, v);
    }

    [Law]
    public bool Gqa_equals_mha_with_repeated_keys_and_values_in_every_variant(SoftmaxCase c)
    {
        var (q, k, v) = c.Inputs();
        var (kFull, vFull) = (RepeatHeads(k, c.Group), RepeatHeads(v, c.Group));
        // Identical arithmetic on identical numbers: the results must agree bit for bit.
        return s_variants.All(variant => Run(c, variant, q, k, v).SameBits(Run(c, variant, q, kFull, vFull)));
    }

    [Law]
    public bool Causal_outputs_do_not_depend_on_later_keys(SoftmaxCase c)
    {
        var (q, k, v) = c.Inputs();
        // Perturb the last key and value: only queries whose diagonal reaches key Tk−1 (i ≥ Tq−1) may change.
        var (k2, v2) = (k.Clone(), v.Clone());
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hkv; h++)
            {
                k2[b, c.Tk - 1, h, 0] += 1;
                v2[b, c.Tk - 1, h, 0] += 1;
            }
        }
        var causal = c with { Causal = true };
        return s_variants.All(variant =>
        {
            SoftmaxOutputs before = Run(causal, variant, q, k, v), after = Run(causal, variant, q, k2, v2);
            // Rows 0..Tq−2 see keys up to i + Tk − Tq ≤ Tk − 2: bit for bit the same.
            return SliceTime(before.O, 0, c.Tq - 1).Data.SequenceEqual(SliceTime(after.O, 0, c.Tq - 1).Data)
                && SliceTime(before.Lse, 0, c.Tq - 1).Data.SequenceEqual(SliceTime(after.Lse, 0, c.Tq - 1).Data);
        });
    }

    [Fact]
    public void Rows_with_no_allowed_key_give_zero_output_and_minus_infinity_lse()
    {
        // Tq = 5 > Tk = 2 under bottom-right causal: queries 0..2 have diagonals −3..−1 and see no key.
        var c = new SoftmaxCase(1, 5, 2, 1, 1, 4, 3, true, 7);
        var (q, k, v) = c.Inputs();
        foreach (string variant in s_variants)
        {
            var result = Run(c, variant, q, k, v);
            for (int i = 0; i < 5; i++)
            {
                bool empty = i < 3;
                Assert.Equal(empty, double.IsNegativeInfinity(result.Lse[0, i, 0]));
                Assert.Equal(empty, Enumerable.Range(0, 3).All(d => result.O[0, i, 0, d] == 0));
            }
        }
    }

    [Law]
    public bool Huge_scores_do_not_overflow_thanks_to_the_running_max(SoftmaxCase c)
    {
        // Inputs of size 100 with K ≥ 1 give scores of order ±1e4: exp of them overflows, exp(s − max) does not.
        var (q, k, v) = c.Inputs(scale: 100);
        var result = Run(c, "naive", q, k, v);
        return result.O.Data.All(double.IsFinite) && result.Lse.Data.All(x => double.IsFinite(x) || double.IsNegativeInfinity(x));
    }

    [Law]
    public bool Naive_equals_the_textbook_definition_with_every_option(SoftmaxOptionsCase c)
    {
        var x = c.Inputs();
        return Agreement.Close(x.Run("naive"), c.TextbookOf(x), x.V);
    }

    [Law]
    public Property Tiled_split_and_decode_equal_naive_for_any_block_size_and_number_of_splits(SoftmaxOptionsCase c)
    {
        var x = c.Inputs();
        var results = c.AllVariants(x).ToList();
        SoftmaxOutputs naive = results[0].Result;
        return results.All(r => Agreement.Close(r.Result, naive, x.V)) // −∞ only where naive has −∞: the same empty rows
            .Label($"variants: {string.Join(", ", results.Select(r => $"{r.Name} o {TestTensors.RelativeError(r.Result.O, naive.O):E1} lse {TestTensors.RelativeError(r.Result.Lse, naive.Lse):E1}"))}");
    }

    [Law]
    public bool Lse_is_the_log_of_the_sum_of_exp_of_the_materialised_scores(SoftmaxOptionsCase c)
    {
        var x = c.Inputs();
        var lse = Tensor.Zeros(c.B, c.Tq, c.Hq);
        foreach (var (b, i, h) in c.Rows())
        {
            // Scores are O(10) here: exp without the max is exact enough, and log 0 = −∞ for an empty row.
            lse[b, i, h] = Math.Log(Enumerable.Range(0, c.Tk).Sum(j => Math.Exp(c.Score(x, b, h, i, j))));
        }
        return c.AllVariants(x).All(r => Agreement.CloseLse(r.Result.Lse, lse));
    }

    [Law]
    public bool A_bool_mask_equals_the_additive_mask_of_zeros_and_minus_infinity(SoftmaxOptionsCase c0)
    {
        var c = c0 with { Mask = MaskChoice.Bool };
        var x = c.Inputs();
        Tensor additive = new(x.Mask!.ShapeArray(), x.Mask.Data.Select(m => m == 1 ? 0 : double.NegativeInfinity).ToArray());
        var y = x with { Mask = additive, MaskType = "additive" };
        // The same scores (s + 0) and the same allowed sets: identical arithmetic, so identical bits.
        return c.AllVariants(x).Zip(c.AllVariants(y)).All(p => p.First.Result.SameBits(p.Second.Result));
    }

    [Law]
    public bool An_integer_mask_is_a_bool_mask(SoftmaxOptionsCase c0)
    {
        var c = c0 with { Mask = MaskChoice.Bool };
        var x = c.Inputs();
        Tensor integer = new(x.Mask!.ShapeArray(), (double[])x.Mask.Data.Clone(), DType.I32);
        var y = x with { Mask = integer, MaskType = null };
        return x.Run("naive").O.Data.SequenceEqual(y.Run("naive").O.Data);
    }

    [Law]
    public bool Causal_top_left_equals_a_lower_triangular_bool_mask(SoftmaxOptionsCase c0)
    {
        var c = c0 with { Causal = true, TopLeft = true, WindowLeft = -1, WindowRight = -1, Mask = MaskChoice.None, Alibi = false };
        var x = c.Inputs();
        var tril = new Tensor([c.Tq, c.Tk], Enumerable.Range(0, c.Tq * c.Tk).Select(n => n % c.Tk <= n / c.Tk ? 1.0 : 0.0).ToArray(), DType.I32);
        var masked = x with { Causal = false, TopLeft = false, Mask = tril };
        return x.Run("naive").SameBits(masked.Run("naive"));
    }

    [Law]
    public Property A_row_does_not_depend_on_keys_it_may_not_read(SoftmaxOptionsCase c, NonNegativeInt pick)
    {
        // Causality and its generalisation to windows and masks: change key j* and value j*; every row whose A_i
        // lacks j* keeps its output to the bit, in every variant.
        var x = c.Inputs();
        int jStar = pick.Get % c.Tk;
        var (k2, v2) = (x.K.Clone(), x.V.Clone());
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hkv; h++)
            {
                k2[b, jStar, h, 0] += 3;
                v2[b, jStar, h, 0] += 3;
            }
        }
        var y = x with { K = k2, V = v2 };
        foreach (var ((name, before), (_, after)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in c.Rows())
            {
                if (!c.Allowed(x, b, h, i, jStar) && !SameRow(c, before, after, b, i, h))
                {
                    return false.Label($"{name}: row ({b},{i},{h}) changed with key {jStar}");
                }
            }
        }
        return true.ToProperty();
    }

    [Law]
    public bool Permuting_keys_and_values_together_changes_nothing_without_causality_masks_or_alibi(SoftmaxOptionsCase c0)
    {
        var c = c0 with { Causal = false, WindowLeft = -1, WindowRight = -1, Alibi = false, Mask = MaskChoice.None };
        var x = c.Inputs();
        int[] permutation = Enumerable.Range(0, c.Tk).OrderBy(j => (j * 7919 + c.Seed) % 104729).ToArray();
        var y = x with { K = PermuteTime(x.K, permutation), V = PermuteTime(x.V, permutation) };
        return c.AllVariants(x).Zip(c.AllVariants(y)).All(p => Agreement.Close(p.Second.Result, p.First.Result, x.V));
    }

    [Law]
    public bool Scores_of_plus_or_minus_1e4_stay_finite_and_the_variants_agree(SoftmaxOptionsCase c0)
    {
        // Inputs of size 100 give scores of order ±1e4 (exp overflows at 710); every variant subtracts a max first.
        var c = c0 with { Softcap = 0 };
        var x = c.Inputs(scale: 100);
        var results = c.AllVariants(x).ToList();
        return results.All(r => r.Result.O.Data.All(double.IsFinite) && r.Result.Lse.Data.All(e => double.IsFinite(e) || double.IsNegativeInfinity(e))
                                && Agreement.Close(r.Result, results[0].Result, x.V));
    }

    [Law]
    public bool Softcap_bounds_huge_scores_and_the_variants_agree(SoftmaxOptionsCase c0)
    {
        var c = c0 with { Softcap = 5, Alibi = false, Mask = MaskChoice.None };
        var x = c.Inputs(scale: 1e3);
        var results = c.AllVariants(x).ToList();
        // |c·tanh(s/c)| ≤ c: lse ≤ c + ln Tk, whatever the raw scores.
        return results.All(r => r.Result.Lse.Data.All(e => double.IsNegativeInfinity(e) || e <= 5 + Math.Log(c.Tk) + 1e-12)
                                && Agreement.Close(r.Result, results[0].Result, x.V));
    }

    [Fact]
    public void Rows_with_every_key_masked_give_zero_output_and_minus_infinity_lse_in_every_variant()
    {
        // A mask whose query row 1 is all false, the others all true: only row 1 is empty.
        var c = new SoftmaxOptionsCase(2, 3, 4, 1, 2, 3, 2, false, false, -1, -1, 0, false, MaskChoice.Bool, 0, 2, 3, 3, 11);
        var mask = new Tensor([3, 4], Enumerable.Range(0, 12).Select(n => n / 4 == 1 ? 0.0 : 1.0).ToArray(), DType.I64);
        var x = c.Inputs() with { Mask = mask, MaskType = null };
        foreach (var (name, result) in c.AllVariants(x))
        {
            foreach (var (b, i, h) in c.Rows())
            {
                Assert.True((i == 1) == double.IsNegativeInfinity(result.Lse[b, i, h]), $"{name}: lse of row ({b},{i},{h})");
                Assert.True(i != 1 || Enumerable.Range(0, c.V).All(d => result.O[b, i, h, d] == 0), $"{name}: o of row ({b},{i},{h})");
            }
        }
    }

    [Law]
    public Property A_nan_in_a_key_reaches_exactly_the_rows_that_read_it(SoftmaxOptionsCase c, NonNegativeInt pick)
    {
        var x = c.Inputs();
        int jStar = pick.Get % c.Tk, hkStar = pick.Get % c.Hkv;
        var k2 = x.K.Clone();
        k2[0, jStar, hkStar, 0] = double.NaN;
        var y = x with { K = k2 };
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in c.Rows())
            {
                bool reads = b == 0 && h / c.Group == hkStar && c.Allowed(x, b, h, i, jStar);
                bool ok = reads ? NanRow(c, dirty, b, i, h) : SameRow(c, clean, dirty, b, i, h);
                if (!ok)
                {
                    return false.Label($"{name}: row ({b},{i},{h}), reads key {jStar} of head {hkStar}: {reads}");
                }
            }
        }
        return true.ToProperty();
    }

    [Law]
    public Property A_nan_in_a_query_reaches_its_row_unless_the_row_is_empty(SoftmaxOptionsCase c, NonNegativeInt pick)
    {
        var x = c.Inputs();
        var (bStar, iStar, hStar) = (pick.Get % c.B, pick.Get % c.Tq, pick.Get % c.Hq);
        var q2 = x.Q.Clone();
        q2[bStar, iStar, hStar, c.K - 1] = double.NaN;
        var y = x with { Q = q2 };
        bool empty = Enumerable.Range(0, c.Tk).All(j => !c.Allowed(x, bStar, hStar, iStar, j));
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in c.Rows())
            {
                bool ok = (b, i, h) != (bStar, iStar, hStar) || empty ? SameRow(c, clean, dirty, b, i, h) : NanRow(c, dirty, b, i, h);
                if (!ok)
                {
                    return false.Label($"{name}: row ({b},{i},{h})");
                }
            }
        }
        return true.ToProperty();
    }

    [Law]
    public Property A_nan_alibi_slope_reaches_every_non_empty_row_of_its_head(SoftmaxOptionsCase c0, NonNegativeInt pick)
    {
        var c = c0 with { Alibi = true };
        var x = c.Inputs();
        int hStar = pick.Get % c.Hq;
        var slopes = x.Slopes!.Clone();
        slopes[hStar] = double.NaN;
        var y = x with { Slopes = slopes };
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in c.Rows())
            {
                bool empty = Enumerable.Range(0, c.Tk).All(j => !c.Allowed(x, b, h, i, j));
                bool ok = h != hStar || empty ? SameRow(c, clean, dirty, b, i, h) : NanRow(c, dirty, b, i, h);
                if (!ok)
                {
                    return false.Label($"{name}: row ({b},{i},{h})");
                }
            }
        }
        return true.ToProperty();
    }

    [Law]
    public Property A_nan_in_one_value_component_reaches_only_that_component_of_the_rows_that_read_it(SoftmaxOptionsCase c, NonNegativeInt pick)
    {
        var x = c.Inputs();
        int jStar = pick.Get % c.Tk, dStar = pick.Get % c.V;
        var v2 = x.V.Clone();
        v2[0, jStar, 0, dStar] = double.NaN;
        var y = x with { V = v2 };
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in c.Rows())
            {
                bool reads = b == 0 && h / c.Group == 0 && c.Allowed(x, b, h, i, jStar);
                for (int d = 0; d < c.V; d++)
                {
                    bool nan = double.IsNaN(dirty.O[b, i, h, d]);
                    if (nan != (reads && d == dStar) || (!nan && dirty.O[b, i, h, d] != clean.O[b, i, h, d]))
                    {
                        return false.Label($"{name}: o[{b},{i},{h},{d}]");
                    }
                }
                if (dirty.Lse[b, i, h].CompareTo(clean.Lse[b, i, h]) != 0)
                {
                    return false.Label($"{name}: lse[{b},{i},{h}] changed");
                }
            }
        }
        return true.ToProperty();
    }

    [Law]
    public bool Merge_of_a_single_partial_is_that_partial_and_empty_partials_add_nothing(SoftmaxOptionsCase c)
    {
        var x = c.Inputs();
        var naive = x.Run("naive");
        var merged = new SoftmaxOutputs(Tensor.Zeros(naive.O.ShapeArray()), Tensor.Zeros(naive.Lse.ShapeArray()));
        var parts = RowBlock.Zeros(3, c.V); // an empty part, the row, an empty part
        double[] lses = [double.NegativeInfinity, 0, double.NegativeInfinity];
        for (int row = 0; row < naive.Lse.Length; row++)
        {
            naive.O.Data.AsSpan(row * c.V, c.V).CopyTo(parts[1]);
            lses[1] = naive.Lse.Data[row];
            merged.Lse.Data[row] = SoftmaxRow.Merge(lses, parts, merged.O.Data.AsSpan(row * c.V, c.V));
        }
        // exp(lse − lse) = 1 exactly and the empty parts contribute 0·0: the same bits except for the 1·o product.
        return Agreement.CloseO(merged.O, naive.O, x.V, 1e-15) && merged.Lse.Data.SequenceEqual(naive.Lse.Data);
    }

    [Law]
    public Property Varlen_equals_separate_runs_in_every_variant(VarlenCase c)
    {
        var s = c.Shared;
        var x = c.Inputs();
        var packed = new (string Name, SoftmaxOutputs Result)[]
        {
            ("naive", x.Run("naive")),
            ("tiled", x.Run("tiled", Parameter("block_q", s.BlockQ), Parameter("block_k", s.BlockK))),
            ("split", x.Run("split", Parameter("num_splits", s.NumSplits))),
        };
        int qStart = 0, kStart = 0;
        for (int n = 0; n < c.Tq.Length; n++)
        {
            var alone = Sequence(c, x, n, qStart, kStart).Run("naive");
            foreach (var (name, result) in packed)
            {
                if (!Agreement.Close(new SoftmaxOutputs(SliceTime(result.O, qStart, c.Tq[n]), SliceTime(result.Lse, qStart, c.Tq[n])), alone, x.V))
                {
                    return false.Label($"{name}: sequence {n}");
                }
            }
            (qStart, kStart) = (qStart + c.Tq[n], kStart + c.Tk[n]);
        }
        return true.ToProperty();
    }

    [Law]
    public Property Decode_with_a_paged_or_contiguous_cache_equals_naive_on_each_batch_entrys_valid_keys(DecodeCase c)
    {
        var (x, pagedCache, contiguousCache) = c.Inputs();
        string splits = Parameter("num_splits", c.Shared.NumSplits);
        var paged = SoftmaxOutputs.Of(SoftmaxInputs.Form.Call("decode", pagedCache, x.Parameters(splits)));
        var contiguous = SoftmaxOutputs.Of(SoftmaxInputs.Form.Call("decode", contiguousCache, x.Parameters(splits)));
        for (int b = 0; b < c.B; b++)
        {
            var alone = (x with
            {
                Q = SliceBatch(x.Q, b),
                K = SliceTime(SliceBatch(x.K, b), 0, c.Lengths[b]),
                V = SliceTime(SliceBatch(x.V, b), 0, c.Lengths[b]),
            }).Run("naive");
            foreach (var (name, result) in new[] { ("paged", paged), ("contiguous", contiguous) })
            {
                if (!Agreement.Close(new SoftmaxOutputs(SliceBatch(result.O, b), SliceBatch(result.Lse, b)), alone, x.V))
                {
                    return false.Label($"{name}: batch {b}");
                }
            }
        }
        return true.ToProperty();
    }

    [Fact]
    public void Decode_causal_is_bottom_right_relative_to_cache_seqlens()
    {
        // One query, cache of 6 slots, 4 valid: under causal the query sees keys 0..3, and slots 4, 5 never matter.
        var random = new Random(5);
        var q = TestTensors.Normal(random, 1, 1, 1, 1, 4);
        var k = TestTensors.Normal(random, 1, 1, 6, 1, 4);
        var v = TestTensors.Normal(random, 1, 1, 6, 1, 3);
        var decoded = SoftmaxOutputs.Of(SoftmaxInputs.Form.Call("decode",
            new Dictionary<string, Tensor> { ["q"] = q, ["k_cache"] = k, ["v_cache"] = v, ["cache_seqlens"] = new Tensor([1], [4.0], DType.I32) },
            "causal=true", "num_splits=1"));
        var prefix = new SoftmaxInputs(q, SliceTime(k, 0, 4), SliceTime(v, 0, 4)).Run("naive");
        Assert.True(Agreement.Close(decoded, prefix, v));
    }

    // Gradients (issue #19): the definition's against finite differences; every variant's, varlen's, GQA's and decode's
    // against the definition's (FamilyGradients.SameGradientsInDouble and its reason); rows with no key give zeros.

    [Law(50)]
    public Property Gradients_of_naive_equal_central_finite_differences_with_every_option(SoftmaxOptionsCase c)
    {
        var x = c.Inputs();
        string? mismatch = FamilyGradients.FiniteDifferenceMismatch(SoftmaxInputs.Form, "naive", x.Tensors("naive"), x.Parameters(), new Random(c.Seed));
        return (mismatch is null).Label(mismatch ?? "");
    }

    [Law]
    public Property Backward_of_tiled_split_and_decode_equals_naive_for_any_block_size_and_number_of_splits(SoftmaxOptionsCase c)
    {
        var x = c.Inputs();
        var inputs = FamilyGradients.WithCotangents(SoftmaxInputs.Form, "naive", x.Tensors("naive"), x.Parameters(), new Random(c.Seed));
        var naive = FamilyGradients.Gradients(SoftmaxInputs.Form, "naive", inputs, x.Parameters());
        foreach (string variant in (string[])["tiled", "split", "decode"])
        {
            if (variant == "decode" && x.Mask is not null)
            {
                continue; // decode takes no mask
            }
            var call = variant == "decode"
                ? inputs.ToDictionary(p => p.Key switch { "k" => "k_cache", "v" => "v_cache", _ => p.Key }, p => p.Value)
                : inputs;
            var expected = variant == "decode" ? FamilyGradients.Renamed(naive, ("dk", "dk_cache"), ("dv", "dv_cache")) : naive;
            if (!FamilyGradients.Same(FamilyGradients.Gradients(SoftmaxInputs.Form, variant, call, x.Parameters(c.VariantParameters(variant))), expected))
            {
                return false.Label(variant);
            }
        }
        return true.ToProperty();
    }

    [Law]
    public Property Backward_gqa_equals_mha_with_repeated_keys_and_values_summed_over_the_repeats(SoftmaxCase c)
    {
        var (q, k, v) = c.Inputs();
        string[] parameters = [Parameter("causal", c.Causal), "block_q=3", "block_k=2", "num_splits=3"];
        var grouped = FamilyGradients.WithCotangents(SoftmaxInputs.Form, "naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v },
            parameters, new Random(c.Seed));
        var repeated = new Dictionary<string, Tensor>(grouped) { ["k"] = RepeatHeads(k, c.Group), ["v"] = RepeatHeads(v, c.Group) };
        foreach (string variant in (string[])["naive", "tiled", "split"])
        {
            var gqa = FamilyGradients.Gradients(SoftmaxInputs.Form, variant, grouped, parameters);
            var mha = FamilyGradients.Gradients(SoftmaxInputs.Form, variant, repeated, parameters);
            var summed = new Dictionary<string, Tensor> { ["dq"] = mha["dq"], ["dk"] = SumRepeats(mha["dk"], c.Group), ["dv"] = SumRepeats(mha["dv"], c.Group) };
            if (!FamilyGradients.Same(gqa, summed))
            {
                return false.Label(variant);
            }
        }
        return true.ToProperty();
    }

    [Law]
    public Property Backward_varlen_equals_separate_runs_in_every_variant(VarlenCase c)
    {
        var s = c.Shared;
        var x = c.Inputs();
        var packed = FamilyGradients.WithCotangents(SoftmaxInputs.Form, "naive", x.Tensors("naive"), x.Parameters(), new Random(s.Seed));
        var variants = new (string Name, IReadOnlyDictionary<string, Tensor> Gradients)[]
        {
            ("naive", FamilyGradients.Gradients(SoftmaxInputs.Form, "naive", packed, x.Parameters())),
            ("tiled", FamilyGradients.Gradients(SoftmaxInputs.Form, "tiled", packed, x.Parameters(Parameter("block_q", s.BlockQ), Parameter("block_k", s.BlockK)))),
            ("split", FamilyGradients.Gradients(SoftmaxInputs.Form, "split", packed, x.Parameters(Parameter("num_splits", s.NumSplits)))),
        };
        Tensor? slopes = null; // dalibi_slopes, summed over the sequences
        int qStart = 0, kStart = 0;
        for (int n = 0; n < c.Tq.Length; n++)
        {
            var alone = Sequence(c, x, n, qStart, kStart);
            var inputs = alone.Tensors("naive");
            inputs["do"] = SliceTime(packed["do"], qStart, c.Tq[n]);
            inputs["dlse"] = SliceTime(packed["dlse"], qStart, c.Tq[n]);
            var separate = FamilyGradients.Gradients(SoftmaxInputs.Form, "naive", inputs, alone.Parameters());
            foreach (var (name, together) in variants)
            {
                var slices = new Dictionary<string, Tensor>
                {
                    ["dq"] = SliceTime(together["dq"], qStart, c.Tq[n]),
                    ["dk"] = SliceTime(together["dk"], kStart, c.Tk[n]),
                    ["dv"] = SliceTime(together["dv"], kStart, c.Tk[n]),
                };
                if (!FamilyGradients.Same(slices, separate.Where(p => p.Key != "dalibi_slopes").ToDictionary()))
                {
                    return false.Label($"{name}: sequence {n}");
                }
            }
            if (separate.TryGetValue("dalibi_slopes", out Tensor? slope))
            {
                slopes = slopes is null ? slope : new Tensor(slope.ShapeArray(), slopes.Data.Zip(slope.Data, (a, b) => a + b).ToArray());
            }
            (qStart, kStart) = (qStart + c.Tq[n], kStart + c.Tk[n]);
        }
        // The slopes' gradient collects every sequence's, in another order.
        return variants.All(p => slopes is null || TestTensors.Close(p.Gradients["dalibi_slopes"], slopes, FamilyGradients.SameGradientsInDouble))
            .Label("dalibi_slopes");
    }

    [Law]
    public Property Backward_of_decode_with_a_paged_cache_adds_each_keys_gradient_to_its_cache_row(DecodeCase c)
    {
        var (x, pagedCache, _) = c.Inputs();
        string splits = Parameter("num_splits", c.Shared.NumSplits);
        var inputs = FamilyGradients.WithCotangents(SoftmaxInputs.Form, "decode", pagedCache, x.Parameters(splits), new Random(c.Shared.Seed));
        var paged = FamilyGradients.Gradients(SoftmaxInputs.Form, "decode", inputs, x.Parameters(splits));
        Tensor table = pagedCache["block_table"];
        var (dkExpected, dvExpected) = (Tensor.Zeros(pagedCache["k_cache"].ShapeArray()), Tensor.Zeros(pagedCache["v_cache"].ShapeArray()));
        var dq = Tensor.Zeros(x.Q.ShapeArray());
        Tensor? slopes = null;
        for (int b = 0; b < c.B; b++)
        {
            var alone = x with
            {
                Q = SliceBatch(x.Q, b),
                K = SliceTime(SliceBatch(x.K, b), 0, c.Lengths[b]),
                V = SliceTime(SliceBatch(x.V, b), 0, c.Lengths[b]),
            };
            var call = alone.Tensors("naive");
            (call["do"], call["dlse"]) = (SliceBatch(inputs["do"], b), SliceBatch(inputs["dlse"], b));
            var naive = FamilyGradients.Gradients(SoftmaxInputs.Form, "naive", call, alone.Parameters());
            Array.Copy(naive["dq"].Data, 0, dq.Data, b * naive["dq"].Length, naive["dq"].Length);
            for (int j = 0; j < c.Lengths[b]; j++)
            {
                int row = (int)table[b, j / c.Page] * c.Page + j % c.Page; // the slot key j came from
                AddRow(naive["dk"], j, dkExpected, row);
                AddRow(naive["dv"], j, dvExpected, row);
            }
            if (naive.TryGetValue("dalibi_slopes", out Tensor? slope))
            {
                slopes = slopes is null ? slope : new Tensor(slope.ShapeArray(), slopes.Data.Zip(slope.Data, (a, e) => a + e).ToArray());
            }
        }
        var expected = new Dictionary<string, Tensor> { ["dq"] = dq, ["dk_cache"] = dkExpected, ["dv_cache"] = dvExpected };
        if (slopes is not null)
        {
            expected["dalibi_slopes"] = slopes;
        }
        return FamilyGradients.Same(paged, expected).ToProperty();
    }

    [Law]
    public Property Backward_of_decode_one_query_at_a_time_against_the_cache_it_saw_equals_one_call_under_causal(DecodeCase c0)
    {
        // Autoregressive decoding, decode's split law: query i of Tq is the one query of the step that decoded it, when
        // batch b's cache held Tk_b − (Tq − 1 − i) keys (none if fewer). Under bottom-right causal it sees the same keys at
        // the same distances from its diagonal (window, ALiBi), so dq's rows are those steps' and dk_cache, dv_cache and
        // dalibi_slopes their sums, in another order (FamilyGradients.SameGradientsInDouble).
        var c = c0 with { Shared = c0.Shared with { Causal = true } };
        var (x, paged, _) = c.Inputs();
        string[] parameters = x.Parameters(Parameter("num_splits", c.Shared.NumSplits));
        var inputs = FamilyGradients.WithCotangents(SoftmaxInputs.Form, "decode", paged, parameters, new Random(c.Shared.Seed));
        var together = FamilyGradients.Gradients(SoftmaxInputs.Form, "decode", inputs, parameters);
        var steps = together.ToDictionary(p => p.Key, p => Tensor.Zeros(p.Value.ShapeArray()));
        for (int i = 0; i < c.Tq; i++)
        {
            var step = new Dictionary<string, Tensor>(inputs)
            {
                ["q"] = SliceTime(inputs["q"], i, 1),
                ["do"] = SliceTime(inputs["do"], i, 1),
                ["dlse"] = SliceTime(inputs["dlse"], i, 1),
                ["cache_seqlens"] = new Tensor([c.B], c.Lengths.Select(l => (double)Math.Max(0, l - (c.Tq - 1 - i))).ToArray(), DType.I32),
            };
            foreach (var (name, gradient) in FamilyGradients.Gradients(SoftmaxInputs.Form, "decode", step, parameters))
            {
                AddTime(gradient, steps[name], name == "dq" ? i : 0);
            }
        }
        return FamilyGradients.Same(together, steps).ToProperty();
    }

    [Fact]
    public void Rows_with_no_allowed_key_give_zero_gradients_in_every_variant_whatever_their_dlse()
    {
        // Tq = 5 against Tk = 3 under bottom-right causal: queries 0 and 1 see no key; the bool mask empties query 3 too.
        var random = new Random(11);
        var (q, k, v) = (TestTensors.Normal(random, 1, 1, 5, 2, 4), TestTensors.Normal(random, 1, 1, 3, 1, 4), TestTensors.Normal(random, 1, 1, 3, 1, 3));
        var mask = new Tensor([5, 3], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1], DType.I32);
        string[] empty = ["causal=true", "block_q=2", "block_k=2", "num_splits=2"];
        var inputs = FamilyGradients.WithCotangents(SoftmaxInputs.Form, "naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["mask"] = mask },
            empty, random);
        // Large cotangents on the empty rows' lse = −∞ and o = 0 must change nothing: the same gradients as with zeros there.
        var quiet = new Dictionary<string, Tensor>(inputs) { ["do"] = inputs["do"].Clone(), ["dlse"] = inputs["dlse"].Clone() };
        foreach (int i in (int[])[0, 1, 3])
        {
            for (int h = 0; h < 2; h++)
            {
                (inputs["dlse"][0, i, h], quiet["dlse"][0, i, h]) = (1e3, 0);
                for (int d = 0; d < 3; d++)
                {
                    (inputs["do"][0, i, h, d], quiet["do"][0, i, h, d]) = (5, 0);
                }
            }
        }
        foreach (string variant in s_variants.Where(v => v != "decode"))
        {
            var gradients = FamilyGradients.Gradients(SoftmaxInputs.Form, variant, inputs, empty);
            Assert.All(gradients.Values, g => Assert.All(g.Data, e => Assert.True(double.IsFinite(e), variant)));
            foreach (int i in (int[])[0, 1, 3])
            {
                Assert.All(Enumerable.Range(0, 8), d => Assert.Equal(0, gradients["dq"][0, i, d / 4, d % 4]));
            }
            Assert.True(FamilyGradients.Same(gradients, FamilyGradients.Gradients(SoftmaxInputs.Form, variant, quiet, empty)), variant);
        }
    }

    /// <summary>Row <paramref name="from"/> (all heads) of a [1,T,H,D] tensor added to row <paramref name="to"/> of a [Blocks,Page,H,D] one.</summary>
    private static void AddRow(Tensor source, int from, Tensor target, int to)
    {
        int row = source.Dim(2) * source.Dim(3);
        for (int n = 0; n < row; n++)
        {
            target.Data[to * row + n] += source.Data[from * row + n];
        }
    }

    private static bool SameRow(SoftmaxOptionsCase c, SoftmaxOutputs x, SoftmaxOutputs y, int b, int i, int h) =>
        x.Lse[b, i, h].CompareTo(y.Lse[b, i, h]) == 0 && Enumerable.Range(0, c.V).All(d => x.O[b, i, h, d].CompareTo(y.O[b, i, h, d]) == 0);

    private static bool NanRow(SoftmaxOptionsCase c, SoftmaxOutputs x, int b, int i, int h) =>
        double.IsNaN(x.Lse[b, i, h]) && Enumerable.Range(0, c.V).All(d => double.IsNaN(x.O[b, i, h, d]));

    private static Tensor PermuteTime(Tensor x, int[] permutation)
    {
        var y = Tensor.Zeros(x.ShapeArray());
        int b = x.Dim(0), t = x.Dim(1), row = x.Dim(2) * x.Dim(3);
        for (int n = 0; n < b; n++)
        {
            for (int j = 0; j < t; j++)
            {
                Array.Copy(x.Data, (n * t + permutation[j]) * row, y.Data, (n * t + j) * row, row);
            }
        }
        return y;
    }

    /// <summary>Sequence n of a packed varlen call on its own: its queries from <paramref name="qStart"/>, keys from <paramref name="kStart"/>.</summary>
    private static SoftmaxInputs Sequence(VarlenCase c, SoftmaxInputs x, int n, int qStart, int kStart) => x with
    {
        Q = SliceTime(x.Q, qStart, c.Tq[n]),
        K = SliceTime(x.K, kStart, c.Tk[n]),
        V = SliceTime(x.V, kStart, c.Tk[n]),
        Mask = x.Mask is null ? null : Block(x.Mask, qStart, c.Tq[n], kStart, c.Tk[n]),
        CuSeqlensQ = null,
        CuSeqlensK = null,
    };

    /// <summary>mask[t0:t0+tq, u0:u0+tk] of a [T,U] mask.</summary>
    private static Tensor Block(Tensor mask, int t0, int tq, int u0, int tk)
    {
        var data = new double[tq * tk];
        for (int t = 0; t < tq; t++)
        {
            Array.Copy(mask.Data, (t0 + t) * mask.Dim(1) + u0, data, t * tk, tk);
        }
        return new Tensor([tq, tk], data, mask.DType);
    }
}
