using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.Hybrid.HybridTensors;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>A small nats_l problem: shapes, the routing chunk, the route kind (0 all linear, 1 all softmax, 2 mixed), gates, a seed.</summary>
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

    /// <summary>The inputs under the form's names: q, k, v, g, beta, route [B,NC,H] and, with a state, initial_state.</summary>
    public Dictionary<string, Tensor> Inputs(Random random)
    {
        var g = LogGates(random, StrongGates, B, T, H);
        var beta = new Tensor([B, T, H], TestTensors.Normal(random, 1, B, T, H).Data.Select(x => 1 / (1 + Math.Exp(-x))).ToArray());
        var route = new Tensor([B, Chunks, H], Enumerable.Range(0, B * Chunks * H).Select(_ => Routes switch
        {
            0 => 0.0,
            1 => 1.0,
            _ => random.Next(2),
        }).ToArray());
        // Keys of norm ≈ 1 (as Gated DeltaNet's L2-normalised keys) keep the delta rule contractive.
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K), ["k"] = TestTensors.Normal(random, 1 / Math.Sqrt(K), B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, H, V), ["g"] = g, ["beta"] = beta, ["route"] = route,
        };
        if (WithState)
        {
            inputs["initial_state"] = TestTensors.Normal(random, 1, B, H, K, V);
        }
        return inputs;
    }

    /// <summary>chunk_size and decay_for_non_gdn_blocks of the case.</summary>
    public string[] Parameters => ["chunk_size=" + ChunkSize.ToString(CultureInfo.InvariantCulture), "decay_for_non_gdn_blocks=" + (Decay ? "true" : "false")];
}

/// <summary>
/// The laws of NAtS-L: its reductions to softmax and to Gated DeltaNet, the rule at a chunk's end, causality (a chunk's
/// own route never reaches its own outputs), its two variants agreeing, the route's forms, and the score module.
/// Gradients: the definition's against finite differences, the chunked backward against the definition's, the Gated
/// DeltaNet branch's backward in two parts at a chunk boundary, and the edge cases (one step, one incomplete chunk, log
/// gates of −20 at every step). nats_l takes no cu_seqlens: it has no varlen law.
/// </summary>
public sealed class NatsLTests
{
    // The same sums in double along different paths (token by token against the WY chunked form and the tiled
    // softmax): a few ulps per term, relative to outputs of size ~1.
    private const double SameMathInDouble = 1e-12;

    // Two backward passes compute the same sums in double in other orders, over about twice the forward's terms: 1e-11
    // relative to each gradient's norm (as the stateful forms' gradient laws).
    private const double SameGradients = 1e-11;

    private static readonly NatsL s_nats = new();

    private static readonly string[] s_rows = ["q", "k", "v"], s_steps = ["q", "k", "v", "g", "beta"], s_branchOutputs = ["o_linear", "o_softmax"];

    private static readonly DType[] s_routeTypes = [DType.Bool, DType.I32];

    private static IReadOnlyDictionary<string, Tensor> Run(string variant, NatsCase c, IReadOnlyDictionary<string, Tensor> inputs) =>
        s_nats.Call(variant, inputs, c.Parameters);

    [Law]
    public bool The_chunked_form_equals_the_token_by_token_definition_for_any_routes_chunk_size_and_gates(NatsCase c)
    {
        var inputs = c.Inputs(new Random(c.Seed));
        // Strong gates (log decay down to −20 per step) stay exact: both sides take differences of log sums.
        return FormCalls.AllClose(Run("chunked", c, inputs), Run("recurrent", c, inputs), SameMathInDouble);
    }

    [Law]
    public bool Every_chunk_routed_to_gated_deltanet_gives_gated_delta_rule_and_softmax_inside_each_chunk(NatsCase c)
    {
        c = c with { Routes = 0 };
        var inputs = c.Inputs(new Random(c.Seed));
        var gdr = GatedDeltaRuleRecurrent(inputs);
        var withinChunks = Softmax(inputs, SameChunk(c.T, c.ChunkSize));
        var expected = new Dictionary<string, Tensor> { ["o_linear"] = gdr["o"], ["o_softmax"] = withinChunks, ["final_state"] = gdr["final_state"] };
        var recurrent = Run("recurrent", c, inputs);
        return FormCalls.AllClose(recurrent, expected, SameMathInDouble)
            && FormCalls.AllClose(Run("chunked", c, inputs), recurrent, SameMathInDouble);
    }

