using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Forms.GatedLinear;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.Hybrid.HybridTensors;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>A small Based problem: shapes, the window, a chunk size, whether to start from a state, a seed.</summary>
public sealed record BasedCase(int B, int T, int H, int K, int V, int Window, int ChunkSize, bool WithState, int Seed)
{
    public static Arbitrary<BasedCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(1, 12)
         from h in Gen.Choose(1, 2)
         from k in Gen.Choose(1, 3)
         from v in Gen.Choose(1, 3)
         from window in Gen.Choose(1, 14)
         from chunk in Gen.Choose(1, 13)
         from withState in Gen.Elements(true, false)
         from seed in Gen.Choose(0, int.MaxValue - 1)
         select new BasedCase(b, t, h, k, v, window, chunk, withState, seed)).ToArbitrary();

    /// <summary>q, k, v and, with a state, the linear branch's initial state and normaliser.</summary>
    public Dictionary<string, Tensor> Inputs(Random random)
    {
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K), ["k"] = TestTensors.Normal(random, 1, B, T, H, K), ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
        };
        if (WithState)
        {
            // A state as a run over two earlier keys leaves it: z·φ(q) > 0 (taylor2's φ(x)·φ(y) = 1 + u + u²/2 > 0).
            var prefix = new AttentionReference.Forms.Linear.Linear().Call("recurrent", new Dictionary<string, Tensor>
            {
                ["q"] = TestTensors.Normal(random, 1, B, 2, H, K), ["k"] = TestTensors.Normal(random, 1, B, 2, H, K),
                ["v"] = TestTensors.Normal(random, 1, B, 2, H, V),
            }, "feature_map=taylor2");
            (inputs["initial_state"], inputs["initial_normalizer"]) = (prefix["final_state"], prefix["final_normalizer"]);
        }
        return inputs;
    }

    /// <summary>"window=w".</summary>
    public string WindowSetting => "window=" + Window.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// Based's laws: the stateful-form laws (state passing where the window holds only the current key), the sum of taylor2
/// linear attention and window softmax in every variant, causality, and bad input (non-finite scales included).
/// </summary>
public sealed class BasedTests : GatedLinearFormLaws
{
    // Two backward passes compute the same sums in double in other orders (as the shared gradient laws): 1e-11 relative
    // to each gradient's norm.
    private const double SameGradients = 1e-11;

    private static readonly Based s_based = new();

    private static readonly int[] s_windows = [1, 2, 5, 17, 64];

    protected override IForm Form => s_based;

    private static int Window(StatefulCase c) => s_windows[c.Seed % s_windows.Length];

    protected override FormParameters Parameters(StatefulCase c) => FormParameters.None.With("window", Window(c).ToString(CultureInfo.InvariantCulture));

    // The window branch keeps no keys across calls: a run split in two equals one run only when the window is the
    // current key alone.
    protected override bool PassesAllItReadsOn(StatefulCase c) => Window(c) == 1;

