using AttentionReference.Forms.Delta;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>
/// The laws of NAtS-L: its reductions to softmax and to Gated DeltaNet, the rule at a chunk's end, causality (a chunk's
/// own route never reaches its own outputs) and its two variants agreeing.
/// </summary>
public sealed class NatsLTests
{
    // The same sums in double along different paths (token by token against the WY chunked form and the tiled
    // softmax): a few ulps per term, relative to outputs of size ~1.
    private const double SameMathInDouble = 1e-12;

    /// <summary>A small problem: shapes, the routing chunk, the route kind (0 all linear, 1 all softmax, 2 mixed), gates, a seed.</summary>
    public sealed record NatsCase(int B, int T, int H, int K, int V, int ChunkSize, int Routes, bool WithState, bool Decay, bool StrongGates, int Seed)
    {
        public static Arbitrary<NatsCase> Arbitrary { get; } =
            (from b in Gen.Choose(1, 2)
             from t in Gen.Choose(1, 14)
             from h in Gen.Choose(1, 2)
             from k in Gen.Choose(1, 4)
             from v in Gen.Choose(1, 3)
             from chunk in Gen.Choose(1, 6)
             from routes in Gen.Choose(0, 2)
             from withState in Gen.Elements(true, false)
             from decay in Gen.Elements(true, false)
             from strong in Gen.Elements(false, false, true)
             from seed in Gen.Choose(0, int.MaxValue - 1)
             select new NatsCase(b, t, h, k, v, chunk, routes, withState, decay, strong, seed)).ToArbitrary();

        public int Chunks => (T + ChunkSize - 1) / ChunkSize;

