using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Forms.GatedLinear;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.Hybrid.HybridTensors;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>A small power problem: shapes, degree, gates (none, mild or strong), normalisation, a chunk size, a seed.</summary>
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

    /// <summary>q, k, v and (with gates) g under the form's names.</summary>
    public Dictionary<string, Tensor> Inputs(Random random)
    {
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K), ["k"] = TestTensors.Normal(random, 1, B, T, H, K), ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
        };
        if (Gates != 0)
        {
            inputs["g"] = LogGates(random, Gates == 2, B, T, H);
        }
        return inputs;
    }

    /// <summary>"deg=p".</summary>
    public string Deg => "deg=" + Degree.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// power's laws: the stateful-form laws (its parallel form is quadratic; unnormalised, every degree, gated or not), its
/// variants along the feature-map and direct paths, the normaliser, the feature map, its reductions (p = 1: linear,
/// simple_gla), varlen in every variant, and bad input (the degree's bound included). Gradients: the stateful-form
/// gradient laws with the backward pass's edge cases (one step, shorter than a chunk, a last partial chunk, empty varlen
/// sequences, log gates of −20: GatedLinearFormLaws), normalised gradients, and p = 1's reduction to simple_gla's.
/// </summary>
public sealed class PowerTests : GatedLinearFormLaws
{
    // Two backward passes compute the same sums in double in other orders (as the shared gradient laws): 1e-11 relative
    // to each gradient's norm.
    private const double SameGradients = 1e-11;

    private static readonly Power s_power = new();

    protected override IForm Form => s_power;

    private static int Degree(StatefulCase c) => 1 + c.Seed % 4;

    protected override string Variant(string name) => name == "parallel" ? "quadratic" : name;