    [Law]
    public bool Every_chunk_routed_to_softmax_gives_causal_softmax_and_gated_delta_rule_restarted_at_each_chunk(NatsCase c)
    {
        c = c with { Routes = 1 };
        var inputs = c.Inputs(new Random(c.Seed));
        Tensor g = inputs["g"];
        // The linear branch: each chunk on its own from the initial state decayed to the chunk's start (δ = 1), or
        // from the initial state itself (δ = 0); a complete last chunk is then undone too.
        var oLinear = Tensor.Zeros(c.B, c.T, c.H, c.V);
        Tensor finalState = Tensor.Zeros(c.B, c.H, c.K, c.V);
        for (int start = 0; start < c.T; start += c.ChunkSize)
        {
            int end = Math.Min(c.T, start + c.ChunkSize);
            var chunk = s_steps.ToDictionary(name => name, name => Slice(inputs[name], start, end));
            chunk["initial_state"] = Decayed(c, inputs, start);
            var part = GatedDeltaRuleRecurrent(chunk);
            for (int b = 0; b < c.B; b++)
            {
                Array.Copy(part["o"].Data, b * (end - start) * c.H * c.V, oLinear.Data, (b * c.T + start) * c.H * c.V, (end - start) * c.H * c.V);
            }
            finalState = end - start == c.ChunkSize ? Decayed(c, inputs, end) : part["final_state"];
        }
        var expected = new Dictionary<string, Tensor> { ["o_linear"] = oLinear, ["o_softmax"] = Softmax(inputs, mask: null), ["final_state"] = finalState };
        return FormCalls.AllClose(Run("recurrent", c, inputs), expected, SameMathInDouble)
            && FormCalls.AllClose(Run("chunked", c, inputs), expected, SameMathInDouble);
    }

    [Law]
    public bool One_incomplete_chunk_gives_gated_delta_rule_and_causal_softmax_whatever_its_route(NatsCase c)
    {
        c = c with { ChunkSize = c.T + 1 };
        var inputs = c.Inputs(new Random(c.Seed));
        var gdr = GatedDeltaRuleRecurrent(inputs);
        var expected = new Dictionary<string, Tensor> { ["o_linear"] = gdr["o"], ["o_softmax"] = Softmax(inputs, mask: null), ["final_state"] = gdr["final_state"] };
        return FormCalls.AllClose(Run("recurrent", c, inputs), expected, SameMathInDouble)
            && FormCalls.AllClose(Run("chunked", c, inputs), expected, SameMathInDouble);
    }

