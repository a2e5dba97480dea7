using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>Golden cases of the softmax family's variants: sparse (block, Longformer, BigBird), MLA and forgetting attention.</summary>
internal static class SoftmaxVariantsCases
{
    public static IEnumerable<GoldenCase> All =>
    [
        // sparse: a per-head layout with blocks that do not divide T, Tq ≠ Tk, GQA.
        Sparse("block_per_head", "block", new() { ["block_q"] = "3", ["block_k"] = "4" }, tq: 8, tk: 10, hq: 2, hkv: 1, layoutHeads: 2, global: []),
        // A layout shared by the heads ([1,…]), causal on top.
        Sparse("block_shared_causal", "block", new() { ["block_q"] = "2", ["block_k"] = "2", ["causal"] = "true" }, tq: 8, tk: 8, hq: 4, hkv: 2, layoutHeads: 1, global: []),
        // Block row 1 is empty: its queries give o = 0, lse = −inf.
        new("sparse", "block_empty_row", "block", new Dictionary<string, string> { ["block_q"] = "2", ["block_k"] = "3" }, random =>
            new Dictionary<string, Tensor>(Qkv(random, b: 1, tq: 6, tk: 6, hq: 1, hkv: 1, dk: 4, dv: 3))
            {
                ["block_mask"] = new Tensor([1, 3, 2], [1, 0, 0, 0, 1, 1], DType.I32),
            }),
        Sparse("longformer", "longformer", new() { ["window"] = "2" }, tq: 12, tk: 12, hq: 2, hkv: 2, layoutHeads: 0, global: [0, 7]),
        // Causal Longformer with Tq < Tk: the window is centred on each query's own key position i + Tk − Tq.
        Sparse("longformer_causal_cross", "longformer", new() { ["window"] = "3", ["causal"] = "true" }, tq: 5, tk: 9, hq: 2, hkv: 1, layoutHeads: 0, global: [1]),
        // BigBird-ITC: the first and last blocks of 3 are global, a 3-block window, random blocks per head.
        Sparse("bigbird", "bigbird", new() { ["block_q"] = "3", ["block_k"] = "3", ["window_blocks"] = "1" }, tq: 15, tk: 15, hq: 2, hkv: 2, layoutHeads: 2, global: [0, 1, 2, 12, 13, 14]),
        Sparse("bigbird_causal_shared", "bigbird", new() { ["block_q"] = "2", ["block_k"] = "2", ["window_blocks"] = "0", ["causal"] = "true" }, tq: 10, tk: 10, hq: 2, hkv: 1, layoutHeads: 1, global: [0]),

        Mla("naive", "naive", [], tq: 3, sk: 7, stacked: false),
        Mla("absorbed", "absorbed", [], tq: 3, sk: 7, stacked: false),
        // Decoding two queries against a cache, causal bottom-right, weights as DeepSeek-V3's wkv_b.
        Mla("naive_causal_wkv_b", "naive", new() { ["causal"] = "true" }, tq: 2, sk: 6, stacked: true),
        Mla("absorbed_causal_wkv_b", "absorbed", new() { ["causal"] = "true" }, tq: 2, sk: 6, stacked: true),
        // More queries than cache entries under causal: the first rows see nothing (o = 0, lse = −inf).
        Mla("absorbed_empty_rows_scale", "absorbed", new() { ["causal"] = "true", ["scale"] = "0.25" }, tq: 5, sk: 3, stacked: false),

        Forgetting("naive", "naive", [], hq: 2, hkv: 2, strong: false),
        Forgetting("tiled", "tiled", new() { ["block_q"] = "4", ["block_k"] = "3" }, hq: 2, hkv: 2, strong: false),
        Forgetting("naive_gqa_scale", "naive", new() { ["scale"] = "0.4" }, hq: 4, hkv: 2, strong: false),
        // log forget gates of −20 per step: the bias reaches −20·(T−1) and stays exact.
        Forgetting("tiled_strong_gates", "tiled", new() { ["block_q"] = "3", ["block_k"] = "5" }, hq: 2, hkv: 1, strong: true),
        // Varlen: B = 1 holding sequences of 4, 1 and 6 steps; each starts afresh.
        ForgettingVarlen("naive_varlen", "naive", []),
        ForgettingVarlen("tiled_varlen", "tiled", new() { ["block_q"] = "2", ["block_k"] = "3" }),
    ];

