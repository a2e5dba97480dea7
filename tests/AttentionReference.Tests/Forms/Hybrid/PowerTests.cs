using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using LinearAttention = AttentionReference.Forms.Linear.Linear;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>The laws of power attention: its variants agree, its feature map is exact, p = 1 is linear attention.</summary>
public sealed class PowerTests
{
    // The same sums in double along different paths (the quadratic weights against the feature-map state, in another
    // order): a few ulps per term, relative to outputs of size ~1.
    private const double SameMathInDouble = 1e-12;

    /// <summary>A small problem: shapes, degree, gates (none, mild or strong), normalisation, a chunk size, a seed.</summary>
    public sealed record PowerCase(int B, int T, int H, int K, int V, int Degree, int Gates, bool Normalize, int ChunkSize, int Seed)
    {
        public static Arbitrary<PowerCase> Arbitrary { get; } =
            (from b in Gen.Choose(1, 2)
             from t in Gen.Choose(1, 12)
             from h in Gen.Choose(1, 2)
             from k in Gen.Choose(1, 3)
             from v in Gen.Choose(1, 3)
             from degree in Gen.Elements(1, 2, 3, 4)
             from gates in Gen.Choose(0, 2)
             from normalize in Gen.Elements(true, false)
             from chunk in Gen.Choose(1, 13)
             from seed in Gen.Choose(0, int.MaxValue - 1)
             select new PowerCase(b, t, h, k, v, degree, gates, normalize, chunk, seed)).ToArbitrary();

