using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>
/// Golden cases of the delta-rule family: every form and variant, with T not a multiple of the chunk size, per-value β,
/// GVA, in-kernel L2 norm, strong gates, an initial state with varlen, and fla's alias names (kda's g, rwkv7's r and w).
/// β = sigmoid(x) and gates = log sigmoid(x) of normal x, as the models produce them; rwkv7's a = −κ̂, b = κ̂ ⊙ sigmoid(x)
/// with κ̂ a unit vector, as RWKV-7 builds them.
/// </summary>
internal static class DeltaCases
{
    private static readonly Dictionary<string, string> L2 = new() { ["use_qk_l2norm_in_kernel"] = "true" };

    private static Dictionary<string, string> L2With(string key, string value) => new(L2) { [key] = value };

    public static IEnumerable<GoldenCase> All =>
    [
        Delta("delta_rule", "recurrent", "recurrent", L2, new Shape(2, 8, 2, 1, 8, 8)),
        Delta("delta_rule", "chunked_c3", "chunked", L2With("chunk_size", "3"), new Shape(2, 8, 2, 1, 8, 8)),
        Delta("delta_rule", "parallel", "parallel", L2, new Shape(2, 8, 2, 1, 8, 8)),
        Delta("delta_rule", "per_value_beta_chunked", "chunked", L2With("chunk_size", "4"), new Shape(1, 9, 2, 1, 4, 5) { PerValueBeta = true }),
        Delta("delta_rule", "per_value_beta_parallel", "parallel", L2, new Shape(1, 9, 2, 1, 4, 5) { PerValueBeta = true }),
        Delta("delta_rule", "unnormalised_scale", "recurrent", new() { ["scale"] = "0.5" }, new Shape(1, 6, 1, 1, 3, 4) { KeyScale = 0.5 }),
        Delta("delta_rule", "varlen_initial_state", "chunked", L2With("chunk_size", "2"), new Shape(1, 11, 2, 1, 4, 4) { CuSeqlens = [0, 3, 3, 11] }),

        Delta("gated_delta_rule", "recurrent", "recurrent", L2, new Shape(2, 8, 2, 1, 8, 8) { Gate = "g" }),
        Delta("gated_delta_rule", "chunked_c5", "chunked", L2With("chunk_size", "5"), new Shape(2, 8, 2, 1, 8, 8) { Gate = "g" }),
        Delta("gated_delta_rule", "gva_per_value_beta", "chunked", L2With("chunk_size", "4"), new Shape(1, 10, 1, 3, 4, 3) { Gate = "g", PerValueBeta = true }),
        Delta("gated_delta_rule", "strong_gates", "chunked", L2With("chunk_size", "8"), new Shape(1, 12, 2, 1, 4, 4) { Gate = "g", GateScale = 20 }),
        Delta("gated_delta_rule", "varlen_initial_state", "recurrent", L2, new Shape(1, 11, 2, 1, 4, 4) { Gate = "g", CuSeqlens = [0, 5, 11] }),

        Delta("kda", "recurrent", "recurrent", L2, new Shape(2, 8, 2, 1, 8, 8) { Gate = "gk" }),
        Delta("kda", "chunked_c3", "chunked", L2With("chunk_size", "3"), new Shape(2, 8, 2, 1, 8, 8) { Gate = "gk" }),
        Delta("kda", "gva_fla_names", "chunked", L2With("chunk_size", "4"), new Shape(1, 9, 2, 2, 4, 4) { Gate = "gk", GateName = "g" }),
        Delta("kda", "strong_gates_varlen", "chunked", L2With("chunk_size", "4"), new Shape(1, 12, 1, 1, 4, 4) { Gate = "gk", GateScale = 20, CuSeqlens = [0, 7, 12] }),

        Rwkv7("recurrent", "recurrent", [], new Shape(2, 8, 2, 1, 8, 8)),
        Rwkv7("chunked_c3", "chunked", new() { ["chunk_size"] = "3" }, new Shape(2, 8, 2, 1, 8, 8)),
        Rwkv7("chunk_rwkv7_names_scale_1", "chunked", new() { ["chunk_size"] = "4", ["scale"] = "1" }, new Shape(1, 10, 2, 1, 4, 6) { FlaRwkvNames = true }),
        Rwkv7("varlen_initial_state", "chunked", new() { ["chunk_size"] = "5" }, new Shape(1, 11, 1, 1, 4, 4) { CuSeqlens = [0, 4, 11], GateScale = 5 }),
    ];