    private static GoldenCase Sparse(string name, string variant, Dictionary<string, string> parameters,
        int tq, int tk, int hq, int hkv, int layoutHeads, int[] global) =>
        new("sparse", name, variant, parameters, random =>
        {
            var inputs = new Dictionary<string, Tensor>(Qkv(random, b: 2, tq, tk, hq, hkv, dk: 8, dv: 4));
            if (layoutHeads > 0)
            {
                int bq = int.Parse(parameters["block_q"], System.Globalization.CultureInfo.InvariantCulture);
                int bk = int.Parse(parameters["block_k"], System.Globalization.CultureInfo.InvariantCulture);
                int[] shape = [layoutHeads, (tq + bq - 1) / bq, (tk + bk - 1) / bk];
                var cells = new double[Tensor.ElementCount(shape)];
                for (int n = 0; n < cells.Length; n++)
                {
                    cells[n] = random.NextUniform() < 0.5 ? 1 : 0;
                }
                inputs["block_mask"] = new Tensor(shape, cells, DType.I32);
            }
            if (global.Length > 0)
            {
                inputs["global_tokens"] = new Tensor([global.Length], global.Select(x => (double)x).ToArray(), DType.I64);
            }
            return inputs;
        });

    private static GoldenCase Mla(string name, string variant, Dictionary<string, string> parameters, int tq, int sk, bool stacked) =>
        new("mla", name, variant, parameters, random =>
        {
            const int b = 2, h = 2, dn = 4, dr = 2, dc = 8, dv = 3;
            var inputs = new Dictionary<string, Tensor>
            {
                ["q_nope"] = random.Normal(1, b, tq, h, dn),
                ["q_pe"] = random.Normal(1, b, tq, h, dr),
                ["c_kv"] = random.Normal(1, b, sk, dc),
                ["k_pe"] = random.Normal(1, b, sk, dr),
            };
            // Up-projections of size 1/√Dc keep the expanded keys and values O(1).
            double w = 1 / Math.Sqrt(dc);
            if (stacked)
            {
                inputs["wkv_b"] = random.Normal(w, h, dn + dv, dc);
            }
            else
            {
                inputs["w_uk"] = random.Normal(w, h, dn, dc);
                inputs["w_uv"] = random.Normal(w, h, dv, dc);
            }
            return inputs;
        });

    private static GoldenCase Forgetting(string name, string variant, Dictionary<string, string> parameters, int hq, int hkv, bool strong) =>
        new("forgetting", name, variant, parameters, random =>
        {
            const int b = 2, t = 11;
            var inputs = new Dictionary<string, Tensor>(Qkv(random, b, t, t, hq, hkv, dk: 8, dv: 4));
            // FoX's gate g = log σ(x) = −softplus(−x), x normal around 1; or −20 everywhere for the strong case.
            Tensor x = random.Normal(2, b, t, hq);
            inputs["g"] = new Tensor(x.ShapeArray(), x.Data.Select(z => strong ? -20 : -Math.Log(1 + Math.Exp(-(z + 1)))).ToArray());
            return inputs;
        });

    private static GoldenCase ForgettingVarlen(string name, string variant, Dictionary<string, string> parameters) =>
        new("forgetting", name, variant, parameters, random =>
        {
            const int t = 11, hq = 2;
            var inputs = new Dictionary<string, Tensor>(Qkv(random, b: 1, t, t, hq, hkv: 1, dk: 4, dv: 4));
            Tensor x = random.Normal(2, 1, t, hq);
            inputs["g"] = new Tensor(x.ShapeArray(), x.Data.Select(z => -Math.Log(1 + Math.Exp(-(z + 1)))).ToArray());
            inputs["cu_seqlens"] = new Tensor([4], [0, 4, 5, 11], DType.I32);
            return inputs;
        });

    private static Dictionary<string, Tensor> Qkv(GoldenRandom random, int b, int tq, int tk, int hq, int hkv, int dk, int dv) => new()
    {
        ["q"] = random.Normal(1, b, tq, hq, dk),
        ["k"] = random.Normal(1, b, tk, hkv, dk),
        ["v"] = random.Normal(1, b, tk, hkv, dv),
    };
}
