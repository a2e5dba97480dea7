using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using Sm = AttentionReference.Forms.Softmax.Softmax;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>Packed sequences (cu_seqlens) and KV-cache decoding, each held to separate naive runs.</summary>
public sealed class SoftmaxVarlenDecodeTests
{
    // The same sums in double in different orders: Agreement.Close's bounds and their reasons.

    /// <summary>Shared options of a varlen or decode case.</summary>
    public sealed record Common(int Hkv, int Group, int K, int V, bool Causal, int WindowLeft, double Softcap, bool Alibi, int BlockQ, int BlockK, int NumSplits, int Seed)
    {
        public int Hq => Hkv * Group;

        public SoftmaxOptions Options(Random random) => new()
        {
            Causal = Causal,
            WindowLeft = WindowLeft,
            Softcap = Softcap,
            AlibiSlopes = Alibi ? new Tensor([Hq], Enumerable.Range(0, Hq).Select(_ => random.NextDouble()).ToArray()) : null,
        };

        public static Gen<Common> Generator { get; } =
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
            select new Common(hkv, g, k, v, causal, wl, softcap, alibi, bq, bk, splits, seed);
    }

    public sealed record VarlenCase(int[] Tq, int[] Tk, bool Masked, Common Shared)
    {
        public override string ToString() => $"Tq [{string.Join(",", Tq)}] Tk [{string.Join(",", Tk)}] masked {Masked} {Shared}";

        public static Arbitrary<VarlenCase> Arbitrary { get; } =
            (from n in Gen.Choose(1, 4)
             from tq in Gen.ArrayOf(Gen.Choose(0, 6), n)
             from tk in Gen.ArrayOf(Gen.Choose(0, 6), n)
             from masked in Gen.Elements(false, true)
             from shared in Common.Generator
             select new VarlenCase(tq, tk, masked, shared)).ToArbitrary();
    }

    [Fact]
    public void Varlen_equals_separate_runs_in_every_variant() => PropertyRuns.Check(Prop.ForAll(VarlenCase.Arbitrary, c =>
    {
        var s = c.Shared;
        var random = new Random(s.Seed);
        var q = TestTensors.Normal(random, 1, 1, c.Tq.Sum(), s.Hq, s.K);
        var k = TestTensors.Normal(random, 1, 1, c.Tk.Sum(), s.Hkv, s.K);
        var v = TestTensors.Normal(random, 1, 1, c.Tk.Sum(), s.Hkv, s.V);
        // A bool mask over the packed positions [ΣTq, ΣTk]; sequence n reads its own diagonal block of it.
        var mask = new Tensor([c.Tq.Sum(), c.Tk.Sum()], Enumerable.Range(0, c.Tq.Sum() * c.Tk.Sum()).Select(_ => random.Next(4) == 0 ? 0.0 : 1.0).ToArray(), DType.I32);
        var options = s.Options(random) with { CuSeqlensQ = CumulativeLengths(c.Tq), CuSeqlensK = CumulativeLengths(c.Tk), Mask = c.Masked ? mask : null };
        var packed = new (string Name, SoftmaxResult Result)[]
        {
            ("naive", Sm.Naive(q, k, v, options)),
            ("tiled", Sm.Tiled(q, k, v, options, s.BlockQ, s.BlockK)),
            ("split", Sm.Split(q, k, v, options, s.NumSplits)),
        };
        var single = options with { CuSeqlensQ = null, CuSeqlensK = null };
        int qStart = 0, kStart = 0;
        for (int n = 0; n < c.Tq.Length; n++)
        {
            var alone = Sm.Naive(SliceTime(q, qStart, c.Tq[n]), SliceTime(k, kStart, c.Tk[n]), SliceTime(v, kStart, c.Tk[n]),
                single with { Mask = c.Masked ? Block(mask, qStart, c.Tq[n], kStart, c.Tk[n]) : null });
            foreach (var (name, result) in packed)
            {
                if (!Agreement.Close(new SoftmaxResult(SliceTime(result.O, qStart, c.Tq[n]), SliceTime(result.Lse, qStart, c.Tq[n])), alone, v))
                {
                    return false.Label($"{name}: sequence {n}");
                }
            }
            (qStart, kStart) = (qStart + c.Tq[n], kStart + c.Tk[n]);
        }
        return true.ToProperty();
    }));

    public sealed record DecodeCase(int B, int Tq, int Page, int MaxBlocks, int[] Lengths, int ExtraBlocks, Common Shared)
    {
        public override string ToString() => $"B {B} Tq {Tq} page {Page} max_blocks {MaxBlocks} lengths [{string.Join(",", Lengths)}] extra {ExtraBlocks} {Shared}";

        public static Arbitrary<DecodeCase> Arbitrary { get; } =
            (from b in Gen.Choose(1, 3)
             from tq in Gen.Choose(1, 3)
             from page in Gen.Choose(1, 4)
             from maxBlocks in Gen.Choose(1, 4)
             from lengths in Gen.ArrayOf(Gen.Choose(0, page * maxBlocks), b)
             from extra in Gen.Choose(0, 2)
             from shared in Common.Generator
             select new DecodeCase(b, tq, page, maxBlocks, lengths, extra, shared)).ToArbitrary();
    }