    /// <summary>Sizes and options of one case: B, T, H (query/key heads), G (value heads per key head), K, V.</summary>
    private sealed record Shape(int B, int T, int H, int G, int K, int V)
    {
        public bool PerValueBeta { get; init; }
        public string? Gate { get; init; }
        public string? GateName { get; init; }
        public double GateScale { get; init; } = 1;
        public double KeyScale { get; init; } = 1;
        public int[]? CuSeqlens { get; init; }
        public bool FlaRwkvNames { get; init; }
        public int HV => H * G;
        public int N => CuSeqlens is null ? B : CuSeqlens.Length - 1;
    }

    private static GoldenCase Delta(string form, string name, string variant, Dictionary<string, string> parameters, Shape s) =>
        new(form, name, variant, parameters, random =>
        {
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, s.B, s.T, s.H, s.K),
                ["k"] = random.Normal(s.KeyScale, s.B, s.T, s.H, s.K),
                ["v"] = random.Normal(1, s.B, s.T, s.HV, s.V),
                ["beta"] = Map(random.Normal(1, s.PerValueBeta ? [s.B, s.T, s.HV, s.V] : [s.B, s.T, s.HV]), Sigmoid),
            };
            if (s.Gate == "g")
            {
                inputs["g"] = Map(random.Normal(1, s.B, s.T, s.HV), x => s.GateScale * LogSigmoid(x));
            }
            else if (s.Gate == "gk")
            {
                inputs[s.GateName ?? "gk"] = Map(random.Normal(1, s.B, s.T, s.HV, s.K), x => s.GateScale * LogSigmoid(x));
            }
            AddStateAndOffsets(inputs, random, s);
            return inputs;
        });

    private static GoldenCase Rwkv7(string name, string variant, Dictionary<string, string> parameters, Shape s) =>
        new("rwkv7", name, variant, parameters, random =>
        {
            Tensor kappa = random.Normal(1, s.B, s.T, s.H, s.K);
            for (int row = 0; row < s.B * s.T * s.H; row++)
            {
                Forms.Delta.QkL2Norm.Normalise(kappa.Data.AsSpan(row * s.K, s.K));
            }
            Tensor learningRate = Map(random.Normal(1, s.B, s.T, s.H, s.K), Sigmoid);
            var inputs = new Dictionary<string, Tensor>
            {
                [s.FlaRwkvNames ? "r" : "q"] = random.Normal(1, s.B, s.T, s.H, s.K),
                ["k"] = random.Normal(1 / Math.Sqrt(s.K), s.B, s.T, s.H, s.K),
                ["v"] = random.Normal(1, s.B, s.T, s.H, s.V),
                ["a"] = Map(kappa, x => -x),
                ["b"] = new Tensor(kappa.ShapeArray(), kappa.Data.Zip(learningRate.Data, (x, y) => x * y).ToArray()),
                [s.FlaRwkvNames ? "w" : "gk"] = Map(random.Normal(1, s.B, s.T, s.H, s.K), x => s.GateScale * LogSigmoid(x)),
            };
            AddStateAndOffsets(inputs, random, s);
            return inputs;
        });

    private static void AddStateAndOffsets(Dictionary<string, Tensor> inputs, GoldenRandom random, Shape s)
    {
        if (s.CuSeqlens is { } cu)
        {
            inputs["initial_state"] = random.Normal(1, s.N, s.HV, s.K, s.V);
            inputs["cu_seqlens"] = new Tensor([cu.Length], cu.Select(x => (double)x).ToArray(), DType.I64);
        }
    }

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    private static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));

    private static Tensor Map(Tensor x, Func<double, double> f) => new(x.ShapeArray(), x.Data.Select(f).ToArray());
}
