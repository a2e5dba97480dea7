using AttentionReference.Tensors;

namespace AttentionReference.Golden.Cases;

/// <summary>Golden cases of rwkv6 and mlstm (gated linear family): every variant, a chunk size that does not divide T,
/// varlen with an empty sequence, states in, strong decay, and each option.</summary>
internal static class RwkvMlstmCases
{
    public static IEnumerable<GoldenCase> All =>
    [
        Rwkv6("recurrent", "recurrent", [], b: 2, t: 8, h: 2, k: 4, v: 4, withState: true),
        Rwkv6("parallel", "parallel", [], b: 2, t: 8, h: 2, k: 4, v: 4, withState: true),
        // T = 10 in chunks of 3: the last chunk has one step.
        Rwkv6("chunked_c3", "chunked", new() { ["chunk_size"] = "3" }, b: 1, t: 10, h: 2, k: 4, v: 3, withState: true),
        // Sequences of 3, 0 and 6 steps packed along T; each has its own state row.
        Rwkv6("varlen_chunked", "chunked", new() { ["chunk_size"] = "4" }, b: 1, t: 9, h: 2, k: 4, v: 4, withState: true,
            cuSeqlens: [0, 3, 3, 9]),
        // Log decays down to −20 per step: the state keeps almost nothing from one step to the next.
        Rwkv6("strong_decay_parallel", "parallel", [], b: 1, t: 8, h: 1, k: 4, v: 4, withState: false, strong: true),
        Rwkv6("scale_recurrent", "recurrent", new() { ["scale"] = "0.5" }, b: 1, t: 6, h: 1, k: 3, v: 5, withState: false),

        Mlstm("recurrent", "recurrent", [], b: 2, t: 8, h: 2, k: 4, v: 4, withState: false),
        Mlstm("parallel", "parallel", [], b: 2, t: 8, h: 2, k: 4, v: 4, withState: true),
        Mlstm("chunked_c3", "chunked", new() { ["chunk_size"] = "3" }, b: 1, t: 10, h: 2, k: 4, v: 3, withState: true),
        Mlstm("varlen_chunked", "chunked", new() { ["chunk_size"] = "4" }, b: 1, t: 9, h: 2, k: 4, v: 4, withState: true,
            cuSeqlens: [0, 4, 4, 9]),
        // mlstm_kernels' eps = 1e-6 in the stabilised denominator.
        Mlstm("eps_recurrent", "recurrent", new() { ["eps"] = "1e-6" }, b: 1, t: 8, h: 2, k: 4, v: 4, withState: true),
        // The exponential forget gate: f is log f itself (here ≤ 0).
        Mlstm("exp_gate_parallel", "parallel", new() { ["forget_gate"] = "exp" }, b: 1, t: 8, h: 2, k: 4, v: 4, withState: false),
        // Forget pre-activations around −10 (log f ≈ −10 per step) with input gates up to ±8.
        Mlstm("strong_forget_chunked", "chunked", new() { ["chunk_size"] = "5", ["scale"] = "0.3" }, b: 1, t: 12, h: 1, k: 3, v: 5,
            withState: true, strong: true),
    ];

    private static GoldenCase Rwkv6(string name, string variant, Dictionary<string, string> parameters,
        int b, int t, int h, int k, int v, bool withState, bool strong = false, double[]? cuSeqlens = null) =>
        new("rwkv6", name, variant, parameters, random =>
        {
            int n = cuSeqlens is null ? b : cuSeqlens.Length - 1;
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, b, t, h, k),
                ["k"] = random.Normal(1, b, t, h, k),
                ["v"] = random.Normal(1, b, t, h, v),
                // fla's layer passes w = −exp(raw); strong decay draws w uniformly in [−20, 0].
                ["w"] = strong ? Uniform(random, -20, 0, b, t, h, k)
                               : Map(random.Normal(1, b, t, h, k), x => -Math.Exp(x - 1)),
                ["u"] = random.Normal(1, h, k),
            };
            if (withState)
            {
                inputs["initial_state"] = random.Normal(1, n, h, k, v);
            }
            if (cuSeqlens is not null)
            {
                inputs["cu_seqlens"] = new Tensor([cuSeqlens.Length], cuSeqlens, DType.I64);
            }
            return inputs;
        });

    private static GoldenCase Mlstm(string name, string variant, Dictionary<string, string> parameters,
        int b, int t, int h, int k, int v, bool withState, bool strong = false, double[]? cuSeqlens = null) =>
        new("mlstm", name, variant, parameters, random =>
        {
            int n = cuSeqlens is null ? b : cuSeqlens.Length - 1;
            bool expGate = parameters.GetValueOrDefault("forget_gate") == "exp";
            var inputs = new Dictionary<string, Tensor>
            {
                ["q"] = random.Normal(1, b, t, h, k),
                ["k"] = random.Normal(1, b, t, h, k),
                ["v"] = random.Normal(1, b, t, h, v),
                ["i"] = random.Normal(strong ? 4 : 2, b, t, h),
                ["f"] = expGate ? Map(random.Normal(1, b, t, h), x => -Math.Abs(x))
                      : strong ? Map(random.Normal(1, b, t, h), x => x - 10)
                      : Map(random.Normal(1.5, b, t, h), x => x + 3),
            };
            if (withState)
            {
                inputs["initial_state"] = random.Normal(1, n, h, k, v);
                inputs["initial_normalizer"] = random.Normal(1, n, h, k);
                inputs["initial_max"] = random.Normal(1, n, h);
            }
            if (cuSeqlens is not null)
            {
                inputs["cu_seqlens"] = new Tensor([cuSeqlens.Length], cuSeqlens, DType.I64);
            }
            return inputs;
        });

    private static Tensor Uniform(GoldenRandom random, double low, double high, params int[] shape)
    {
        var x = Tensor.Zeros(shape);
        for (int i = 0; i < x.Length; i++)
        {
            x.Data[i] = low + (high - low) * random.NextUniform();
        }
        return x;
    }

    private static Tensor Map(Tensor x, Func<double, double> f)
    {
        for (int i = 0; i < x.Length; i++)
        {
            x.Data[i] = f(x.Data[i]);
        }
        return x;
    }
}