    [Fact]
    public void Decode_with_a_paged_or_contiguous_cache_equals_naive_on_each_batch_entrys_gathered_keys() =>
        PropertyRuns.Check(Prop.ForAll(DecodeCase.Arbitrary, c =>
    {
        var s = c.Shared;
        var random = new Random(s.Seed);
        int blocks = c.B * c.MaxBlocks + c.ExtraBlocks, capacity = c.Page * c.MaxBlocks;
        var q = TestTensors.Normal(random, 1, c.B, c.Tq, s.Hq, s.K);
        var kPaged = TestTensors.Normal(random, 1, blocks, c.Page, s.Hkv, s.K);
        var vPaged = TestTensors.Normal(random, 1, blocks, c.Page, s.Hkv, s.V);
        // Pages handed out in a shuffled order, as an allocator would.
        int[] order = Enumerable.Range(0, blocks).OrderBy(_ => random.Next()).ToArray();
        var table = new Tensor([c.B, c.MaxBlocks], order.Take(c.B * c.MaxBlocks).Select(x => (double)x).ToArray(), DType.I32);
        var lengths = new Tensor([c.B], c.Lengths.Select(x => (double)x).ToArray(), DType.I32);
        var options = s.Options(random);

        // The same keys gathered into a contiguous cache [B, capacity, Hkv, D] (slots past the length hold garbage).
        var kCache = TestTensors.Normal(random, 1, c.B, capacity, s.Hkv, s.K);
        var vCache = TestTensors.Normal(random, 1, c.B, capacity, s.Hkv, s.V);
        for (int b = 0; b < c.B; b++)
        {
            for (int j = 0; j < c.Lengths[b]; j++)
            {
                int block = (int)table[b, j / c.Page];
                CopyRow(kPaged, block * c.Page + j % c.Page, kCache, b * capacity + j);
                CopyRow(vPaged, block * c.Page + j % c.Page, vCache, b * capacity + j);
            }
        }

        var paged = Sm.Decode(q, new KvCache(kPaged, vPaged, lengths, table), options, s.NumSplits);
        var contiguous = Sm.Decode(q, new KvCache(kCache, vCache, lengths), options, s.NumSplits);
        for (int b = 0; b < c.B; b++)
        {
            var alone = Sm.Naive(SliceBatch(q, b), SliceTime(SliceBatch(kCache, b), 0, c.Lengths[b]), SliceTime(SliceBatch(vCache, b), 0, c.Lengths[b]), options);
            foreach (var (name, result) in new[] { ("paged", paged), ("contiguous", contiguous) })
            {
                if (!Agreement.Close(new SoftmaxResult(SliceBatch(result.O, b), SliceBatch(result.Lse, b)), alone, vCache))
                {
                    return false.Label($"{name}: batch {b}");
                }
            }
        }
        return true.ToProperty();
    }));

    [Fact]
    public void Decode_causal_is_bottom_right_relative_to_cache_seqlens()
    {
        // One query, cache of 6 slots, 4 valid: under causal the query sees keys 0..3, and slots 4, 5 never matter.
        var random = new Random(5);
        var q = TestTensors.Normal(random, 1, 1, 1, 1, 4);
        var k = TestTensors.Normal(random, 1, 1, 6, 1, 4);
        var v = TestTensors.Normal(random, 1, 1, 6, 1, 3);
        var lengths = new Tensor([1], [4.0], DType.I32);
        var options = new SoftmaxOptions { Causal = true };
        var decoded = Sm.Decode(q, new KvCache(k, v, lengths), options, numSplits: 1);
        var prefix = Sm.Naive(q, SliceTime(k, 0, 4), SliceTime(v, 0, 4), new SoftmaxOptions());
        Assert.True(Agreement.Close(decoded, prefix, v));
    }

    internal static Tensor CumulativeLengths(int[] lengths)
    {
        var cu = new double[lengths.Length + 1];
        for (int n = 0; n < lengths.Length; n++)
        {
            cu[n + 1] = cu[n] + lengths[n];
        }
        return new Tensor([cu.Length], cu, DType.I32);
    }

    /// <summary>x[:, start:start+length] (any rank ≥ 2).</summary>
    internal static Tensor SliceTime(Tensor x, int start, int length)
    {
        int[] shape = x.ShapeArray();
        int row = shape.Skip(2).Aggregate(1, (a, e) => a * e), t = shape[1];
        shape[1] = length;
        var y = Tensor.Zeros(shape);
        for (int b = 0; b < shape[0]; b++)
        {
            Array.Copy(x.Data, (b * t + start) * row, y.Data, b * length * row, length * row);
        }
        return y;
    }

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

    /// <summary>x[b:b+1].</summary>
    internal static Tensor SliceBatch(Tensor x, int b)
    {
        int[] shape = x.ShapeArray();
        int size = x.Length / shape[0];
        shape[0] = 1;
        return new Tensor(shape, x.Data.AsSpan(b * size, size).ToArray());
    }

    private static void CopyRow(Tensor from, int fromRow, Tensor to, int toRow)
    {
        int row = from.Dim(2) * from.Dim(3);
        Array.Copy(from.Data, fromRow * row, to.Data, toRow * row, row);
    }
}