        public (Tensor Q, Tensor K, Tensor V, Tensor? G) Inputs(Random random) =>
            (TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1, B, T, H, V),
             Gates == 0 ? null : LogGates(random, Gates == 2, B, T, H));
    }

    /// <summary>Log gates: logsigmoid of a normal, or strong ones in [−20, −10].</summary>
    internal static Tensor LogGates(Random random, bool strong, params int[] shape) =>
        new(shape, TestTensors.Normal(random, 1, shape).Data.Select(x => strong ? -15 + 5 * Math.Tanh(x) : -Math.Log(1 + Math.Exp(-x))).ToArray());

    /// <summary>A state as a run over <paramref name="steps"/> earlier keys leaves it (z &gt; 0 for even p).</summary>
    private static PowerResult Prefix(Random random, PowerCase c, int steps) =>
        Power.Recurrent(TestTensors.Normal(random, 1, c.B, steps, c.H, c.K), TestTensors.Normal(random, 1, c.B, steps, c.H, c.K),
            TestTensors.Normal(random, 1, c.B, steps, c.H, c.V), options: new PowerOptions { Degree = c.Degree });

    private static bool Close(PowerResult a, PowerResult b) =>
        TestTensors.Close(a.O, b.O, SameMathInDouble)
        && TestTensors.Close(a.FinalState, b.FinalState, SameMathInDouble)
        && TestTensors.Close(a.FinalNormalizer, b.FinalNormalizer, SameMathInDouble);

    /// <summary>
    /// Outputs of two paths that differ in how (q·k)^p is formed: directly, or as φ(q)·φ(k), a sum of signed terms.
    /// Each term is bounded by the matching term of φ(|q|)·φ(|k|) = (|q|·|k|)^p, so the feature-map path's rounding is
    /// relative to the same form evaluated on |q|, |k|, |v| (and the initial state's |S0|), not to the output itself,
    /// which can cancel to near zero (T = 3, p = 4 was a counterexample to a normwise bound). Each element must agree
    /// within 1e-12 of that magnitude; states and normalisers are sums of the same features on both paths and keep the
    /// normwise bound.
    /// </summary>
    private static bool CloseAlongPaths(PowerResult a, PowerResult b, Tensor q, Tensor k, Tensor v, Tensor? g, PowerOptions options)
    {
        static Tensor Abs(Tensor x) => new(x.ShapeArray(), x.Data.Select(Math.Abs).ToArray());
        Tensor magnitude = Power.Quadratic(Abs(q), Abs(k), Abs(v), g, options with
        {
            Normalize = false,
            InitialState = options.InitialState is { } s0 ? Abs(s0) : null,
        }).O;
        bool outputs = a.O.Data.Zip(b.O.Data, magnitude.Data).All(e => Math.Abs(e.First - e.Second) <= SameMathInDouble * e.Third);
        return outputs
            && TestTensors.Close(a.FinalState, b.FinalState, SameMathInDouble)
            && TestTensors.Close(a.FinalNormalizer, b.FinalNormalizer, SameMathInDouble);
    }

    [Fact]
    public void Quadratic_equals_recurrent_equals_chunked_for_any_chunk_size() => PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
    {
        // Unnormalised, so the comparison is on the sums themselves: the feature-map path computes (q·k)^p as a sum
        // of signed terms, whose rounding is relative to (|q||k|)^p; after division by a row's own small weight sum
        // that rounding is amplified by the row's conditioning, which is the problem's, not a variant's.
        var random = new Random(c.Seed);
        var (q, k, v, g) = c.Inputs(random);
        var prefix = Prefix(random, c, 2);
        var options = new PowerOptions { Degree = c.Degree, Normalize = false, InitialState = prefix.FinalState, InitialNormalizer = prefix.FinalNormalizer };
        var quadratic = Power.Quadratic(q, k, v, g, options);
        return CloseAlongPaths(Power.Recurrent(q, k, v, g, options), quadratic, q, k, v, g, options)
            && CloseAlongPaths(Power.Chunked(q, k, v, c.ChunkSize, g, options), quadratic, q, k, v, g, options);
    }));

    [Fact]
    public void Normalised_output_is_the_weighted_sum_over_the_sum_of_weights_plus_eps_in_every_variant() =>
        PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
        {
            var random = new Random(c.Seed);
            var (q, k, v, g) = c.Inputs(random);
            var prefix = Prefix(random, c, 2);
            double eps = c.Normalize ? 0 : 1e-3;
            var plain = new PowerOptions { Degree = c.Degree, Normalize = false, InitialState = prefix.FinalState, InitialNormalizer = prefix.FinalNormalizer };
            // The weight sum d_i is the unnormalised output for v = 1 with the state's value column set to z.
            var ones = new Tensor(v.ShapeArray()[..3].Append(1).ToArray(), Enumerable.Repeat(1.0, c.B * c.T * c.H).ToArray());
            var zAsState = prefix.FinalNormalizer.Reshape(c.B, c.H, prefix.FinalNormalizer.Dim(2), 1);
            Func<Tensor, Tensor?, PowerOptions, PowerResult>[] variants =
            [
                (values, gates, o) => Power.Quadratic(q, k, values, gates, o),
                (values, gates, o) => Power.Recurrent(q, k, values, gates, o),
                (values, gates, o) => Power.Chunked(q, k, values, c.ChunkSize, gates, o),
            ];
            return variants.All(run =>
            {
                Tensor n = run(v, g, plain).O, d = run(ones, g, plain with { InitialState = zAsState }).O;
                Tensor o = run(v, g, plain with { Normalize = true, Eps = eps }).O;
                var expected = new Tensor(n.ShapeArray(), n.Data.Select((x, i) => x / (d.Data[i / c.V] + eps)).ToArray());
                // Same arithmetic on both sides (the v = 1 column repeats z's updates): equal to rounding.
                return TestTensors.Close(o, expected, SameMathInDouble);
            });
        }));

    [Fact]
    public void The_feature_map_gives_the_power_of_the_dot_product_in_dimension_k_plus_p_minus_1_choose_p() =>
        PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
        {
            var random = new Random(c.Seed);
            double[] x = TestTensors.Normal(random, 1, c.K).Data, y = TestTensors.Normal(random, 1, c.K).Data;
            double[] φx = Power.FeatureMap(x, c.Degree), φy = Power.FeatureMap(y, c.Degree);
            double dot = x.Zip(y, (a, b) => a * b).Sum();
            double expected = Math.Pow(dot, c.Degree), actual = φx.Zip(φy, (a, b) => a * b).Sum();
            long binomial = 1;
            for (int r = 1; r <= c.Degree; r++)
            {
                binomial = binomial * (c.K + r - 1) / r;
            }
            // A sum of D products of p + 1 factors against one power: rounding relative to Σ|terms| = (Σ|x_a y_a|)^p.
            double size = Math.Pow(x.Zip(y, (a, b) => Math.Abs(a * b)).Sum(), c.Degree);
            return φx.Length == binomial && Math.Abs(actual - expected) <= 1e-13 * (1 + size);
        }));

    [Fact]
    public void Degree_one_unnormalised_equals_linear_attention_with_the_identity_map() => PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, _) = c.Inputs(random);
        var s0 = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        var z0 = TestTensors.Normal(random, 1, c.B, c.H, c.K);
        var power = Power.Chunked(q, k, v, c.ChunkSize, null, new PowerOptions { Degree = 1, Normalize = false, InitialState = s0, InitialNormalizer = z0 });
        var linear = new LinearAttention().Call("recurrent",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["initial_state"] = s0, ["initial_normalizer"] = z0 });
        return Close(power, new PowerResult(linear["o"], linear["final_state"], linear["final_normalizer"]))
            && Close(Power.Quadratic(q, k, v, null, new PowerOptions { Degree = 1, Normalize = false, InitialState = s0, InitialNormalizer = z0 }), power);
    }));

    [Fact]
    public void Gated_degree_one_unnormalised_equals_simple_gla() => PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, _) = c.Inputs(random);
        Tensor g = LogGates(random, c.Gates == 2, c.B, c.T, c.H);
        var s0 = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        var options = new PowerOptions { Degree = 1, Normalize = false, InitialState = s0 };
        var gla = new SimpleGla().Call("recurrent", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g, ["initial_state"] = s0 });
        return TestTensors.Close(Power.Quadratic(q, k, v, g, options).O, gla["o"], SameMathInDouble)
            && TestTensors.Close(Power.Recurrent(q, k, v, g, options).FinalState, gla["final_state"], SameMathInDouble)
            && TestTensors.Close(Power.Chunked(q, k, v, c.ChunkSize, g, options).O, gla["o"], SameMathInDouble);
    }));

    [Fact]
    public void Running_a_prefix_then_the_rest_from_its_final_state_equals_one_run() => PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, g) = c.Inputs(random);
        int split = c.T / 2;
        // Unnormalised (see the first law); the normaliser state is passed and compared all the same.
        var options = new PowerOptions { Degree = c.Degree, Normalize = false };
        var whole = Power.Chunked(q, k, v, c.ChunkSize, g, options);
        Tensor Part(Tensor x, int from, int to) => Slice(x, from, to);
        var first = Power.Recurrent(Part(q, 0, split), Part(k, 0, split), Part(v, 0, split), g is null ? null : Part(g, 0, split), options);
        var second = Power.Chunked(Part(q, split, c.T), Part(k, split, c.T), Part(v, split, c.T), c.ChunkSize, g is null ? null : Part(g, split, c.T),
            options with { InitialState = first.FinalState, InitialNormalizer = first.FinalNormalizer });
        // The second part reads the first part's tokens through the feature-map state, the whole run directly: the
        // outputs are compared against the magnitude of the whole run on absolute values (see CloseAlongPaths).
        static Tensor Abs(Tensor x) => new(x.ShapeArray(), x.Data.Select(Math.Abs).ToArray());
        var magnitude = Power.Quadratic(Abs(q), Abs(k), Abs(v), g, options).O;
        static bool Within(Tensor a, Tensor b, Tensor m) => a.Data.Zip(b.Data, m.Data).All(e => Math.Abs(e.First - e.Second) <= SameMathInDouble * e.Third);
        return Within(Part(whole.O, split, c.T), second.O, Part(magnitude, split, c.T))
            && Within(Part(whole.O, 0, split), first.O, Part(magnitude, 0, split))
            && TestTensors.Close(second.FinalState, whole.FinalState, SameMathInDouble)
            && TestTensors.Close(second.FinalNormalizer, whole.FinalNormalizer, SameMathInDouble);
    }));

    [Fact]
    public void Outputs_up_to_t_do_not_depend_on_inputs_after_t() => PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, g) = c.Inputs(random);
        int t = random.Next(c.T);
        var options = new PowerOptions { Degree = c.Degree };
        var before = Power.Chunked(q, k, v, c.ChunkSize, g, options).O;
        foreach (var x in new[] { q, k, v, g }.OfType<Tensor>())
        {
            Perturb(x, t, random);
        }
        var after = Power.Chunked(q, k, v, c.ChunkSize, g, options).O;
        // Up to t the two runs see identical inputs through the same code.
        return TestTensors.Close(Slice(after, 0, t + 1), Slice(before, 0, t + 1), SameMathInDouble);
    }));

    [Fact]
    public void Strong_decay_over_48_steps_stays_exact_in_every_variant() => PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
    {
        // Log gates in [−20, −10] over 48 steps: the cumulative decay reaches e^−700 and beyond, where a factorised
        // exp(G_i)·exp(−G_j) would underflow or overflow; every variant works with differences within a chunk.
        var random = new Random(c.Seed);
        var q = TestTensors.Normal(random, 1, 1, 48, 1, c.K);
        var k = TestTensors.Normal(random, 1, 1, 48, 1, c.K);
        var v = TestTensors.Normal(random, 1, 1, 48, 1, c.V);
        var g = new Tensor([1, 48, 1], Enumerable.Range(0, 48).Select(_ => -20 + 10 * random.NextDouble()).ToArray());
        var options = new PowerOptions { Degree = c.Degree, Normalize = false };
        var quadratic = Power.Quadratic(q, k, v, g, options);
        return quadratic.O.Data.All(double.IsFinite)
            && CloseAlongPaths(Power.Recurrent(q, k, v, g, options), quadratic, q, k, v, g, options)
            && CloseAlongPaths(Power.Chunked(q, k, v, 48, g, options), quadratic, q, k, v, g, options)
            && CloseAlongPaths(Power.Chunked(q, k, v, c.ChunkSize, g, options), quadratic, q, k, v, g, options);
    }), cases: 50);

    [Fact]
    public void Varlen_with_cu_seqlens_equals_separate_runs_with_their_states() => PropertyRuns.Check(Prop.ForAll(PowerCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var one = c with { B = 1 };
        var (q, k, v, g) = one.Inputs(random);
        int cut = random.Next(c.T + 1);
        var prefix = Prefix(random, c with { B = 2 }, 2);
        var options = new PowerOptions { Degree = c.Degree, Normalize = c.Degree % 2 == 0 && c.Normalize, Eps = 1e-3 };
        var packed = Power.Chunked(q, k, v, c.ChunkSize, g, options with
        {
            InitialState = prefix.FinalState,
            InitialNormalizer = prefix.FinalNormalizer,
            CuSeqlens = new Tensor([3], [0, cut, c.T], DType.I32),
        });
        Tensor Row(Tensor x, int n) => new([1, .. x.ShapeArray()[1..]], x.Data.AsSpan(n * (x.Length / 2), x.Length / 2).ToArray());
        var parts = new[] { (0, cut), (cut, c.T) }.Select((range, n) => Power.Chunked(Slice(q, range.Item1, range.Item2), Slice(k, range.Item1, range.Item2),
            Slice(v, range.Item1, range.Item2), c.ChunkSize, g is null ? null : Slice(g, range.Item1, range.Item2),
            options with { InitialState = Row(prefix.FinalState, n), InitialNormalizer = Row(prefix.FinalNormalizer, n) })).ToArray();
        // Each sequence runs through the same code with the same numbers: bit for bit.
        return packed.O.Data.SequenceEqual(parts[0].O.Data.Concat(parts[1].O.Data))
            && packed.FinalState.Data.SequenceEqual(parts[0].FinalState.Data.Concat(parts[1].FinalState.Data));
    }));

    [Fact]
    public void A_degree_below_one_and_a_misshapen_gate_are_bad_input_naming_them()
    {
        var q = Tensor.Zeros(1, 3, 2, 2);
        Assert.Contains("deg", Assert.Throws<InputException>(() => Power.Recurrent(q, q, q, null, new PowerOptions { Degree = 0 })).Message, StringComparison.Ordinal);
        Assert.Contains("g", Assert.Throws<InputException>(() => Power.Quadratic(q, q, q, Tensor.Zeros(1, 3, 3))).Message, StringComparison.Ordinal);
        Assert.Contains("chunk_size", Assert.Throws<InputException>(() => Power.Chunked(q, q, q, 0)).Message, StringComparison.Ordinal);
    }

    /// <summary>Time steps [from, to) of a [B,T,...] tensor.</summary>
    internal static Tensor Slice(Tensor x, int from, int to)
    {
        int[] shape = x.ShapeArray();
        int inner = x.Length / (shape[0] * shape[1]);
        var data = new List<double>();
        for (int b = 0; b < shape[0]; b++)
        {
            data.AddRange(x.Data.AsSpan((b * shape[1] + from) * inner, (to - from) * inner).ToArray());
        }
        shape[1] = to - from;
        return new Tensor(shape, [.. data]);
    }

    /// <summary>Replaces every entry of time steps after <paramref name="t"/> of a [B,T,...] tensor by a new random value (≤ 0 for gates).</summary>
    internal static void Perturb(Tensor x, int t, Random random, bool nonPositive = false)
    {
        int[] shape = x.ShapeArray();
        int inner = x.Length / (shape[0] * shape[1]);
        for (int b = 0; b < shape[0]; b++)
        {
            for (int i = (b * shape[1] + t + 1) * inner; i < (b + 1) * shape[1] * inner; i++)
            {
                x.Data[i] = nonPositive || x.Rank == 3 ? -random.NextDouble() : random.NextDouble() * 4 - 2;
            }
        }
    }
}
