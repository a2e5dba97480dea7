using AttentionReference.Forms.Delta;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using SoftmaxAttention = AttentionReference.Forms.Softmax.Softmax;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>The laws of NAtS-L: its reductions to softmax and to Gated DeltaNet, and its two variants agreeing.</summary>
public sealed class NatsLTests
{
    // The same sums in double along different paths (token by token against the WY chunked form and the tiled
    // softmax): a few ulps per term, relative to outputs of size ~1.
    private const double SameMathInDouble = 1e-12;

    /// <summary>A small problem: shapes, the routing chunk, the route kind (0 all linear, 1 all softmax, 2 mixed), a seed.</summary>
    public sealed record NatsCase(int B, int T, int H, int K, int V, int ChunkSize, int Routes, bool WithState, int Seed)
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
             from seed in Gen.Choose(0, int.MaxValue - 1)
             select new NatsCase(b, t, h, k, v, chunk, routes, withState, seed)).ToArbitrary();

        public int Chunks => (T + ChunkSize - 1) / ChunkSize;

        public (Tensor Q, Tensor K, Tensor V, Tensor G, Tensor Beta, Tensor Route, NatsLOptions Options) Inputs(Random random)
        {
            var g = PowerTests.LogGates(random, false, B, T, H);
            var beta = new Tensor([B, T, H], TestTensors.Normal(random, 1, B, T, H).Data.Select(x => 1 / (1 + Math.Exp(-x))).ToArray());
            var route = new Tensor([B, Chunks, H], Enumerable.Range(0, B * Chunks * H).Select(_ => Routes switch
            {
                0 => 0.0,
                1 => 1.0,
                _ => random.Next(2),
            }).ToArray());
            // Keys of norm ≈ 1 (as Gated DeltaNet's L2-normalised keys) keep the delta rule contractive.
            return (TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1 / Math.Sqrt(K), B, T, H, K), TestTensors.Normal(random, 1, B, T, H, V),
                g, beta, route, new NatsLOptions { InitialState = WithState ? TestTensors.Normal(random, 1, B, H, K, V) : null });
        }
    }

    [Fact]
    public void The_chunked_form_equals_the_token_by_token_definition_for_any_routes_and_chunk_size() =>
        PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
        {
            var (q, k, v, g, beta, route, options) = c.Inputs(new Random(c.Seed));
            var recurrent = NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options);
            var chunked = NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options);
            return TestTensors.Close(chunked.O, recurrent.O, SameMathInDouble) && TestTensors.Close(chunked.FinalState, recurrent.FinalState, SameMathInDouble);
        }));

    [Fact]
    public void Every_chunk_routed_to_softmax_equals_causal_softmax() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var (q, k, v, g, beta, route, _) = (c with { Routes = 1 }).Inputs(new Random(c.Seed));
        var softmax = SoftmaxAttention.Naive(q, k, v, new SoftmaxOptions { Causal = true });
        return TestTensors.Close(NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize).O, softmax.O, SameMathInDouble)
            && TestTensors.Close(NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize).O, softmax.O, SameMathInDouble);
    }));

    [Fact]
    public void Every_chunk_routed_to_linear_equals_gated_delta_rule() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var (q, k, v, g, beta, route, options) = (c with { Routes = 0 }).Inputs(new Random(c.Seed));
        var gdr = GatedDeltaRule.Recurrent(q, k, v, g, beta, new DeltaOptions { InitialState = options.InitialState });
        var recurrent = NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options);
        var chunked = NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options);
        return TestTensors.Close(recurrent.O, gdr.O, SameMathInDouble) && TestTensors.Close(recurrent.FinalState, gdr.FinalState, SameMathInDouble)
            && TestTensors.Close(chunked.O, gdr.O, SameMathInDouble);
    }));

    [Fact]
    public void Outputs_up_to_t_do_not_depend_on_inputs_or_routes_after_t() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, g, beta, route, options) = c.Inputs(random);
        int t = random.Next(c.T);
        var before = NatsL.Recurrent(q, k, v, g, beta, route, c.ChunkSize, options).O;
        foreach (var x in new[] { q, k, v })
        {
            PowerTests.Perturb(x, t, random);
        }
        PowerTests.Perturb(g, t, random, nonPositive: true);
        // Later chunks (those starting after t) may change their route.
        for (int b = 0; b < c.B; b++)
        {
            for (int n = t / c.ChunkSize + 1; n < c.Chunks; n++)
            {
                for (int h = 0; h < c.H; h++)
                {
                    route[b, n, h] = 1 - route[b, n, h];
                }
            }
        }
        var after = NatsL.Chunked(q, k, v, g, beta, route, c.ChunkSize, options).O;
        // Identical inputs up to t: only the variants' rounding differs.
        return TestTensors.Close(PowerTests.Slice(after, 0, t + 1), PowerTests.Slice(before, 0, t + 1), SameMathInDouble);
    }));

    [Fact]
    public void A_route_per_chunk_only_applies_to_every_head() => PropertyRuns.Check(Prop.ForAll(NatsCase.Arbitrary, c =>
    {
        var (q, k, v, g, beta, route, options) = c.Inputs(new Random(c.Seed));
        var perChunk = new Tensor([c.B, c.Chunks], Enumerable.Range(0, c.B * c.Chunks).Select(i => route.Data[i * c.H]).ToArray());
        var spread = new Tensor([c.B, c.Chunks, c.H], Enumerable.Range(0, route.Length).Select(i => perChunk.Data[i / c.H]).ToArray());
        // The same route reaches the same code: bit for bit.
        return NatsL.Recurrent(q, k, v, g, beta, perChunk, c.ChunkSize, options).O.Data
            .SequenceEqual(NatsL.Recurrent(q, k, v, g, beta, spread, c.ChunkSize, options).O.Data);
    }));

    [Fact]
    public void A_route_other_than_zero_or_one_or_of_the_wrong_chunk_count_is_bad_input_naming_it()
    {
        var q = Tensor.Zeros(1, 5, 1, 2);
        var g = Tensor.Zeros(1, 5, 1);
        Assert.Contains("route", Assert.Throws<InputException>(() => NatsL.Recurrent(q, q, q, g, g, new Tensor([1, 3, 1], [0, 0.5, 1]), 2)).Message, StringComparison.Ordinal);
        Assert.Contains("route", Assert.Throws<InputException>(() => NatsL.Chunked(q, q, q, g, g, Tensor.Zeros(1, 2, 1), 2)).Message, StringComparison.Ordinal);
    }
}