        public (Tensor Q, Tensor K, Tensor V, Tensor G, Tensor Beta, Tensor Route, NatsLOptions Options) Inputs(Random random)
        {
            var g = PowerTests.LogGates(random, StrongGates, B, T, H);
            var beta = new Tensor([B, T, H], TestTensors.Normal(random, 1, B, T, H).Data.Select(x => 1 / (1 + Math.Exp(-x))).ToArray());
            var route = new Tensor([B, Chunks, H], Enumerable.Range(0, B * Chunks * H).Select(_ => Routes switch
            {
                0 => 0.0,
                1 => 1.0,
                _ => random.Next(2),
            }).ToArray());
            // Keys of norm ≈ 1 (as Gated DeltaNet's L2-normalised keys) keep the delta rule contractive.
            return (TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1 / Math.Sqrt(K), B, T, H, K), TestTensors.Normal(random, 1, B, T, H, V),
                g, beta, route, new NatsLOptions { InitialState = WithState ? TestTensors.Normal(random, 1, B, H, K, V) : null, DecayForNonGdnBlocks = Decay });
        }
    }

    private static bool Close(NatsLResult a, NatsLResult b, double tolerance) =>
        TestTensors.Close(a.OLinear, b.OLinear, tolerance) && TestTensors.Close(a.OSoftmax, b.OSoftmax, tolerance)
        && TestTensors.Close(a.FinalState, b.FinalState, tolerance);

    [Fact]
    public void The_chunked_form_equals_the_token_by_token_definition_for_any_routes_chunk_size_and_gates() =>
        PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
        {
            var (q, k, v, g, beta, route, options) = c.Inputs(new Random(c.Seed));
            // Strong gates (log decay down to −20 per step) stay exact: both sides take differences of log sums.
            return Close(NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options), NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options), SameMathInDouble);
        }));

    [Fact]
    public void Every_chunk_routed_to_gated_deltanet_gives_gated_delta_rule_and_softmax_inside_each_chunk() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var (q, k, v, g, beta, route, options) = (c with { Routes = 0 }).Inputs(new Random(c.Seed));
        var gdr = GatedDeltaRuleRecurrent(q, k, v, g, beta, options.InitialState);
        var withinChunks = new SoftmaxInputs(q, k, v) { Causal = true, Mask = SameChunk(c.T, c.ChunkSize), MaskType = "bool" }.Run("naive");
        var recurrent = NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options);
        return Close(recurrent, new NatsLResult(gdr.O, withinChunks.O, gdr.FinalState), SameMathInDouble)
            && Close(NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options), recurrent, SameMathInDouble);
    }));

    [Fact]
    public void Every_chunk_routed_to_softmax_gives_causal_softmax_and_gated_delta_rule_restarted_at_each_chunk() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var (q, k, v, g, beta, route, options) = (c with { Routes = 1 }).Inputs(new Random(c.Seed));
        var softmax = new SoftmaxInputs(q, k, v) { Causal = true }.Run("naive");
        // The linear branch: each chunk on its own from the initial state decayed to the chunk's start (δ = 1), or
        // from the initial state itself (δ = 0); a complete last chunk is then undone too.
        var oLinear = Tensor.Zeros(c.B, c.T, c.H, c.V);
        Tensor finalState = Tensor.Zeros(c.B, c.H, c.K, c.V);
        for (int start = 0; start < c.T; start += c.ChunkSize)
        {
            int end = Math.Min(c.T, start + c.ChunkSize);
            var part = GatedDeltaRuleRecurrent(PowerTests.Slice(q, start, end), PowerTests.Slice(k, start, end), PowerTests.Slice(v, start, end),
                PowerTests.Slice(g, start, end), PowerTests.Slice(beta, start, end), Decayed(options, g, start, c.K, c.V));
            for (int b = 0; b < c.B; b++)
            {
                Array.Copy(part.O.Data, b * (end - start) * c.H * c.V, oLinear.Data, (b * c.T + start) * c.H * c.V, (end - start) * c.H * c.V);
            }
            finalState = end - start == c.ChunkSize ? Decayed(options, g, end, c.K, c.V) : part.FinalState;
        }
        var expected = new NatsLResult(oLinear, softmax.O, finalState);
        return Close(NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options), expected, SameMathInDouble)
            && Close(NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options), expected, SameMathInDouble);
    }));

    [Fact]
    public void One_incomplete_chunk_gives_gated_delta_rule_and_causal_softmax_whatever_its_route() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var (q, k, v, g, beta, route, options) = (c with { ChunkSize = c.T + 1 }).Inputs(new Random(c.Seed));
        var gdr = GatedDeltaRuleRecurrent(q, k, v, g, beta, options.InitialState);
        var softmax = new SoftmaxInputs(q, k, v) { Causal = true }.Run("naive");
        var expected = new NatsLResult(gdr.O, softmax.O, gdr.FinalState);
        return Close(NatsL.Recurrent(q, k, v, g, beta, route, c.T + 1, options), expected, SameMathInDouble)
            && Close(NatsL.Chunked(q, k, v, g, beta, route, c.T + 1, options), expected, SameMathInDouble);
    }));

    [Fact]
    public void Outputs_up_to_t_depend_neither_on_later_inputs_nor_on_the_route_of_ts_own_chunk() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, g, beta, route, options) = c.Inputs(random);
        int t = random.Next(c.T);
        var before = NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options);
        foreach (var x in new[] { q, k, v })
        {
            PowerTests.Perturb(x, t, random);
        }
        PowerTests.Perturb(g, t, random, nonPositive: true);
        // The route comes from the whole chunk (mean pooling), so t's own chunk and the later ones may change it.
        for (int b = 0; b < c.B; b++)
        {
            for (int n = t / c.ChunkSize; n < c.Chunks; n++)
            {
                for (int h = 0; h < c.H; h++)
                {
                    route[b, n, h] = 1 - route[b, n, h];
                }
            }
        }
        var after = NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options);
        // Identical inputs up to t: only the variants' rounding differs.
        return TestTensors.Close(PowerTests.Slice(after.OLinear, 0, t + 1), PowerTests.Slice(before.OLinear, 0, t + 1), SameMathInDouble)
            && TestTensors.Close(PowerTests.Slice(after.OSoftmax, 0, t + 1), PowerTests.Slice(before.OSoftmax, 0, t + 1), SameMathInDouble);
    }));

    [Fact]
    public void A_softmax_chunk_without_decay_leaves_the_state_as_it_was() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        // T a multiple of C, every chunk softmax, no decay: the state passes every chunk unchanged, bit for bit.
        var (q, k, v, g, beta, route, options) = (c with { T = c.ChunkSize * Math.Max(1, c.T / c.ChunkSize), Routes = 1, WithState = true, Decay = false }).Inputs(new Random(c.Seed));
        return NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options).FinalState.Data.SequenceEqual(options.InitialState!.Data)
            && NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options).FinalState.Data.SequenceEqual(options.InitialState!.Data);
    }));

    [Fact]
    public void A_route_per_chunk_only_applies_to_every_head() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var (q, k, v, g, beta, route, options) = c.Inputs(new Random(c.Seed));
        var perChunk = new Tensor([c.B, c.Chunks], Enumerable.Range(0, c.B * c.Chunks).Select(i => route.Data[i * c.H]).ToArray());
        var spread = new Tensor([c.B, c.Chunks, c.H], Enumerable.Range(0, route.Length).Select(i => perChunk.Data[i / c.H]).ToArray());
        // The same route reaches the same code: bit for bit.
        var a = NatsL.Recurrent(q, k, v, g, beta, perChunk, c.ChunkSize, options);
        var b = NatsL.Recurrent(q, k, v, g, beta, spread, c.ChunkSize, options);
        return a.OLinear.Data.SequenceEqual(b.OLinear.Data) && a.OSoftmax.Data.SequenceEqual(b.OSoftmax.Data) && a.FinalState.Data.SequenceEqual(b.FinalState.Data);
    }));

    [Fact]
    public void A_route_other_than_zero_or_one_or_of_the_wrong_chunk_count_is_bad_input_naming_it()
    {
        var q = Tensor.Zeros(1, 5, 1, 2);
        var g = Tensor.Zeros(1, 5, 1);
        Assert.Contains("route", Assert.Throws<InputException>(() => NatsL.Recurrent(q, q, q, g, g, new Tensor([1, 3, 1], [0, 0.5, 1]), 2)).Message, StringComparison.Ordinal);
        Assert.Contains("route", Assert.Throws<InputException>(() => NatsL.Chunked(q, q, q, g, g, Tensor.Zeros(1, 2, 1), 2)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Swapping_the_score_modules_two_rows_of_each_head_flips_every_route() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        int d = 1 + c.K;
        var x = TestTensors.Normal(random, 1, c.B, c.T, d);
        var w = TestTensors.Normal(random, 1, 2 * c.H, d);
        var swapped = new Tensor([2 * c.H, d], Enumerable.Range(0, w.Length).Select(i => w.Data[(i / d ^ 1) * d + i % d]).ToArray());
        var route = NatsL.ScoreRoute(x, w, c.H, c.ChunkSize);
        // Random scores never tie, so the other op wins every chunk.
        return route.Data.Zip(NatsL.ScoreRoute(x, swapped, c.H, c.ChunkSize).Data).All(pair => pair.First == 1 - pair.Second);
    }));

    [Fact]
    public void A_chunks_score_route_depends_on_its_own_tokens_only() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        int d = 1 + c.V;
        var x = TestTensors.Normal(random, 1, c.B, c.T, d);
        var w = TestTensors.Normal(random, 1, 2 * c.H, d);
        int chunk = random.Next(c.Chunks);
        var before = NatsL.ScoreRoute(x, w, c.H, c.ChunkSize);
        for (int b = 0; b < c.B; b++)
        {
            for (int t = 0; t < c.T; t++)
            {
                for (int e = 0; e < d; e++)
                {
                    x[b, t, e] = t / c.ChunkSize == chunk ? x[b, t, e] : random.NextDouble() * 4 - 2;
                }
            }
        }
        var after = NatsL.ScoreRoute(x, w, c.H, c.ChunkSize);
        return Enumerable.Range(0, c.B).All(b => Enumerable.Range(0, c.H).All(h => after[b, chunk, h] == before[b, chunk, h]));
    }));

    [Fact]
    public void A_score_module_of_the_wrong_width_is_bad_input_naming_it()
    {
        var error = Assert.Throws<InputException>(() => NatsL.ScoreRoute(Tensor.Zeros(1, 4, 3), Tensor.Zeros(3, 3), heads: 2, chunkSize: 2));
        Assert.Contains("w_score", error.Message, StringComparison.Ordinal);
    }

    /// <summary>The bool mask [T,T] "query and key share a chunk".</summary>
    private static Tensor SameChunk(int t, int chunkSize)
    {
        var mask = Tensor.Zeros(t, t);
        for (int i = 0; i < t; i++)
        {
            for (int j = 0; j < t; j++)
            {
                mask[i, j] = i / chunkSize == j / chunkSize ? 1 : 0;
            }
        }
        return mask;
    }

    /// <summary>The initial state (zeros if absent) times exp(δ · Σ_{j&lt;end} g_j), per batch entry and head.</summary>
    private static Tensor Decayed(NatsLOptions options, Tensor g, int end, int k, int v)
    {
        int batch = g.Dim(0), heads = g.Dim(2);
        Tensor state = options.InitialState?.Clone() ?? Tensor.Zeros(batch, heads, k, v);
        int size = state.Length / (batch * heads);
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                double sum = 0;
                for (int t = 0; t < end; t++)
                {
                    sum += g[b, t, h];
                }
                double decay = options.DecayForNonGdnBlocks ? Math.Exp(sum) : 1;
                for (int i = (b * heads + h) * size; i < (b * heads + h + 1) * size; i++)
                {
                    state.Data[i] *= decay;
                }
            }
        }
        return state;
    }

    /// <summary>gated_delta_rule's recurrent variant, called through its contract.</summary>
    private static (Tensor O, Tensor FinalState) GatedDeltaRuleRecurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor? initialState)
    {
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g, ["beta"] = beta };
        if (initialState is not null)
        {
            inputs["initial_state"] = initialState;
        }
        var outputs = new GatedDeltaRule().Call("recurrent", inputs);
        return (outputs["o"], outputs["final_state"]);
    }
}
