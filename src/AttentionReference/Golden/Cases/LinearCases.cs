using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>
/// Golden cases of the linear and gated linear (diagonal decay) families: every variant of every form, each feature
/// map, normalisation, non-causal, initial state with varlen, chunk sizes that do not divide T, and strong decay
/// (log gates of −20 … −10 per step over 48 steps, past the point where a factorised exp(G_i)·exp(−G_j) overflows).
/// </summary>
internal static class LinearCases
{
    private static readonly string[] s_variants = ["recurrent", "parallel", "chunked"];

    public static IEnumerable<GoldenCase> All =>
    [
        // linear: one case per variant with the identity map, then one per feature map and option.
        .. s_variants.Select(variant => Linear("identity_" + variant, variant, new() { ["chunk_size"] = "3" }, b: 2, t: 8, h: 2, k: 4, v: 4)),
        Linear("elu1_normalized", "recurrent", new() { ["feature_map"] = "elu1", ["normalize"] = "true" }, b: 1, t: 7, h: 2, k: 4, v: 3),
        Linear("relu", "parallel", new() { ["feature_map"] = "relu" }, b: 1, t: 6, h: 1, k: 5, v: 2),
        Linear("taylor2_normalized", "chunked", new() { ["feature_map"] = "taylor2", ["normalize"] = "true", ["chunk_size"] = "4" }, b: 1, t: 9, h: 2, k: 3, v: 3),
        Linear("performer", "recurrent", new() { ["feature_map"] = "performer", ["normalize"] = "true" }, b: 1, t: 6, h: 2, k: 4, v: 3, features: 6),
        Linear("non_causal", "parallel", new() { ["causal"] = "false", ["feature_map"] = "elu1", ["normalize"] = "true" }, b: 2, t: 5, h: 1, k: 3, v: 2),
        Linear("scale", "chunked", new() { ["scale"] = "0.25", ["chunk_size"] = "2" }, b: 1, t: 5, h: 1, k: 2, v: 2),
        LinearVarlenWithState(),

        // the gated forms: every variant (chunk size 3 does not divide T = 10), then their options and edges.
        .. s_variants.Select(variant => Gated("retention", variant, variant, new() { ["chunk_size"] = "3" }, GateKind.None, b: 2, t: 10, h: 3, k: 4, v: 3)),
        Gated("retention", "gamma_and_scale", "chunked", new() { ["chunk_size"] = "4", ["scale"] = "1" }, GateKind.Gamma, b: 1, t: 9, h: 2, k: 3, v: 2),
        .. s_variants.Select(variant => Gated("simple_gla", variant, variant, new() { ["chunk_size"] = "3" }, GateKind.Mild, b: 2, t: 10, h: 2, k: 4, v: 3)),
        Gated("simple_gla", "strong_decay", "chunked", new() { ["chunk_size"] = "48" }, GateKind.Strong, b: 1, t: 48, h: 1, k: 2, v: 2),
        Gated("simple_gla", "varlen_initial_state", "chunked", new() { ["chunk_size"] = "4" }, GateKind.Mild, b: 1, t: 11, h: 2, k: 3, v: 2, cuSeqlens: [0, 4, 4, 11]),
        .. s_variants.Select(variant => Gated("gla", variant, variant, new() { ["chunk_size"] = "3" }, GateKind.Mild, b: 2, t: 10, h: 2, k: 4, v: 3)),
        Gated("gla", "gv", "chunked", new() { ["chunk_size"] = "4" }, GateKind.MildWithGv, b: 1, t: 9, h: 2, k: 3, v: 4),
        Gated("gla", "gv_recurrent", "recurrent", [], GateKind.MildWithGv, b: 1, t: 9, h: 2, k: 3, v: 4),
        Gated("gla", "strong_decay_parallel", "parallel", [], GateKind.Strong, b: 1, t: 48, h: 1, k: 2, v: 2),
        Gated("gla", "strong_decay_chunked", "chunked", new() { ["chunk_size"] = "48" }, GateKind.Strong, b: 1, t: 48, h: 1, k: 2, v: 2),
        Gated("gla", "varlen_initial_state", "chunked", new() { ["chunk_size"] = "5" }, GateKind.Mild, b: 1, t: 12, h: 2, k: 3, v: 2, cuSeqlens: [0, 5, 12]),
        .. s_variants.Select(variant => Gated("hgrn2", variant, variant, new() { ["chunk_size"] = "3" }, GateKind.Mild, b: 2, t: 10, h: 2, k: 4, v: 3)),
        Gated("hgrn2", "mixed_gates", "chunked", new() { ["chunk_size"] = "7" }, GateKind.Mixed, b: 1, t: 20, h: 2, k: 3, v: 2),
    ];

