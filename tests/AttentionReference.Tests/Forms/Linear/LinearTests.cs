using AttentionReference.Forms;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Forms.GatedLinear;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Linear;

/// <summary>
/// linear's laws: the stateful-form laws, the textbook sum, the feature maps, and the gated linear family's gradient edge
/// cases (linear attention is gated linear attention with no gate: its case of log gates of −20 is a plain 60 steps).
/// The case's seed also picks the feature map, normalisation (only with the maps whose scores are positive, so no
/// normaliser crosses zero), causality and performer's number of features.
/// </summary>
public sealed class LinearTests : GatedLinearFormLaws
{
    protected override IForm Form { get; } = new AttentionReference.Forms.Linear.Linear();

    private static readonly string[] s_maps = ["identity", "elu1", "relu", "taylor2", "performer"];

    internal static string Map(StatefulCase c) => Normalize(c) ? s_maps[1 + c.Seed % 4] : s_maps[c.Seed % 5];

    internal static bool Normalize(StatefulCase c) => c.Seed / 5 % 2 == 1;

    internal static bool Causal(StatefulCase c) => c.Seed / 10 % 3 != 0;

    internal static int RandomFeatures(StatefulCase c) => 1 + c.Seed / 30 % 6;

    protected override bool IsCausal(StatefulCase c) => Causal(c);

    protected override FormParameters Parameters(StatefulCase c) => FormParameters.None
        .With("feature_map", Map(c))
        .With("normalize", Normalize(c) ? "true" : "false")
        .With("causal", Causal(c) ? "true" : "false");