    // Unnormalised, so that the paths are compared on the sums themselves (see CloseAlongPaths); the normaliser has its
    // own law.
    protected override FormParameters Parameters(StatefulCase c) => FormParameters.None
        .With("deg", Degree(c).ToString(CultureInfo.InvariantCulture))
        .With("normalize", "false");

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t)
    {
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
        };
        if (c.Seed / 4 % 3 != 0)
        {
            inputs["g"] = c.Gates(random, b, t, c.H); // two cases in three gated
        }
        return inputs;
    }

    /// <summary>
    /// Gradients of two paths that differ in how (q·k)^p is formed (see <see cref="CloseAlongPaths"/>): the feature-map
    /// path rounds relative to (|q||k|)^p, so a gradient that is small because q·k is (dq ∝ (q·k)^(p−1) k at one step, or
    /// the state gradients behind such a weight under strong decay) is rounded at the inputs' scale, not its own
    /// (relative errors of 1e-8 were seen on a dq of 5e-7 at p = 4). Each gradient is held to the unit scale of the
    /// inputs; finite differences check each one on its own scale.
    /// </summary>
    protected override bool GradientClose(StatefulCase c, string name, Tensor actual, Tensor expected) =>
        TestTensors.CloseAtUnitScale(actual, expected, SameGradients);

    protected override bool AllClose(StatefulCase c, IReadOnlyDictionary<string, Tensor> inputs, IReadOnlyDictionary<string, Tensor> actual,
        IReadOnlyDictionary<string, Tensor> expected) => CloseAlongPaths(actual, expected, Magnitude(inputs, Degree(c)));

    /// <summary>
    /// Outputs of two paths that differ in how (q·k)^p is formed: directly, or as φ(q)·φ(k), a sum of signed terms.
    /// Each term is bounded by the matching term of φ(|q|)·φ(|k|) = (|q|·|k|)^p, so the feature-map path's rounding is
    /// relative to the same form evaluated on |q|, |k|, |v| (and the initial state's |S0|), not to the output itself,
    /// which can cancel to near zero (T = 3, p = 4 was a counterexample to a normwise bound). Each element must agree
    /// within 1e-12 of that magnitude (<see cref="StatefulFormLaws.SameMathInDouble"/>: a few ulps per term over at most 48
    /// terms); states and normalisers are sums of the same features on both paths and keep the
    /// normwise bound.
    /// </summary>
    private static bool CloseAlongPaths(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b, Tensor magnitude) =>
        Within(a["o"], b["o"], magnitude)
        && b.Where(p => p.Key != "o").All(p => TestTensors.Close(a[p.Key], p.Value, SameMathInDouble));

    private static bool Within(Tensor a, Tensor b, Tensor magnitude) =>
        a.Data.Zip(b.Data, magnitude.Data).All(e => Math.Abs(e.First - e.Second) <= SameMathInDouble * e.Third);

    /// <summary>The unnormalised quadratic form on |q|, |k|, |v| and |S0|, with the same gates: the size of every term of o.</summary>
    private static Tensor Magnitude(IReadOnlyDictionary<string, Tensor> inputs, int degree)
    {
        var magnitudes = inputs.ToDictionary(p => p.Key, p => p.Key is "q" or "k" or "v" or "initial_state" ? Abs(p.Value) : p.Value);
        return s_power.Call("quadratic", magnitudes, "deg=" + degree.ToString(CultureInfo.InvariantCulture), "normalize=false")["o"];
    }

    /// <summary>A state as a run over <paramref name="steps"/> earlier keys leaves it (z &gt; 0 for even p).</summary>
    private static IReadOnlyDictionary<string, Tensor> Prefix(Random random, PowerCase c, int batch, int steps) =>
        s_power.Call("recurrent", new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, batch, steps, c.H, c.K), ["k"] = TestTensors.Normal(random, 1, batch, steps, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, batch, steps, c.H, c.V),
        }, c.Deg);

    /// <summary>The case's inputs with the initial state and normaliser a two-step prefix leaves.</summary>
    private static Dictionary<string, Tensor> WithPrefixState(PowerCase c, Random random)
    {
        var inputs = c.Inputs(random);
        var prefix = Prefix(random, c, c.B, 2);
        (inputs["initial_state"], inputs["initial_normalizer"]) = (prefix["final_state"], prefix["final_normalizer"]);
        return inputs;
    }

    [Law]
    public bool Quadratic_equals_recurrent_equals_chunked_for_any_chunk_size(PowerCase c)
    {
        // Unnormalised, so the comparison is on the sums themselves: the feature-map path computes (q·k)^p as a sum
        // of signed terms, whose rounding is relative to (|q||k|)^p; after division by a row's own small weight sum
        // that rounding is amplified by the row's conditioning, which is the problem's, not a variant's.
        var inputs = WithPrefixState(c, new Random(c.Seed));
        string[] parameters = [c.Deg, "normalize=false", FormCalls.ChunkSize(c.ChunkSize)];
        var quadratic = s_power.Call("quadratic", inputs, parameters);
        Tensor magnitude = Magnitude(inputs, c.Degree);
        return CloseAlongPaths(s_power.Call("recurrent", inputs, parameters), quadratic, magnitude)
            && CloseAlongPaths(s_power.Call("chunked", inputs, parameters), quadratic, magnitude);
    }

    [Law]
    public bool Normalised_output_is_the_weighted_sum_over_the_sum_of_weights_plus_eps_in_every_variant(PowerCase c)
    {
        var inputs = WithPrefixState(c, new Random(c.Seed));
        string eps = c.Normalize ? "0" : "1e-3";
        // The weight sum d_i is the unnormalised output for v = 1 with the state's value column set to z.
        Tensor z0 = inputs["initial_normalizer"];
        var ones = new Tensor([c.B, c.T, c.H, 1], Enumerable.Repeat(1.0, c.B * c.T * c.H).ToArray());
        var weightSums = inputs.With("v", ones).With("initial_state", z0.Reshape(c.B, c.H, z0.Dim(2), 1));
        return s_power.Variants.All(variant =>
        {
            string[] plain = [c.Deg, "normalize=false", FormCalls.ChunkSize(c.ChunkSize)];
            Tensor n = s_power.Call(variant, inputs, plain)["o"], d = s_power.Call(variant, weightSums, plain)["o"];
            Tensor o = s_power.Call(variant, inputs, c.Deg, "normalize=true", "eps=" + eps, FormCalls.ChunkSize(c.ChunkSize))["o"];
            double e = double.Parse(eps, CultureInfo.InvariantCulture);
            var expected = new Tensor(n.ShapeArray(), n.Data.Select((x, i) => x / (d.Data[i / c.V] + e)).ToArray());
            // Same arithmetic on both sides (the v = 1 column repeats z's updates): equal to rounding.
            return TestTensors.Close(o, expected, SameMathInDouble);
        });
    }

    [Law]
    public bool The_feature_map_gives_the_power_of_the_dot_product_in_dimension_k_plus_p_minus_1_choose_p(PowerCase c)
    {
        var random = new Random(c.Seed);
        double[] x = TestTensors.Normal(random, 1, c.K).Data, y = TestTensors.Normal(random, 1, c.K).Data;
        var map = new SymmetricPower(c.K, c.Degree);
        double[] φx = map.Of(x), φy = map.Of(y);
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
    }

    [Law]
    public bool Degree_one_unnormalised_equals_linear_attention_with_the_identity_map(PowerCase c)
    {
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random).With("g", null);
        inputs["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        inputs["initial_normalizer"] = TestTensors.Normal(random, 1, c.B, c.H, c.K);
        var power = s_power.Call("chunked", inputs, "deg=1", "normalize=false", FormCalls.ChunkSize(c.ChunkSize));
        var linear = new AttentionReference.Forms.Linear.Linear().Call("recurrent", inputs);
        return FormCalls.AllClose(power, linear, SameMathInDouble)
            && FormCalls.AllClose(s_power.Call("quadratic", inputs, "deg=1", "normalize=false"), power, SameMathInDouble);
    }

    [Law]
    public bool Gated_degree_one_unnormalised_equals_simple_gla(PowerCase c)
    {
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random);
        inputs["g"] = LogGates(random, c.Gates == 2, c.B, c.T, c.H);
        inputs["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        var gla = new SimpleGla().Call("recurrent", inputs);
        string[] parameters = ["deg=1", "normalize=false", FormCalls.ChunkSize(c.ChunkSize)];
        return TestTensors.Close(s_power.Call("quadratic", inputs, parameters)["o"], gla["o"], SameMathInDouble)
            && TestTensors.Close(s_power.Call("recurrent", inputs, parameters)["final_state"], gla["final_state"], SameMathInDouble)
            && TestTensors.Close(s_power.Call("chunked", inputs, parameters)["o"], gla["o"], SameMathInDouble);
    }

    [Law]
    public bool Running_a_prefix_then_the_rest_from_its_final_state_equals_one_run(PowerCase c)
    {
        var inputs = c.Inputs(new Random(c.Seed));
        int split = c.T / 2;
        // Unnormalised (see the first law); the normaliser state is passed and compared all the same.
        string[] parameters = [c.Deg, "normalize=false", FormCalls.ChunkSize(c.ChunkSize)];
        Dictionary<string, Tensor> Part(int from, int to) => inputs.ToDictionary(p => p.Key, p => Slice(p.Value, from, to));
        var whole = s_power.Call("chunked", inputs, parameters);
        var first = s_power.Call("recurrent", Part(0, split), parameters);
        var second = s_power.Call("chunked", Part(split, c.T).With("initial_state", first["final_state"]).With("initial_normalizer", first["final_normalizer"]),
            parameters);
        // The second part reads the first part's tokens through the feature-map state, the whole run directly: the
        // outputs are compared against the magnitude of the whole run on absolute values (see CloseAlongPaths).
        Tensor magnitude = Magnitude(inputs, c.Degree);
        return Within(Slice(whole["o"], split, c.T), second["o"], Slice(magnitude, split, c.T))
            && Within(Slice(whole["o"], 0, split), first["o"], Slice(magnitude, 0, split))
            && TestTensors.Close(second["final_state"], whole["final_state"], SameMathInDouble)
            && TestTensors.Close(second["final_normalizer"], whole["final_normalizer"], SameMathInDouble);
    }

    [Law]
    public bool Outputs_up_to_t_do_not_depend_on_inputs_after_t(PowerCase c)
    {
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random);
        int t = random.Next(c.T);
        string[] parameters = [c.Deg, FormCalls.ChunkSize(c.ChunkSize)];
        var before = s_power.Call("chunked", inputs, parameters)["o"];
        foreach (Tensor x in inputs.Values)
        {
            Perturb(x, t, random);
        }
        var after = s_power.Call("chunked", inputs, parameters)["o"];
        // Up to t the two runs see identical inputs through the same code.
        return TestTensors.Close(Slice(after, 0, t + 1), Slice(before, 0, t + 1), SameMathInDouble);
    }

    [Law(50)]
    public bool Strong_decay_over_48_steps_stays_exact_in_every_variant(PowerCase c)
    {
        // Log gates in [−20, −10] over 48 steps: the cumulative decay reaches e^−700 and beyond, where a factorised
        // exp(G_i)·exp(−G_j) would underflow or overflow; every variant works with differences within a chunk.
        var random = new Random(c.Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, 1, 48, 1, c.K),
            ["k"] = TestTensors.Normal(random, 1, 1, 48, 1, c.K),
            ["v"] = TestTensors.Normal(random, 1, 1, 48, 1, c.V),
            ["g"] = new Tensor([1, 48, 1], Enumerable.Range(0, 48).Select(_ => -20 + 10 * random.NextDouble()).ToArray()),
        };
        var quadratic = s_power.Call("quadratic", inputs, c.Deg, "normalize=false");
        Tensor magnitude = Magnitude(inputs, c.Degree);
        return quadratic["o"].Data.All(double.IsFinite)
            && CloseAlongPaths(s_power.Call("recurrent", inputs, c.Deg, "normalize=false"), quadratic, magnitude)
            && CloseAlongPaths(s_power.Call("chunked", inputs, c.Deg, "normalize=false", "chunk_size=48"), quadratic, magnitude)
            && CloseAlongPaths(s_power.Call("chunked", inputs, c.Deg, "normalize=false", FormCalls.ChunkSize(c.ChunkSize)), quadratic, magnitude);
    }

    [Law]
    public bool Varlen_with_cu_seqlens_equals_separate_runs_with_their_states_in_every_variant(PowerCase c)
    {
        var random = new Random(c.Seed);
        var one = c with { B = 1 };
        var inputs = one.Inputs(random);
        int cut = random.Next(c.T + 1);
        var prefix = Prefix(random, c, 2, 2);
        string[] parameters = [c.Deg, c.Degree % 2 == 0 && c.Normalize ? "normalize=true" : "normalize=false", "eps=1e-3", FormCalls.ChunkSize(c.ChunkSize)];
        var packedInputs = inputs.With("initial_state", prefix["final_state"]).With("initial_normalizer", prefix["final_normalizer"])
            .With("cu_seqlens", new Tensor([3], [0, cut, c.T], DType.I32));
        static Tensor Row(Tensor x, int n) => new([1, .. x.ShapeArray()[1..]], x.Data.AsSpan(n * (x.Length / 2), x.Length / 2).ToArray());
        return s_power.Variants.All(variant =>
        {
            var packed = s_power.Call(variant, packedInputs, parameters);
            var parts = new[] { (0, cut), (cut, c.T) }.Select((range, n) => s_power.Call(variant,
                inputs.ToDictionary(p => p.Key, p => Slice(p.Value, range.Item1, range.Item2))
                    .With("initial_state", Row(prefix["final_state"], n)).With("initial_normalizer", Row(prefix["final_normalizer"], n)),
                parameters)).ToArray();
            // Each sequence runs through the same code with the same numbers: bit for bit.
            return packed["o"].Data.SequenceEqual(parts[0]["o"].Data.Concat(parts[1]["o"].Data))
                && packed["final_state"].Data.SequenceEqual(parts[0]["final_state"].Data.Concat(parts[1]["final_state"].Data))
                && packed["final_normalizer"].Data.SequenceEqual(parts[0]["final_normalizer"].Data.Concat(parts[1]["final_normalizer"].Data));
        });
    }

    [Fact]
    public void A_degree_below_one_a_misshapen_gate_a_bad_chunk_size_and_a_non_finite_scale_are_bad_input_naming_them()
    {
        var q = Tensor.Zeros(1, 3, 2, 2);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = q, ["v"] = q };
        Assert.Contains("deg", Assert.Throws<InputException>(() => s_power.Call("recurrent", inputs, "deg=0")).Message, StringComparison.Ordinal);
        Assert.Equal("g", Assert.Throws<InputException>(() => s_power.Call("quadratic", inputs.With("g", Tensor.Zeros(1, 3, 3)))).Tensor);
        Assert.Contains("chunk_size", Assert.Throws<InputException>(() => s_power.Call("chunked", inputs, "chunk_size=0")).Message, StringComparison.Ordinal);
        foreach (string scale in new[] { "NaN", "1e400", "-inf" })
        {
            Assert.Contains("'scale'", Assert.Throws<InputException>(() => s_power.Call("quadratic", inputs, "scale=" + scale)).Message, StringComparison.Ordinal);
        }
        var wrongState = Assert.Throws<InputException>(() => s_power.Call("chunked", inputs.With("initial_state", Tensor.Zeros(1, 2, 2, 2))));
        Assert.Contains("[N,H,D,V] = [1,2,3,2]", wrongState.Message, StringComparison.Ordinal); // D = C(3, 2)
    }

    [Fact]
    public void A_degree_whose_feature_map_passes_the_bound_is_refused_at_once_in_one_line_naming_deg_and_the_bound()
    {
        // Issue #21: deg = 1000 on a 2×8×2×3 input took 27 s and 2.6 GB; D = C(1002, 1000) = 501 501 entries of 1000
        // factors each, D·p ≈ 5·10^8 > 2^22. Refused before anything is allocated, in every variant.
        var random = new Random(21);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, 2, 8, 2, 3), ["k"] = TestTensors.Normal(random, 1, 2, 8, 2, 3), ["v"] = TestTensors.Normal(random, 1, 2, 8, 2, 3),
        };
        var started = System.Diagnostics.Stopwatch.StartNew();
        foreach (string variant in s_power.Variants)
        {
            var error = Assert.Throws<InputException>(() => s_power.Call(variant, inputs, "deg=1000"));
            Assert.StartsWith("parameter 'deg': ", error.Message, StringComparison.Ordinal);
            Assert.Contains("2^22", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', error.Message);
        }
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"refusing took {started.Elapsed}");
        // K = 1 has D = 1 at every degree, but each feature still has p factors: D·p bounds it too.
        var narrow = Tensor.Zeros(1, 2, 1, 1);
        Assert.Throws<InputException>(() => s_power.Call("quadratic", new Dictionary<string, Tensor> { ["q"] = narrow, ["k"] = narrow, ["v"] = narrow }, "deg=5000000"));
        // The largest real configurations stay within the bound: K = 64, p = 4 (766 480 features) and K = 128, p = 3.
        Assert.Equal(766_480, SymmetricPower.Dimension(64, 4));
        Assert.Equal(357_760, SymmetricPower.Dimension(128, 3));
    }

    [Law(50)]
    public bool Normalised_gradients_equal_finite_differences_and_every_variants_equal_the_definitions(PowerCase c)
    {
        // Even p (every weight ≥ 0) and a state a run leaves (z ≥ 0): the denominators are sums of non-negative terms.
        // eps = 1 keeps each denominator ≥ 1: the feature-map path forms (q·k)^p to rounding relative to (|q||k|)^p, and a
        // denominator near zero would amplify it (and the finite differences' truncation) without bound.
        var random = new Random(c.Seed);
        c = c with { T = Math.Min(c.T, 8), Degree = 2 + 2 * (c.Degree % 2) };
        var inputs = WithPrefixState(c, random);
        string[] parameters = [c.Deg, "normalize=true", "eps=1", FormCalls.ChunkSize(c.ChunkSize)];
        if (!s_power.GradientsEqualFiniteDifferences("recurrent", inputs, random, parameters))
        {
            return false;
        }
        var withCotangents = s_power.WithCotangents(inputs, random, parameters);
        var expected = s_power.Gradients("recurrent", withCotangents, parameters);
        // At the inputs' unit scale, as GradientClose says why.
        return s_power.Variants.All(variant => s_power.Gradients(variant, withCotangents, parameters)
            .All(p => TestTensors.CloseAtUnitScale(p.Value, expected[p.Key], SameGradients)));
    }

    [Law]
    public bool Degree_one_unnormalised_gradients_equal_simple_glas_in_every_variant(PowerCase c)
    {
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random);
        inputs["g"] = LogGates(random, c.Gates == 2, c.B, c.T, c.H);
        inputs["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        inputs["do"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        inputs["dfinal_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        var gla = new SimpleGla().Gradients("recurrent", inputs);
        return s_power.Variants.All(variant =>
            FormCalls.AllClose(s_power.Gradients(variant, inputs, "deg=1", "normalize=false", FormCalls.ChunkSize(c.ChunkSize)), gla, SameGradients));
    }
}
