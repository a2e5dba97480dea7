using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>
/// Golden cases of the power and hybrid family: power (every variant, degrees 1 to 4, gates, unnormalised, strong
/// decay, varlen with state), nats_l (both variants with mixed routes, a chunk size that does not divide T, an
/// initial state, no decay through softmax chunks) and based (every variant, a window shorter than T, varlen with state).
/// </summary>
internal static class HybridCases
{
    private static readonly string[] s_powerVariants = ["quadratic", "recurrent", "chunked"];
    private static readonly string[] s_basedVariants = ["recurrent", "parallel", "chunked"];

    public static IEnumerable<GoldenCase> All =>
    [
        .. s_powerVariants.Select(variant =>
            Power(variant, variant, new() { ["chunk_size"] = "3" }, GateKind.Mild, b: 2, t: 8, h: 2, k: 3, v: 3)),
        Power("deg4_gated", "chunked", new() { ["deg"] = "4", ["chunk_size"] = "4" }, GateKind.Mild, b: 1, t: 9, h: 2, k: 3, v: 2),
        Power("deg1_unnormalized", "recurrent", new() { ["deg"] = "1", ["normalize"] = "false" }, GateKind.None, b: 1, t: 7, h: 1, k: 4, v: 3),
        Power("deg3_ungated_scale", "quadratic", new() { ["deg"] = "3", ["normalize"] = "false", ["scale"] = "0.5" }, GateKind.None, b: 1, t: 6, h: 2, k: 2, v: 2),
        Power("strong_decay", "chunked", new() { ["chunk_size"] = "48" }, GateKind.Strong, b: 1, t: 48, h: 1, k: 2, v: 2),
        Power("varlen_initial_state", "chunked", new() { ["chunk_size"] = "3" }, GateKind.Mild, b: 1, t: 10, h: 2, k: 2, v: 2, cuSeqlens: [0, 4, 4, 10]),

        NatsL("recurrent", "recurrent", chunk: 3, b: 2, t: 10, h: 2, k: 3, v: 3, initialState: false),
        NatsL("chunked", "chunked", chunk: 3, b: 2, t: 10, h: 2, k: 3, v: 3, initialState: false),
        NatsL("initial_state", "chunked", chunk: 4, b: 1, t: 12, h: 2, k: 3, v: 2, initialState: true),
        NatsL("no_decay", "recurrent", chunk: 4, b: 1, t: 12, h: 2, k: 3, v: 2, initialState: true, decay: false),

        .. s_basedVariants.Select(variant =>
            Based(variant, variant, new() { ["window"] = "3", ["chunk_size"] = "4" }, b: 2, t: 9, h: 2, k: 2, v: 3)),
        Based("varlen_initial_state", "chunked", new() { ["window"] = "2", ["chunk_size"] = "3" }, b: 1, t: 10, h: 1, k: 2, v: 2, cuSeqlens: [0, 6, 10]),
    ];

    private enum GateKind { None, Mild, Strong }

    private static GoldenCase Power(string name, string variant, Dictionary<string, string> parameters, GateKind gates,
        int b, int t, int h, int k, int v, double[]? cuSeqlens = null) =>
        new("power", name, variant, parameters, random =>
        {
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, b, t, h, k),
                ["k"] = random.Normal(1, b, t, h, k),
                ["v"] = random.Normal(1, b, t, h, v),
            };
            if (gates != GateKind.None)
            {
                var g = Tensor.Zeros(b, t, h);
                for (int i = 0; i < g.Length; i++)
                {
                    g.Data[i] = gates == GateKind.Strong ? -20 + 10 * random.NextUniform() : -Math.Log(1 + Math.Exp(-random.NextNormal()));
                }
                inputs["g"] = g;
            }
            if (cuSeqlens is not null)
            {
                // A state as a real run leaves it: the sums of φ(k) v and φ(k) over three earlier keys (z > 0 for even deg).
                int n = cuSeqlens.Length - 1;
                var prefix = new Forms.Hybrid.Power().Run("recurrent",
                    new Dictionary<string, Tensor> { ["q"] = random.Normal(1, n, 3, h, k), ["k"] = random.Normal(1, n, 3, h, k), ["v"] = random.Normal(1, n, 3, h, v) },
                    new Forms.FormParameters(new Dictionary<string, string> { ["deg"] = parameters.GetValueOrDefault("deg", "2") }));
                inputs["initial_state"] = prefix["final_state"];
                inputs["initial_normalizer"] = prefix["final_normalizer"];
                inputs["cu_seqlens"] = new Tensor([n + 1], cuSeqlens, DType.I64);
            }
            return inputs;
        });

    private static GoldenCase NatsL(string name, string variant, int chunk, int b, int t, int h, int k, int v, bool initialState, bool decay = true)
    {
        var parameters = new Dictionary<string, string> { ["chunk_size"] = chunk.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (!decay)
        {
            parameters["decay_for_non_gdn_blocks"] = "false";
        }
        return new("nats_l", name, variant, parameters, random =>
        {
            int chunks = (t + chunk - 1) / chunk;
            var g = Tensor.Zeros(b, t, h);
            var beta = Tensor.Zeros(b, t, h);
            for (int i = 0; i < g.Length; i++)
            {
                g.Data[i] = -Math.Log(1 + Math.Exp(-random.NextNormal()));
                beta.Data[i] = 1 / (1 + Math.Exp(-random.NextNormal()));
            }
            var route = Tensor.Zeros(b, chunks, h);
            for (int i = 0; i < route.Length; i++)
            {
                route.Data[i] = random.NextUniform() < 0.5 ? 1 : 0;
            }
            route.Data[0] = 1; // at least one chunk of each kind
            route.Data[^1] = 0;
            var inputs = new Dictionary<string, Tensor>
            {
                // keys of norm ≈ 1, as Gated DeltaNet's L2-normalised keys, so the delta rule stays contractive.
                ["q"] = random.Normal(1, b, t, h, k),
                ["k"] = random.Normal(1 / Math.Sqrt(k), b, t, h, k),
                ["v"] = random.Normal(1, b, t, h, v),
                ["g"] = g,
                ["beta"] = beta,
                ["route"] = route,
            };
            if (initialState)
            {
                inputs["initial_state"] = random.Normal(1, b, h, k, v);
            }
            return inputs;
        });
    }

    private static GoldenCase Based(string name, string variant, Dictionary<string, string> parameters, int b, int t, int h, int k, int v,
        double[]? cuSeqlens = null) =>
        new("based", name, variant, parameters, random =>
        {
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, b, t, h, k),
                ["k"] = random.Normal(1, b, t, h, k),
                ["v"] = random.Normal(1, b, t, h, v),
            };
            if (cuSeqlens is not null)
            {
                // The linear branch's state as a run over two earlier keys leaves it (z > 0: taylor2's φ(k)·φ(q) > 0).
                int n = cuSeqlens.Length - 1;
                var prefix = new Forms.Linear.Linear().Run("recurrent",
                    new Dictionary<string, Tensor> { ["q"] = random.Normal(1, n, 2, h, k), ["k"] = random.Normal(1, n, 2, h, k), ["v"] = random.Normal(1, n, 2, h, v) },
                    new Forms.FormParameters(new Dictionary<string, string> { ["feature_map"] = "taylor2" }));
                inputs["initial_state"] = prefix["final_state"];
                inputs["initial_normalizer"] = prefix["final_normalizer"];
                inputs["cu_seqlens"] = new Tensor([n + 1], cuSeqlens, DType.I64);
            }
            return inputs;
        });
}