    [Law]
    public bool Outputs_up_to_t_depend_neither_on_later_inputs_nor_on_the_route_of_ts_own_chunk(NatsCase c)
    {
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random);
        int t = random.Next(c.T);
        var before = Run("recurrent", c, inputs);
        foreach (string name in s_rows)
        {
            Perturb(inputs[name], t, random);
        }
        Perturb(inputs["g"], t, random, nonPositive: true);
        // The route comes from the whole chunk (mean pooling), so t's own chunk and the later ones may change it.
        Tensor route = inputs["route"];
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
        var after = Run("chunked", c, inputs);
        // Identical inputs up to t: only the variants' rounding differs.
        return s_branchOutputs.All(name =>
            TestTensors.Close(Slice(after[name], 0, t + 1), Slice(before[name], 0, t + 1), SameMathInDouble));
    }

    [Law]
    public bool A_softmax_chunk_without_decay_leaves_the_state_as_it_was(NatsCase c)
    {
        // T a multiple of C, every chunk softmax, no decay: the state passes every chunk unchanged, bit for bit.
        c = c with { T = c.ChunkSize * Math.Max(1, c.T / c.ChunkSize), Routes = 1, WithState = true, Decay = false };
        var inputs = c.Inputs(new Random(c.Seed));
        return s_nats.Variants.All(variant => Run(variant, c, inputs)["final_state"].Data.SequenceEqual(inputs["initial_state"].Data));
    }

    [Law]
    public bool A_route_per_chunk_only_applies_to_every_head(NatsCase c)
    {
        var inputs = c.Inputs(new Random(c.Seed));
        Tensor route = inputs["route"];
        var perChunk = new Tensor([c.B, c.Chunks], Enumerable.Range(0, c.B * c.Chunks).Select(i => route.Data[i * c.H]).ToArray());
        var spread = new Tensor([c.B, c.Chunks, c.H], Enumerable.Range(0, route.Length).Select(i => perChunk.Data[i / c.H]).ToArray());
        // The same route reaches the same code: bit for bit.
        return s_nats.Variants.All(variant =>
        {
            var a = Run(variant, c, inputs.With("route", perChunk));
            var b = Run(variant, c, inputs.With("route", spread));
            return a.All(p => p.Value.Data.SequenceEqual(b[p.Key].Data));
        });
    }

    [Law(50)]
    public bool A_bool_or_integer_route_is_the_float_route(NatsCase c)
    {
        var inputs = c.Inputs(new Random(c.Seed));
        Tensor route = inputs["route"];
        var floats = Run("recurrent", c, inputs);
        return s_routeTypes.All(dtype =>
            Run("recurrent", c, inputs.With("route", new Tensor(route.ShapeArray(), route.Data, dtype))).All(p => p.Value.Data.SequenceEqual(floats[p.Key].Data)));
    }

    [Law(50)]
    public bool Batch_entries_are_independent(NatsCase c)
    {
        c = c with { B = 2 };
        var inputs = c.Inputs(new Random(c.Seed));
        return s_nats.Variants.All(variant =>
        {
            var both = Run(variant, c, inputs);
            return Enumerable.Range(0, 2).All(b =>
            {
                var alone = Run(variant, c, inputs.ToDictionary(p => p.Key, p => Entry(p.Value, b)));
                // Each entry is computed by the same arithmetic either way: bit for bit.
                return both.All(p => Entry(p.Value, b).Data.SequenceEqual(alone[p.Key].Data));
            });
        });
    }

    [Fact]
    public void A_route_other_than_zero_or_one_or_of_the_wrong_chunk_count_is_bad_input_naming_it()
    {
        var q = Tensor.Zeros(1, 5, 1, 2);
        var g = Tensor.Zeros(1, 5, 1);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = q, ["v"] = q, ["g"] = g, ["beta"] = g };
        var half = Assert.Throws<InputException>(() => s_nats.Call("recurrent", inputs.With("route", new Tensor([1, 3, 1], [0, 0.5, 1])), "chunk_size=2"));
        Assert.Equal("route", half.Tensor);
        var count = Assert.Throws<InputException>(() => s_nats.Call("chunked", inputs.With("route", Tensor.Zeros(1, 2, 1)), "chunk_size=2"));
        Assert.Equal("route", count.Tensor);
        Assert.Contains("⌈5/2⌉ = 3", count.Message, StringComparison.Ordinal);
        var scale = Assert.Throws<InputException>(() => s_nats.Call("chunked", inputs.With("route", Tensor.Zeros(1, 3, 1)), "chunk_size=2", "scale=NaN"));
        Assert.Contains("'scale'", scale.Message, StringComparison.Ordinal);
    }

    [Law]
    public bool Swapping_the_score_modules_two_rows_of_each_head_flips_every_route(NatsCase c)
    {
        var random = new Random(c.Seed);
        int d = 1 + c.K;
        var x = TestTensors.Normal(random, 1, c.B, c.T, d);
        var w = TestTensors.Normal(random, 1, 2 * c.H, d);
        var swapped = new Tensor([2 * c.H, d], Enumerable.Range(0, w.Length).Select(i => w.Data[(i / d ^ 1) * d + i % d]).ToArray());
        var route = NatsL.ScoreRoute(x, w, c.H, c.ChunkSize);
        // Random scores never tie, so the other op wins every chunk.
        return route.Data.Zip(NatsL.ScoreRoute(x, swapped, c.H, c.ChunkSize).Data).All(pair => pair.First == 1 - pair.Second);
    }

    [Law]
    public bool A_chunks_score_route_depends_on_its_own_tokens_only(NatsCase c)
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
    }

    [Fact]
    public void A_score_module_of_the_wrong_width_is_bad_input_naming_it()
    {
        var error = Assert.Throws<InputException>(() => NatsL.ScoreRoute(Tensor.Zeros(1, 4, 3), Tensor.Zeros(3, 3), heads: 2, chunkSize: 2));
        Assert.Contains("w_score", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Causal softmax through its contract, with an optional bool mask [T,T] (broadcast over batch and heads).</summary>
    private static Tensor Softmax(IReadOnlyDictionary<string, Tensor> inputs, Tensor? mask)
    {
        var softmaxInputs = new Dictionary<string, Tensor> { ["q"] = inputs["q"], ["k"] = inputs["k"], ["v"] = inputs["v"] };
        if (mask is not null)
        {
            softmaxInputs["mask"] = mask;
        }
        return FormCatalog.Find("softmax").Call("naive", softmaxInputs, "causal=true")["o"];
    }

    /// <summary>The bool mask [T,T] "query and key share a chunk".</summary>
    private static Tensor SameChunk(int t, int chunkSize)
    {
        var mask = new double[t * t];
        for (int i = 0; i < t; i++)
        {
            for (int j = 0; j < t; j++)
            {
                mask[i * t + j] = i / chunkSize == j / chunkSize ? 1 : 0;
            }
        }
        return new Tensor([t, t], mask, DType.Bool);
    }

    /// <summary>The initial state (zeros if absent) times exp(δ · Σ_{j&lt;end} g_j), per batch entry and head.</summary>
    private static Tensor Decayed(NatsCase c, IReadOnlyDictionary<string, Tensor> inputs, int end)
    {
        Tensor g = inputs["g"];
        Tensor state = inputs.GetValueOrDefault("initial_state")?.Clone() ?? Tensor.Zeros(c.B, c.H, c.K, c.V);
        int size = c.K * c.V;
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.H; h++)
            {
                double sum = 0;
                for (int t = 0; t < end; t++)
                {
                    sum += g[b, t, h];
                }
                double decay = c.Decay ? Math.Exp(sum) : 1;
                for (int i = (b * c.H + h) * size; i < (b * c.H + h + 1) * size; i++)
                {
                    state.Data[i] *= decay;
                }
            }
        }
        return state;
    }

    /// <summary>gated_delta_rule's recurrent variant, called through its contract, on q, k, v, g, beta and initial_state.</summary>
    private static IReadOnlyDictionary<string, Tensor> GatedDeltaRuleRecurrent(IReadOnlyDictionary<string, Tensor> inputs) =>
        FormCatalog.Find("gated_delta_rule").Call("recurrent",
            inputs.Where(p => p.Key is "q" or "k" or "v" or "g" or "beta" or "initial_state").ToDictionary(p => p.Key, p => p.Value));

    /// <summary>Batch entry <paramref name="b"/> of a tensor with a batch axis first.</summary>
    private static Tensor Entry(Tensor x, int b)
    {
        int[] shape = x.ShapeArray();
        int inner = x.Length / shape[0];
        shape[0] = 1;
        return new Tensor(shape, x.Data.AsSpan(b * inner, inner).ToArray(), x.DType);
    }

    [Law(50)]
    public bool Gradients_of_the_definition_equal_central_finite_differences(NatsCase c)
    {
        var random = new Random(c.Seed);
        return s_nats.GradientsEqualFiniteDifferences("recurrent", c.Inputs(random), random, c.Parameters);
    }

    [Law]
    public bool Backward_of_the_chunked_form_equals_the_definitions_for_any_routes_chunk_size_and_gates(NatsCase c)
    {
        var random = new Random(c.Seed);
        var inputs = s_nats.WithCotangents(c.Inputs(random), random, c.Parameters);
        return FormCalls.AllClose(s_nats.Gradients("chunked", inputs, c.Parameters), s_nats.Gradients("recurrent", inputs, c.Parameters), SameGradients);
    }

    [Law]
    public bool Gated_deltanet_backward_in_two_parts_at_a_chunk_boundary_with_the_state_gradient_passed_back_equals_one_run(NatsCase c)
    {
        // The state continues exactly across a chunk boundary (S̄ = S there); the softmax branch reads earlier chunks'
        // keys, so only o_linear and final_state get cotangents.
        int chunks = (c.T - 1) / c.ChunkSize;
        if (chunks < 1)
        {
            return true;
        }
        int m = 1 + c.Seed % chunks, cut = m * c.ChunkSize;
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random);
        inputs["do_linear"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        inputs["dfinal_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        string variant = c.Seed % 2 == 0 ? "recurrent" : "chunked";
        Dictionary<string, Tensor> Part(int from, int to, int fromChunk, int toChunk) => inputs.Where(p => p.Key is not ("initial_state" or "dfinal_state"))
            .ToDictionary(p => p.Key, p => p.Key == "route" ? Slice(p.Value, fromChunk, toChunk) : Slice(p.Value, from, to));
        var whole = s_nats.Gradients(variant, inputs, c.Parameters);
        var first = Part(0, cut, 0, m);
        if (inputs.TryGetValue("initial_state", out Tensor? initial))
        {
            first["initial_state"] = initial;
        }
        var second = Part(cut, c.T, m, c.Chunks).With("initial_state", Run(variant, c, first.Where(p => p.Key != "do_linear").ToDictionary())["final_state"])
            .With("dfinal_state", inputs["dfinal_state"]);
        var secondGradients = s_nats.Gradients(variant, second, c.Parameters);
        var firstGradients = s_nats.Gradients(variant, first.With("dfinal_state", secondGradients["dinitial_state"]), c.Parameters);
        return s_steps.All(name => TestTensors.Close(Concat(firstGradients["d" + name], secondGradients["d" + name]), whole["d" + name], SameGradients))
            && (!c.WithState || TestTensors.Close(firstGradients["dinitial_state"], whole["dinitial_state"], SameGradients));
    }

    [Law(20)]
    public bool Gradients_at_one_step_and_of_one_incomplete_chunk(NatsCase c)
    {
        var oneStep = c with { T = 1 };
        var incomplete = c with { ChunkSize = c.T + 1 + c.Seed % 3 };
        return Gradients_of_the_definition_equal_central_finite_differences(oneStep)
            && Backward_of_the_chunked_form_equals_the_definitions_for_any_routes_chunk_size_and_gates(oneStep)
            && Gradients_of_the_definition_equal_central_finite_differences(incomplete)
            && Backward_of_the_chunked_form_equals_the_definitions_for_any_routes_chunk_size_and_gates(incomplete);
    }

    [Law(20)]
    public bool Gradients_stay_finite_and_agree_with_log_gates_of_minus_20_at_every_step(NatsCase c)
    {
        // 60 steps of −20 sum to −1200: every decay stays a difference of log sums, nothing is divided by one.
        var random = new Random(c.Seed);
        var long60 = c with { T = 60 };
        var inputs = long60.Inputs(random);
        Array.Fill(inputs["g"].Data, -20);
        inputs = s_nats.WithCotangents(inputs, random, long60.Parameters);
        var expected = s_nats.Gradients("recurrent", inputs, long60.Parameters);
        var chunked = s_nats.Gradients("chunked", inputs, long60.Parameters);
        return expected.Values.All(g => g.Data.All(double.IsFinite)) && FormCalls.AllClose(chunked, expected, SameGradients);
    }

    /// <summary>[a, b] along the time (or chunk) axis of two [B,T,...] tensors.</summary>
    private static Tensor Concat(Tensor a, Tensor b)
    {
        int[] shape = a.ShapeArray();
        int inner = a.Length / Math.Max(1, shape[0] * shape[1]);
        var data = new List<double>();
        for (int i = 0; i < shape[0]; i++)
        {
            data.AddRange(a.Data.AsSpan(i * a.Dim(1) * inner, a.Dim(1) * inner).ToArray());
            data.AddRange(b.Data.AsSpan(i * b.Dim(1) * inner, b.Dim(1) * inner).ToArray());
        }
        shape[1] = a.Dim(1) + b.Dim(1);
        return new Tensor(shape, [.. data]);
    }
}
