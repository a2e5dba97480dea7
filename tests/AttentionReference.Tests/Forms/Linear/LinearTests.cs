using AttentionReference.Forms;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Linear;

/// <summary>
/// linear's laws: the stateful-form laws, the textbook sum, the feature maps. The case's seed also picks the feature
/// map, normalisation (only with the maps whose scores are positive, so no normaliser crosses zero), causality and
/// performer's number of features.
/// </summary>
public sealed class LinearTests : StatefulFormLaws
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
