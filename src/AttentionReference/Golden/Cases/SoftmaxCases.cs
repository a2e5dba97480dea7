using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>Golden cases of the softmax family.</summary>
internal static class SoftmaxCases
{
    public static IEnumerable<GoldenCase> All =>
    [
        Softmax("full", "naive", [], b: 2, tq: 8, tk: 8, hq: 2, hkv: 2, dk: 16, dv: 16),
        Softmax("causal", "naive", new() { ["causal"] = "true" }, b: 1, tq: 12, tk: 12, hq: 2, hkv: 2, dk: 8, dv: 8),
        Softmax("causal_gqa", "naive", new() { ["causal"] = "true" }, b: 2, tq: 6, tk: 6, hq: 4, hkv: 2, dk: 8, dv: 8),
        // Tq < Tk with Dk ≠ Dv: bottom-right alignment lets the last query see every key.
        Softmax("cross_causal_bottom_right", "naive", new() { ["causal"] = "true" }, b: 1, tq: 5, tk: 9, hq: 2, hkv: 1, dk: 8, dv: 4),
        // Tq > Tk under causal: the first Tq − Tk queries see no key (o = 0, lse = −inf).
        Softmax("mqa_empty_rows", "naive", new() { ["causal"] = "true" }, b: 1, tq: 7, tk: 3, hq: 3, hkv: 1, dk: 4, dv: 4),
        Softmax("scale", "naive", new() { ["scale"] = "0.3" }, b: 1, tq: 4, tk: 6, hq: 1, hkv: 1, dk: 3, dv: 5),

        // PyTorch SDPA's is_causal: the diagonal is i, so with Tq < Tk the last query does not see the last keys.
        Softmax("causal_top_left", "naive", new() { ["causal"] = "true", ["causal_align"] = "top_left" }, b: 1, tq: 5, tk: 8, hq: 2, hkv: 2, dk: 4, dv: 4),
        Softmax("window_left_right", "naive", new() { ["window_left"] = "2", ["window_right"] = "1" }, b: 2, tq: 9, tk: 9, hq: 2, hkv: 1, dk: 4, dv: 3),
        // A window of width 1 on the bottom-right diagonal with Tq > Tk: the first rows' windows lie before key 0.
        Softmax("window_empty_rows", "naive", new() { ["window_left"] = "1", ["window_right"] = "0" }, b: 1, tq: 6, tk: 3, hq: 1, hkv: 1, dk: 3, dv: 2),
        // Scores of order ±10 capped at 2: softcap bites.
        Softmax("softcap", "naive", new() { ["softcap"] = "2", ["scale"] = "1" }, b: 1, tq: 5, tk: 7, hq: 2, hkv: 2, dk: 4, dv: 4, inputScale: 2),
        // ALiBi without causal on Tq ≠ Tk: the |i + Tk − Tq − j| form; with causal; and after the softcap.
        Softmax("alibi_cross", "naive", [], b: 2, tq: 4, tk: 7, hq: 2, hkv: 1, dk: 4, dv: 3, extra: r => new() { ["alibi_slopes"] = Slopes(r, 2) }),
        Softmax("alibi_causal", "naive", new() { ["causal"] = "true" }, b: 1, tq: 6, tk: 6, hq: 4, hkv: 2, dk: 4, dv: 4, extra: r => new() { ["alibi_slopes"] = Slopes(r, 4) }),
        Softmax("alibi_per_batch_softcap", "naive", new() { ["softcap"] = "1.5" }, b: 2, tq: 5, tk: 5, hq: 2, hkv: 2, dk: 4, dv: 4, inputScale: 2,
            extra: r => new() { ["alibi_slopes"] = r.Normal(0.5, 2, 2) }),
        // Additive mask [B,1,Tq,Tk] with −inf entries and one row all −inf (an empty row).
        Softmax("mask_additive", "naive", [], b: 2, tq: 4, tk: 6, hq: 2, hkv: 2, dk: 4, dv: 3,
            extra: r => new() { ["mask"] = Mask(r, [2, 1, 4, 6], additive: true, emptyRow: 5) }),
        // Bool mask [Tq,Tk] as float 0/1 (mask_type=bool), one row all false, with causal on top.
        Softmax("mask_bool", "naive", new() { ["mask_type"] = "bool", ["causal"] = "true" }, b: 1, tq: 6, tk: 6, hq: 2, hkv: 1, dk: 4, dv: 4,
            extra: r => new() { ["mask"] = Mask(r, [6, 6], additive: false, emptyRow: 4) }),
        Softmax("mask_per_head", "naive", [], b: 1, tq: 3, tk: 5, hq: 3, hkv: 1, dk: 2, dv: 2,
            extra: r => new() { ["mask"] = Mask(r, [1, 3, 3, 5], additive: true, emptyRow: -1) }),
        // Packed sequences (Tq_n, Tk_n) = (3, 5), (0, 1), (4, 0), (2, 2): each its own bottom-right diagonal.
        Softmax("varlen_causal", "naive", new() { ["causal"] = "true" }, b: 1, tq: 9, tk: 8, hq: 2, hkv: 1, dk: 4, dv: 4,
            extra: _ => new() { ["cu_seqlens_q"] = Ints(0, 3, 3, 7, 9), ["cu_seqlens_k"] = Ints(0, 5, 6, 6, 8) }),

        // Block sizes that divide nothing, with causal and a mask: FA2's online softmax.
        Softmax("tiled_causal_mask", "tiled", new() { ["causal"] = "true", ["block_q"] = "3", ["block_k"] = "4" }, b: 2, tq: 7, tk: 10, hq: 2, hkv: 2, dk: 4, dv: 4,
            extra: r => new() { ["mask"] = Mask(r, [7, 10], additive: true, emptyRow: -1) }),
        Softmax("tiled_window_gqa", "tiled", new() { ["window_left"] = "3", ["window_right"] = "2", ["block_q"] = "2", ["block_k"] = "3" }, b: 1, tq: 11, tk: 11, hq: 4, hkv: 2, dk: 5, dv: 3),
        Softmax("tiled_varlen_alibi", "tiled", new() { ["causal"] = "true", ["block_q"] = "2", ["block_k"] = "2" }, b: 1, tq: 7, tk: 9, hq: 2, hkv: 2, dk: 3, dv: 3,
            extra: r => new() { ["alibi_slopes"] = Slopes(r, 2), ["cu_seqlens_q"] = Ints(0, 4, 7), ["cu_seqlens_k"] = Ints(0, 4, 9) }),
        // More splits than keys: empty parts must merge to nothing.
        Softmax("split_empty_parts", "split", new() { ["causal"] = "true", ["num_splits"] = "7" }, b: 1, tq: 3, tk: 5, hq: 2, hkv: 1, dk: 4, dv: 4),
        Softmax("split_mask_softcap", "split", new() { ["num_splits"] = "3", ["softcap"] = "3" }, b: 2, tq: 4, tk: 8, hq: 2, hkv: 2, dk: 4, dv: 2, inputScale: 2,
            extra: r => new() { ["mask"] = Mask(r, [2, 2, 4, 8], additive: false, emptyRow: 3) }),

        // One new token per sequence against a contiguous cache with per-entry lengths.
        Decode("decode_contiguous", new() { ["causal"] = "true", ["num_splits"] = "2" }, b: 3, tq: 1, hq: 4, dk: 4,
            cache: r => (r.Normal(1, 3, 8, 2, 4), r.Normal(1, 3, 8, 2, 4), Ints(8, 3, 0), null)),
        // Two queries against a paged cache (3 slots a page, pages shuffled), GQA, ALiBi, a window.
        Decode("decode_paged", new() { ["causal"] = "true", ["window_left"] = "4", ["num_splits"] = "3" }, b: 2, tq: 2, hq: 2, dk: 4,
            cache: r => (r.Normal(1, 6, 3, 1, 4), r.Normal(1, 6, 3, 1, 3), Ints(7, 4), new Tensor([2, 3], [4, 0, 2, 5, 1, 3], DType.I32)),
            extra: r => new() { ["alibi_slopes"] = Slopes(r, 2) }),
    ];

