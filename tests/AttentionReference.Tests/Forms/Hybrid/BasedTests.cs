using AttentionReference.Forms.Hybrid;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using LinearAttention = AttentionReference.Forms.Linear.Linear;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>The laws of Based: the sum of taylor2 linear attention and window softmax, in every variant.</summary>
public sealed class BasedTests
{
    // The same sums in double along different paths: a few ulps per term, relative to outputs of size ~1.
    private const double SameMathInDouble = 1e-12;

    /// <summary>A small problem: shapes, the window, a chunk size, whether to start from a state, a seed.</summary>
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

        public (Tensor Q, Tensor K, Tensor V, BasedOptions Options) Inputs(Random random)
        {
            var (q, k, v) = (TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1, B, T, H, V));
            var options = new BasedOptions { Window = Window };
            if (WithState)
            {
                // A state as a run over two earlier keys leaves it: z·φ(q) > 0 (taylor2's φ(x)·φ(y) = 1 + u + u²/2 > 0).
                var prefix = new LinearAttention().Call("recurrent", new Dictionary<string, Tensor>
                {
                    ["q"] = TestTensors.Normal(random, 1, B, 2, H, K), ["k"] = TestTensors.Normal(random, 1, B, 2, H, K),
                    ["v"] = TestTensors.Normal(random, 1, B, 2, H, V),
                }, "feature_map=taylor2");
                options = options with { InitialState = prefix["final_state"], InitialNormalizer = prefix["final_normalizer"] };
            }
            return (q, k, v, options);
        }
    }

    [Fact]
    public void Every_variant_equals_linear_taylor2_plus_window_softmax() => PropertyRuns.Check(Prop.ForAll(BasedCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, options) = c.Inputs(random);
        // The two parts, each computed by its own form with Based's settings written out here.
        var linearInputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        if (options.InitialState is not null)
        {
            (linearInputs["initial_state"], linearInputs["initial_normalizer"]) = (options.InitialState, options.InitialNormalizer!);
        }
        var linear = new LinearAttention().Call("recurrent", linearInputs, "feature_map=taylor2", "normalize=true", "eps=1e-12", "scale=1");
        var window = new SoftmaxInputs(q, k, v) { Causal = true, WindowLeft = c.Window - 1 }.Run("naive");
        var sum = new Tensor(linear["o"].ShapeArray(), linear["o"].Data.Zip(window.O.Data, (a, b) => a + b).ToArray());
        return new[] { Based.Recurrent(q, k, v, options), Based.Parallel(q, k, v, options), Based.Chunked(q, k, v, c.ChunkSize, options) }
            .All(r => TestTensors.Close(r.O, sum, SameMathInDouble) && TestTensors.Close(r.FinalState, linear["final_state"], SameMathInDouble)
                && TestTensors.Close(r.FinalNormalizer, linear["final_normalizer"], SameMathInDouble));
    }));

    [Fact]
    public void Outputs_up_to_t_do_not_depend_on_inputs_after_t() => PropertyRuns.Check(Prop.ForAll(BasedCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v, options) = c.Inputs(random);
        int t = random.Next(c.T);
        var before = Based.Recurrent(q, k, v, options).O;
        foreach (var x in new[] { q, k, v })
        {
            PowerTests.Perturb(x, t, random);
        }
        var after = Based.Chunked(q, k, v, c.ChunkSize, options).O;
        // Identical inputs up to t: only the variants' rounding differs.
        return TestTensors.Close(PowerTests.Slice(after, 0, t + 1), PowerTests.Slice(before, 0, t + 1), SameMathInDouble);
    }));

    [Fact]
    public void A_window_below_one_is_bad_input_naming_it()
    {
        var q = Tensor.Zeros(1, 3, 1, 2);
        Assert.Contains("window", Assert.Throws<InputException>(() => Based.Parallel(q, q, q, new BasedOptions { Window = 0 })).Message, StringComparison.Ordinal);
    }
}
