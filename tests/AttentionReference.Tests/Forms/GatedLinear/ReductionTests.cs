using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using LinearAttention = AttentionReference.Forms.Linear.Linear;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>The reductions between the forms of the linear family (FORMS.md), each for every variant.</summary>
public sealed class ReductionTests
{
    // Two forms computing the same sums in double along different code paths: a few ulps per term of size ≤ 1.
    private const double SameMathInDouble = 1e-12;

    private static readonly string[] s_variants = ["recurrent", "parallel", "chunked"];

    private static StateResult SimpleGlaRun(string variant, Tensor q, Tensor k, Tensor v, Tensor g, StatefulCase c, GatedLinearOptions o) => variant switch
    {
        "recurrent" => SimpleGla.Recurrent(q, k, v, g, o),
        "parallel" => SimpleGla.Parallel(q, k, v, g, o),
        _ => SimpleGla.Chunked(q, k, v, g, c.ChunkSize, o),
    };

    private static StateResult GlaRun(string variant, Tensor q, Tensor k, Tensor v, Tensor gk, StatefulCase c, GlaOptions o) => variant switch
    {
        "recurrent" => Gla.Recurrent(q, k, v, gk, o),
        "parallel" => Gla.Parallel(q, k, v, gk, o),
        _ => Gla.Chunked(q, k, v, gk, c.ChunkSize, o),
    };

    private static bool Close(StateResult a, StateResult b) =>
        TestTensors.Close(a.O, b.O, SameMathInDouble) && TestTensors.Close(a.FinalState, b.FinalState, SameMathInDouble);

    [Fact]
    public void Gla_with_a_key_gate_constant_over_K_equals_simple_gla() => PropertyRuns.Check(Prop.ForAll(StatefulCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v) = Qkv(c, random);
        Tensor g = c.Gates(random, c.B, c.T, c.H);
        var s0 = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        var gk = Tensor.Zeros(c.B, c.T, c.H, c.K);
        for (int i = 0; i < gk.Length; i++)
        {
            gk.Data[i] = g.Data[i / c.K];
        }
        return s_variants.All(variant => Close(
            GlaRun(variant, q, k, v, gk, c, new GlaOptions { InitialState = s0 }),
            SimpleGlaRun(variant, q, k, v, g, c, new GatedLinearOptions { InitialState = s0 })));
    }));

    [Fact]
    public void Simple_gla_with_g_equal_to_log_gamma_equals_retention() => PropertyRuns.Check(Prop.ForAll(StatefulCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var (q, k, v) = Qkv(c, random);
        var gamma = new Tensor([c.H], c.Gates(random, c.H).Data.Select(Math.Exp).ToArray());
        var g = Tensor.Zeros(c.B, c.T, c.H);
        for (int i = 0; i < g.Length; i++)
        {
            g.Data[i] = Math.Log(gamma.Data[i % c.H]);
        }
        var options = new RetentionOptions { Gamma = gamma };
        return Close(Retention.Recurrent(q, k, v, options), SimpleGla.Recurrent(q, k, v, g))
            && Close(Retention.Parallel(q, k, v, options), SimpleGla.Parallel(q, k, v, g))
            && Close(Retention.Chunked(q, k, v, c.ChunkSize, options), SimpleGla.Chunked(q, k, v, g, c.ChunkSize));
    }));

    [Fact]
    public void Retention_by_default_decays_head_h_by_one_minus_two_to_the_minus_five_minus_h() =>
        PropertyRuns.Check(Prop.ForAll(StatefulCase.Arbitrary, c =>
        {
            var (q, k, v) = Qkv(c, new Random(c.Seed));
            var retNet = new Tensor([c.H], Enumerable.Range(0, c.H).Select(h => 1 - Math.Pow(2, -5 - h)).ToArray());
            // Both runs use the same γ values through the same code: bit for bit.
            return Retention.Recurrent(q, k, v).O.Data.SequenceEqual(Retention.Recurrent(q, k, v, new RetentionOptions { Gamma = retNet }).O.Data);
        }));

    [Fact]
    public void Simple_gla_with_g_equal_to_zero_equals_linear_attention_with_the_identity_map() =>
        PropertyRuns.Check(Prop.ForAll(StatefulCase.Arbitrary, c =>
        {
            var random = new Random(c.Seed);
            var (q, k, v) = Qkv(c, random);
            var s0 = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
            var zero = Tensor.Zeros(c.B, c.T, c.H);
            var gated = new GatedLinearOptions { InitialState = s0 };
            var plain = new LinearOptions { InitialState = s0 };
            return Close(SimpleGla.Recurrent(q, k, v, zero, gated), Plain(LinearAttention.Recurrent(q, k, v, plain)))
                && Close(SimpleGla.Parallel(q, k, v, zero, gated), Plain(LinearAttention.Parallel(q, k, v, plain)))
                && Close(SimpleGla.Chunked(q, k, v, zero, c.ChunkSize, gated), Plain(LinearAttention.Chunked(q, k, v, c.ChunkSize, plain)));
        }));

    [Fact]
    public void Hgrn2_equals_gla_with_k_equal_to_one_minus_exp_gk() => PropertyRuns.Check(Prop.ForAll(StatefulCase.Arbitrary, c =>
    {
        var random = new Random(c.Seed);
        var q = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K);
        var v = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        var gk = c.Gates(random, c.B, c.T, c.H, c.K);
        var k = new Tensor(gk.ShapeArray(), gk.Data.Select(x => 1 - Math.Exp(x)).ToArray());
        return Close(Hgrn2.Recurrent(q, gk, v), Gla.Recurrent(q, k, v, gk))
            && Close(Hgrn2.Parallel(q, gk, v), Gla.Parallel(q, k, v, gk))
            && Close(Hgrn2.Chunked(q, gk, v, c.ChunkSize), Gla.Chunked(q, k, v, gk, c.ChunkSize));
    }));

    [Fact]
    public void Strong_decay_stays_finite_and_exact_where_the_factorised_form_overflows()
    {
        // 60 steps of log gate −20 sum to −1200: exp(+1200) = ∞, so exp(G_i)·exp(−G_j) would give 0·∞ = NaN.
        // The log-space forms stay finite and agree with the recurrence.
        var random = new Random(5);
        var c = new StatefulCase(1, 60, 2, 3, 2, GateRegime.Strong, "chunked", 60, 0, false, 5);
        var (q, k, v) = Qkv(c, random);
        var gk = Tensor.Zeros(1, 60, 2, 3);
        Array.Fill(gk.Data, -20.0);
        var recurrent = Gla.Recurrent(q, k, v, gk);
        foreach (var result in new[] { Gla.Parallel(q, k, v, gk), Gla.Chunked(q, k, v, gk, 60), Gla.Chunked(q, k, v, gk, 7) })
        {
            Assert.All(result.O.Data, x => Assert.True(double.IsFinite(x)));
            TestTensors.AssertClose(result.O, recurrent.O, SameMathInDouble, "o");
            TestTensors.AssertClose(result.FinalState, recurrent.FinalState, SameMathInDouble, "final_state");
        }
    }

    private static StateResult Plain(LinearResult result) => new(result.O, result.FinalState);

    private static (Tensor Q, Tensor K, Tensor V) Qkv(StatefulCase c, Random random) =>
        (TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
         TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
         TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V));
}