    // The linear branch's normalised output does not change when φ(q_t) is scaled (eps aside), and a window of one key
    // does not read q_t at all: at T = 1, dq is the difference of terms of unit size that cancel, rounded at their scale
    // (as linear's normalised dq). It is held to that scale, the unit scale of the inputs, instead of its own norm.
    protected override bool GradientClose(StatefulCase c, string name, Tensor actual, Tensor expected) =>
        name == "dq" ? TestTensors.CloseAtUnitScale(actual, expected, SameGradients) : base.GradientClose(c, name, actual, expected);

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
    };

    [Law]
    public bool Every_variant_equals_linear_taylor2_plus_window_softmax(BasedCase c)
    {
        var inputs = c.Inputs(new Random(c.Seed));
        // The two parts, each computed by its own form with Based's settings written out here.
        var linear = FormCatalog.Find("linear").Call("recurrent", inputs, "feature_map=taylor2", "normalize=true", "eps=1e-12", "scale=1");
        var window = FormCatalog.Find("softmax").Call("naive", new Dictionary<string, Tensor> { ["q"] = inputs["q"], ["k"] = inputs["k"], ["v"] = inputs["v"] },
            "causal=true", "window_left=" + (c.Window - 1).ToString(CultureInfo.InvariantCulture));
        var expected = new Dictionary<string, Tensor>
        {
            ["o"] = new(linear["o"].ShapeArray(), linear["o"].Data.Zip(window["o"].Data, (a, b) => a + b).ToArray()),
            ["final_state"] = linear["final_state"],
            ["final_normalizer"] = linear["final_normalizer"],
        };
        return s_based.Variants.All(variant =>
            FormCalls.AllClose(s_based.Call(variant, inputs, c.WindowSetting, FormCalls.ChunkSize(c.ChunkSize)), expected, SameMathInDouble));
    }

    [Law]
    public bool Outputs_up_to_t_do_not_depend_on_inputs_after_t(BasedCase c)
    {
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random);
        int t = random.Next(c.T);
        var before = s_based.Call("recurrent", inputs, c.WindowSetting)["o"];
        foreach (string name in new[] { "q", "k", "v" })
        {
            Perturb(inputs[name], t, random);
        }
        var after = s_based.Call("chunked", inputs, c.WindowSetting, FormCalls.ChunkSize(c.ChunkSize))["o"];
        // Identical inputs up to t: only the variants' rounding differs.
        return TestTensors.Close(Slice(after, 0, t + 1), Slice(before, 0, t + 1), SameMathInDouble);
    }

    [Fact]
    public void A_window_below_one_is_bad_input_naming_it()
    {
        var q = Tensor.Zeros(1, 3, 1, 2);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = q, ["v"] = q };
        Assert.Contains("window", Assert.Throws<InputException>(() => s_based.Call("parallel", inputs, "window=0")).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("linear_scale", "NaN")]
    [InlineData("linear_scale", "1e400")]
    [InlineData("linear_scale", "-inf")]
    [InlineData("scale", "NaN")]
    [InlineData("scale", "inf")]
    [InlineData("eps", "NaN")]
    [InlineData("eps", "-1")]
    public void A_non_finite_real_parameter_is_bad_input_naming_it_in_every_variant(string name, string value)
    {
        // Issue #21: a NaN or infinite linear_scale (or scale) was accepted and gave all-NaN outputs.
        var q = TestTensors.Normal(new Random(3), 1, 1, 3, 1, 2);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = q, ["v"] = q };
        foreach (string variant in s_based.Variants)
        {
            var error = Assert.Throws<InputException>(() => s_based.Call(variant, inputs, name + "=" + value));
            Assert.StartsWith($"parameter '{name}': expected a finite number", error.Message, StringComparison.Ordinal);
        }
    }

    [Law]
    public bool With_the_linear_branch_scaled_to_zero_the_gradients_are_nats_ls_softmax_branchs_with_every_chunk_on_softmax(BasedCase c)
    {
        // linear_scale = 0: o_lin = 0 / eps, nothing flows into the linear branch. A window of T keys is causal softmax,
        // nats_l's softmax branch when every chunk is routed to softmax.
        var random = new Random(c.Seed);
        var inputs = c.Inputs(random);
        inputs["do"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        var nats = new NatsL().Gradients("recurrent", new Dictionary<string, Tensor>
        {
            ["q"] = inputs["q"], ["k"] = inputs["k"], ["v"] = inputs["v"], ["g"] = Tensor.Zeros(c.B, c.T, c.H), ["beta"] = Tensor.Zeros(c.B, c.T, c.H),
            ["route"] = new Tensor([c.B, (c.T + c.ChunkSize - 1) / c.ChunkSize], Enumerable.Repeat(1.0, c.B * ((c.T + c.ChunkSize - 1) / c.ChunkSize)).ToArray()),
            ["do_softmax"] = inputs["do"],
        }, FormCalls.ChunkSize(c.ChunkSize));
        var softmax = new Dictionary<string, Tensor> { ["dq"] = nats["dq"], ["dk"] = nats["dk"], ["dv"] = nats["dv"] };
        return s_based.Variants.All(variant =>
        {
            var based = s_based.Gradients(variant, inputs, "linear_scale=0", "window=" + c.T.ToString(CultureInfo.InvariantCulture), FormCalls.ChunkSize(c.ChunkSize));
            return FormCalls.AllClose(based, softmax, SameGradients)
                && (!c.WithState || based["dinitial_state"].Data.All(x => x == 0) && based["dinitial_normalizer"].Data.All(x => x == 0));
        });
    }
}