    private enum GateKind { None, Gamma, Mild, MildWithGv, Strong, Mixed }

    private static GoldenCase Linear(string name, string variant, Dictionary<string, string> parameters,
        int b, int t, int h, int k, int v, int features = 0) =>
        new("linear", name, variant, parameters, random =>
        {
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, b, t, h, k),
                ["k"] = random.Normal(1, b, t, h, k),
                ["v"] = random.Normal(1, b, t, h, v),
            };
            if (features > 0)
            {
                inputs["proj"] = random.Normal(1, features, k);
            }
            return inputs;
        });

    /// <summary>Three packed sequences (one empty) with S and z given, normalised with elu1: z positive, as a real state's.</summary>
    private static GoldenCase LinearVarlenWithState() =>
        new("linear", "varlen_initial_state", "chunked",
            new Dictionary<string, string> { ["feature_map"] = "elu1", ["normalize"] = "true", ["chunk_size"] = "3" }, random => new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, 1, 10, 2, 3),
                ["k"] = random.Normal(1, 1, 10, 2, 3),
                ["v"] = random.Normal(1, 1, 10, 2, 2),
                ["initial_state"] = random.Normal(1, 3, 2, 3, 2),
                ["initial_normalizer"] = Map(random.Normal(1, 3, 2, 3), x => 1 + Math.Abs(x)),
                ["cu_seqlens"] = new Tensor([4], [0, 3, 3, 10], DType.I64),
            });

    private static GoldenCase Gated(string form, string name, string variant, Dictionary<string, string> parameters, GateKind gates,
        int b, int t, int h, int k, int v, double[]? cuSeqlens = null) =>
        new(form, name, variant, parameters, random =>
        {
            var inputs = new Dictionary<string, Tensor> { ["q"] = random.Normal(1, b, t, h, k) };
            if (form != "hgrn2")
            {
                inputs["k"] = random.Normal(1, b, t, h, k);
            }
            inputs["v"] = random.Normal(1, b, t, h, v);
            int[] gateShape = form == "simple_gla" ? [b, t, h] : [b, t, h, k];
            string gateName = form == "simple_gla" ? "g" : "gk";
            switch (gates)
            {
                case GateKind.Gamma:
                    inputs["gamma"] = Map(random.Normal(1, h), x => 1 / (1 + Math.Exp(-2 - x))); // sigmoid: in (0, 1)
                    break;
                case GateKind.None:
                    break;
                default:
                    inputs[gateName] = Gates(random, gates, gateShape);
                    break;
            }
            if (gates == GateKind.MildWithGv)
            {
                inputs["gv"] = Gates(random, GateKind.Mild, b, t, h, v);
            }
            if (cuSeqlens is not null)
            {
                int n = cuSeqlens.Length - 1;
                inputs["initial_state"] = random.Normal(1, n, h, k, v);
                inputs["cu_seqlens"] = new Tensor([n + 1], cuSeqlens, DType.I64);
            }
            return inputs;
        });

    /// <summary>Log gates: logsigmoid of a normal (mild), −20 … −10 (strong), or tiny and large mixed.</summary>
    private static Tensor Gates(GoldenRandom random, GateKind kind, params int[] shape)
    {
        var g = Tensor.Zeros(shape);
        for (int i = 0; i < g.Length; i++)
        {
            g.Data[i] = kind switch
            {
                GateKind.Strong => -20 + 10 * random.NextUniform(),
                GateKind.Mixed => random.NextUniform() < 0.5 ? -Math.Pow(10, -8 + 4 * random.NextUniform()) : -10 - 10 * random.NextUniform(),
                _ => -Math.Log(1 + Math.Exp(-random.NextNormal())),
            };
        }
        return g;
    }

    private static Tensor Map(Tensor x, Func<double, double> f) => new(x.ShapeArray(), x.Data.Select(f).ToArray());
}