    // A normalised output does not change when φ(q_t) is scaled (eps aside): o_t = Σ_j A_tj v_j / Σ_j A_tj. So dq_t has no
    // component along φ(q_t), and with K = 1 it has none at all: every variant computes it as the difference of terms of
    // unit size (c_t S_t do_t and δ_t z_t) that cancel, rounded at their scale (relative errors of 1e-6 were seen on a dq of
    // 1e-11). It is held to that scale, the unit scale of the inputs, instead of its own norm.
    protected override bool GradientClose(StatefulCase c, string name, Tensor actual, Tensor expected) =>
        Normalize(c) && name == "dq" ? TestTensors.CloseAtUnitScale(actual, expected, SameGradientsInDouble)
            : base.GradientClose(c, name, actual, expected);

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t)
    {
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
        };
        if (Map(c) == "performer")
        {
            inputs["proj"] = TestTensors.Normal(new Random(c.Seed), 1, RandomFeatures(c), c.K); // the same ω in every call
        }
        return inputs;
    }

    [Law]
    public bool Every_variant_equals_the_textbook_sum_over_keys(StatefulCase c)
    {
        // o_i = scale · Σ_j w_ij v_j (÷ (scale · Σ_j w_ij + eps) when normalised), w_ij = φ(q_i)·φ(k_j), j ≤ i or all j.
        var random = new Random(c.Seed);
        string name = s_maps[c.Seed % 5];
        LinearFeatureMap map = FeatureMaps.Parse(name);
        bool normalize = map != LinearFeatureMap.Identity && Normalize(c), causal = Causal(c);
        var q = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K);
        var k = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K);
        var v = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        double[] proj = [];
        if (map == LinearFeatureMap.Performer)
        {
            inputs["proj"] = TestTensors.Normal(random, 1, RandomFeatures(c), c.K);
            proj = inputs["proj"].Data;
        }
        var expected = Tensor.Zeros(c.B, c.T, c.H, c.V);
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.H; h++)
            {
                for (int i = 0; i < c.T; i++)
                {
                    double[] φq = FeatureMaps.Of(map, Row(q, b, i, h), proj);
                    double total = 0;
                    for (int j = 0; j < (causal ? i + 1 : c.T); j++)
                    {
                        double[] φk = FeatureMaps.Of(map, Row(k, b, j, h), proj);
                        double w = φq.Zip(φk, (x, y) => x * y).Sum();
                        total += w;
                        for (int d = 0; d < c.V; d++)
                        {
                            expected[b, i, h, d] += 0.7 * w * v[b, j, h, d];
                        }
                    }
                    for (int d = 0; d < c.V && normalize; d++)
                    {
                        expected[b, i, h, d] /= 0.7 * total + 1e-10; // fla's eps: a relu query seeing no key gives 0, not 0/0
                    }
                }
            }
        }
        string[] parameters = ["feature_map=" + name, "normalize=" + (normalize ? "true" : "false"), "causal=" + (causal ? "true" : "false"),
            "scale=0.7", FormCalls.ChunkSize(c.ChunkSize)];
        return Form.Variants.All(variant => TestTensors.Close(Form.Call(variant, inputs, parameters)["o"], expected, SameMathInDouble));
    }

    [Law]
    public bool A_feature_map_equals_the_identity_map_on_mapped_queries_and_keys(StatefulCase c)
    {
        var random = new Random(c.Seed);
        string name = s_maps[c.Seed % 5];
        LinearFeatureMap map = FeatureMaps.Parse(name);
        var q = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K);
        var k = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K);
        var v = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        double[] proj = [];
        if (map == LinearFeatureMap.Performer)
        {
            inputs["proj"] = TestTensors.Normal(random, 1, RandomFeatures(c), c.K);
            proj = inputs["proj"].Data;
        }
        var mapped = Form.Call("recurrent", inputs, "feature_map=" + name, "scale=0.5");
        var plain = Form.Call("recurrent", new Dictionary<string, Tensor> { ["q"] = Mapped(q, map, proj), ["k"] = Mapped(k, map, proj), ["v"] = v },
            "scale=0.5");
        return FormCalls.AllClose(mapped, plain, SameMathInDouble);
    }

    [Law]
    public bool Taylor2_features_give_the_second_order_expansion_of_exp(StatefulCase c)
    {
        var random = new Random(c.Seed);
        double[] x = TestTensors.Normal(random, 1, c.K).Data, y = TestTensors.Normal(random, 1, c.K).Data;
        double s = x.Zip(y, (a, b) => a * b).Sum() / Math.Sqrt(c.K);
        double[] φx = FeatureMaps.Of(LinearFeatureMap.Taylor2, x);
        double[] φy = FeatureMaps.Of(LinearFeatureMap.Taylor2, y);
        double dot = φx.Zip(φy, (a, b) => a * b).Sum();
        // 1 + s + s²/2 > 1/2: a relative bound of a few ulps times the 1 + K + K² terms.
        return φx.Length == 1 + c.K + c.K * c.K && Math.Abs(dot - (1 + s + s * s / 2)) <= 1e-13 * (1 + s + s * s / 2) * φx.Length;
    }

    [Law(50)]
    public bool Gradients_of_the_identity_map_unnormalised_and_causal_are_simple_glas_with_g_zero(StatefulCase c)
    {
        // S_t = S_{t−1} + k_t v_tᵀ, o_t = scale · S_tᵀ q_t is simple_gla at g = 0: dq, dk, dv and dinitial_state agree (simple_gla's
        // dg has no counterpart; linear's dfinal_normalizer is left out, zero).
        var random = new Random(c.Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
            ["k"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
            ["do"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
            ["dfinal_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V),
        };
        if (c.WithState)
        {
            inputs["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        }
        var simpleGla = new AttentionReference.Forms.GatedLinear.SimpleGla();
        var expected = Backward(simpleGla, "recurrent", new Dictionary<string, Tensor>(inputs) { ["g"] = Tensor.Zeros(c.B, c.T, c.H) });
        return Form.Variants.All(variant =>
        {
            var actual = Backward((Form)Form, variant, inputs, FormCalls.ChunkSize(c.ChunkSize));
            return expected.Where(p => p.Key != "dg").All(p => TestTensors.Close(actual[p.Key], p.Value, SameGradientsInDouble));
        });
    }

    [Law(50)]
    public bool A_normalised_relu_query_with_no_positive_feature_has_output_and_dq_zero_and_finite_gradients(StatefulCase c)
    {
        // φ(q_t) = 0 gives o_t = 0 / (0 + eps) = 0, and its gradient c_t = scale/eps is large but meets only zeros: nothing
        // is NaN or infinite, and dq_t = 0 (relu's gradient is 0 below zero). Queries t with t % 3 = 0 are made non-positive.
        var random = new Random(c.Seed);
        var q = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K);
        for (int n = 0; n < q.Length; n++)
        {
            int t = n / (c.H * c.K) % Math.Max(c.T, 1);
            q.Data[n] = t % 3 == 0 ? -Math.Abs(q.Data[n]) : q.Data[n];
        }
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = q,
            ["k"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
            ["do"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
        };
        string[] parameters = ["feature_map=relu", "normalize=true", "causal=" + (Causal(c) ? "true" : "false"), FormCalls.ChunkSize(c.ChunkSize)];
        return Form.Variants.All(variant =>
        {
            var o = Form.Call(variant, inputs, parameters)["o"];
            var gradients = Backward((Form)Form, variant, inputs, parameters);
            bool zeroRows = Enumerable.Range(0, q.Length).All(n => n / (c.H * c.K) % c.T % 3 != 0 || gradients["dq"].Data[n] == 0)
                && Enumerable.Range(0, o.Length).All(n => n / (c.H * c.V) % c.T % 3 != 0 || o.Data[n] == 0);
            return zeroRows && gradients.Values.All(g => g.Data.All(double.IsFinite));
        });
    }

    [Fact]
    public void Relus_gradient_at_zero_is_zero_as_pytorchs()
    {
        // relu′(0) is a convention: PyTorch's relu passes no gradient at 0 (threshold_backward: x > 0). A query or key entry
        // at exactly 0 gets dq = dk = 0 there in every variant.
        var random = new Random(3);
        var q = TestTensors.Normal(random, 1, 1, 4, 1, 3);
        var k = TestTensors.Normal(random, 1, 1, 4, 1, 3);
        q.Data[4] = 0;
        k.Data[7] = 0;
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = q, ["k"] = k, ["v"] = TestTensors.Normal(random, 1, 1, 4, 1, 2), ["do"] = TestTensors.Normal(random, 1, 1, 4, 1, 2),
        };
        foreach (string variant in Form.Variants)
        {
            var gradients = Backward((Form)Form, variant, inputs, "feature_map=relu", "chunk_size=3");
            Assert.Equal(0.0, gradients["dq"].Data[4]);
            Assert.Equal(0.0, gradients["dk"].Data[7]);
        }
    }

    [Fact]
    public void Performer_features_estimate_exp_of_the_scaled_dot_product()
    {
        // E_ω[φ(x)·φ(y)] = exp(x·y/√K) for ω ~ N(0, I) (Choromanski et al. 2021, Lemma 1). With M = 40000 features and
        // |x|, |y| ≈ 0.5·√K the estimator's relative standard deviation is below 1%; 5% is five deviations and more.
        var random = new Random(11);
        const int K = 4, M = 40_000;
        var proj = TestTensors.Normal(random, 1, M, K);
        for (int trial = 0; trial < 5; trial++)
        {
            double[] x = TestTensors.Normal(random, 0.5, K).Data, y = TestTensors.Normal(random, 0.5, K).Data;
            double[] φx = FeatureMaps.Of(LinearFeatureMap.Performer, x, proj.Data);
            double[] φy = FeatureMaps.Of(LinearFeatureMap.Performer, y, proj.Data);
            double estimate = φx.Zip(φy, (a, b) => a * b).Sum();
            double exact = Math.Exp(x.Zip(y, (a, b) => a * b).Sum() / Math.Sqrt(K));
            Assert.InRange(estimate / exact, 0.95, 1.05);
            Assert.All(φx, f => Assert.True(f > 0)); // positive random features
        }
    }

    [Fact]
    public void Performer_without_proj_and_proj_without_performer_and_a_state_of_the_wrong_F_are_bad_input()
    {
        var q = Tensor.Zeros(1, 2, 1, 3);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = q, ["v"] = q };
        var missing = Assert.Throws<InputException>(() => Form.Call("recurrent", inputs, "feature_map=performer"));
        Assert.Equal("proj", missing.Tensor);
        var unused = Assert.Throws<InputException>(() => Form.Call("recurrent", new Dictionary<string, Tensor>(inputs) { ["proj"] = Tensor.Zeros(2, 3) }));
        Assert.Equal("proj", unused.Tensor);
        var wrongState = Assert.Throws<InputException>(() =>
            Form.Call("recurrent", new Dictionary<string, Tensor>(inputs) { ["initial_state"] = Tensor.Zeros(1, 1, 3, 3) }, "feature_map=taylor2"));
        Assert.Contains("initial_state", wrongState.Message, StringComparison.Ordinal);
        Assert.Contains("[N,H,F,V] = [1,1,13,3]", wrongState.Message, StringComparison.Ordinal); // F = 1 + 3 + 9
        var wrongNormalizer = Assert.Throws<InputException>(() =>
            Form.Call("chunked", new Dictionary<string, Tensor>(inputs) { ["initial_normalizer"] = Tensor.Zeros(1, 1, 4) }));
        Assert.Equal("initial_normalizer", wrongNormalizer.Tensor);
        var eps = Assert.Throws<InputException>(() => Form.Call("recurrent", inputs, "eps=-1"));
        Assert.Contains("eps", eps.Message, StringComparison.Ordinal);
    }

    /// <summary>The backward pass of <paramref name="variant"/> on inputs that carry their cotangents, parameters "name=value".</summary>
    internal static IReadOnlyDictionary<string, Tensor> Backward(Form form, string variant, IReadOnlyDictionary<string, Tensor> inputs, params string[] parameters) =>
        form.Backward(variant, form.Contract.Bind(inputs, new FormParameters(parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]))));

    private static double[] Row(Tensor x, int b, int t, int h) =>
        x.Data.AsSpan(((b * x.Dim(1) + t) * x.Dim(2) + h) * x.Dim(3), x.Dim(3)).ToArray();

    private static Tensor Mapped(Tensor x, LinearFeatureMap map, double[] proj)
    {
        int rows = x.Length / Math.Max(1, x.Dim(3));
        int f = FeatureMaps.Dimension(map, x.Dim(3), x.Dim(3) == 0 ? 0 : proj.Length / x.Dim(3));
        var data = new double[rows * f];
        for (int r = 0; r < rows && x.Dim(3) > 0; r++)
        {
            FeatureMaps.Apply(map, x.Data.AsSpan(r * x.Dim(3), x.Dim(3)), data.AsSpan(r * f, f), proj);
        }
        return new Tensor([x.Dim(0), x.Dim(1), x.Dim(2), f], data);
    }
}