    private static GoldenCase Softmax(string name, string variant, Dictionary<string, string> parameters,
        int b, int tq, int tk, int hq, int hkv, int dk, int dv, double inputScale = 1, Func<GoldenRandom, Dictionary<string, Tensor>>? extra = null) =>
        new("softmax", name, variant, parameters, random =>
        {
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(inputScale, b, tq, hq, dk),
                ["k"] = random.Normal(inputScale, b, tk, hkv, dk),
                ["v"] = random.Normal(1, b, tk, hkv, dv),
            };
            foreach (var (key, tensor) in extra?.Invoke(random) ?? [])
            {
                inputs[key] = tensor;
            }
            return inputs;
        });

    private static GoldenCase Decode(string name, Dictionary<string, string> parameters, int b, int tq, int hq, int dk,
        Func<GoldenRandom, (Tensor K, Tensor V, Tensor Lengths, Tensor? Table)> cache, Func<GoldenRandom, Dictionary<string, Tensor>>? extra = null) =>
        new("softmax", name, "decode", parameters, random =>
        {
            var (k, v, lengths, table) = cache(random);
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, b, tq, hq, dk),
                ["k_cache"] = k,
                ["v_cache"] = v,
                ["cache_seqlens"] = lengths,
            };
            if (table is not null)
            {
                inputs["block_table"] = table;
            }
            foreach (var (key, tensor) in extra?.Invoke(random) ?? [])
            {
                inputs[key] = tensor;
            }
            return inputs;
        });

    /// <summary>ALiBi slopes in (0, 1).</summary>
    private static Tensor Slopes(GoldenRandom random, int hq) =>
        new([hq], Enumerable.Range(0, hq).Select(_ => random.NextUniform()).ToArray());

    /// <summary>
    /// A mask keeping about 70% of keys: additive (values in [−1, 1) or −inf) or bool (1/0 as floats); row
    /// <paramref name="emptyRow"/> (of the flattened rows, −1 for none) masked entirely.
    /// </summary>
    private static Tensor Mask(GoldenRandom random, int[] shape, bool additive, int emptyRow)
    {
        var data = new double[Tensor.ElementCount(shape)];
        int rowLength = shape[^1];
        for (int n = 0; n < data.Length; n++)
        {
            bool keep = random.NextUniform() < 0.7 && n / rowLength != emptyRow;
            data[n] = additive ? (keep ? 2 * random.NextUniform() - 1 : double.NegativeInfinity) : keep ? 1 : 0;
        }
        return new Tensor(shape, data);
    }

    private static Tensor Ints(params double[] values) => new([values.Length], values, DType.I32);
}
