using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>The reductions between the forms of the gated linear family (FORMS.md), each for every variant.</summary>
public sealed class GatedLinearReductionTests
{
    // Two forms computing the same sums in double along different code paths: a few ulps per term of size ≤ 1 (every
    // decay factor is ≤ 1), over at most 48 terms; 1e-12 relative leaves a margin of about 100.
    private const double SameMathInDouble = 1e-12;

    private static readonly string[] s_variants = ["recurrent", "parallel", "chunked"];

    private static bool SameInEveryVariant(StatefulCase c, IForm form, IReadOnlyDictionary<string, Tensor> inputs,
        IForm reduced, IReadOnlyDictionary<string, Tensor> reducedInputs) =>
        s_variants.All(variant => FormCalls.AllClose(
            form.Call(variant, inputs, FormCalls.ChunkSize(c.ChunkSize)),
            reduced.Call(variant, reducedInputs, FormCalls.ChunkSize(c.ChunkSize)), SameMathInDouble));

    [Law]
    public bool Gla_with_a_key_gate_constant_over_K_equals_simple_gla(StatefulCase c)
    {
        var random = new Random(c.Seed);
        var x = Qkv(c, random);
        Tensor g = c.Gates(random, c.B, c.T, c.H);
        x["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        var gk = Tensor.Zeros(c.B, c.T, c.H, c.K);
        for (int i = 0; i < gk.Length; i++)
        {
            gk.Data[i] = g.Data[i / c.K];
        }
        return SameInEveryVariant(c, new Gla(), new Dictionary<string, Tensor>(x) { ["gk"] = gk },
            new SimpleGla(), new Dictionary<string, Tensor>(x) { ["g"] = g });
    }

    [Law]
    public bool Simple_gla_with_g_equal_to_log_gamma_equals_retention(StatefulCase c)
    {
        var random = new Random(c.Seed);
        var x = Qkv(c, random);
        var gamma = new Tensor([c.H], c.Gates(random, c.H).Data.Select(Math.Exp).ToArray());
        var g = Tensor.Zeros(c.B, c.T, c.H);
        for (int i = 0; i < g.Length; i++)
        {
            g.Data[i] = Math.Log(gamma.Data[i % c.H]);
        }
        return SameInEveryVariant(c, new Retention(), new Dictionary<string, Tensor>(x) { ["gamma"] = gamma },
            new SimpleGla(), new Dictionary<string, Tensor>(x) { ["g"] = g });
    }

    [Law]
    public bool Retention_by_default_decays_head_h_by_one_minus_two_to_the_minus_five_minus_h(StatefulCase c)
    {
        var x = Qkv(c, new Random(c.Seed));
        var retNet = new Tensor([c.H], Enumerable.Range(0, c.H).Select(h => 1 - Math.Pow(2, -5 - h)).ToArray());
        // Both runs use the same γ values through the same code: bit for bit.
        return new Retention().Call(c.Variant, x)["o"].Data
            .SequenceEqual(new Retention().Call(c.Variant, new Dictionary<string, Tensor>(x) { ["gamma"] = retNet })["o"].Data);
    }

    [Law]
    public bool Simple_gla_with_g_equal_to_zero_equals_linear_attention_with_the_identity_map(StatefulCase c)
    {
        var random = new Random(c.Seed);
        var x = Qkv(c, random);
        x["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        var gated = new Dictionary<string, Tensor>(x) { ["g"] = Tensor.Zeros(c.B, c.T, c.H) };
        // linear also returns its normaliser; the shared outputs are compared.
        return s_variants.All(variant =>
        {
            var linear = FormCatalog.Find("linear").Call(variant, x, FormCalls.ChunkSize(c.ChunkSize));
            var simple = new SimpleGla().Call(variant, gated, FormCalls.ChunkSize(c.ChunkSize));
            return FormCalls.AllClose(linear, simple, SameMathInDouble);
        });
    }

    [Law]
    public bool Hgrn2_equals_gla_with_k_equal_to_one_minus_exp_gk(StatefulCase c)
    {
        var random = new Random(c.Seed);
        var q = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K);
        var v = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        var gk = c.Gates(random, c.B, c.T, c.H, c.K);
        var k = new Tensor(gk.ShapeArray(), gk.Data.Select(x => 1 - Math.Exp(x)).ToArray());
        return SameInEveryVariant(c, new Hgrn2(), new Dictionary<string, Tensor> { ["q"] = q, ["gk"] = gk, ["v"] = v },
            new Gla(), new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["gk"] = gk });
    }

    [Fact]
    public void Strong_decay_stays_finite_and_exact_where_the_factorised_form_overflows()
    {
        // 60 steps of log gate −20 sum to −1200: exp(+1200) = ∞, so exp(G_i)·exp(−G_j) would give 0·∞ = NaN.
        // The log-space forms stay finite and agree with the recurrence.
        var c = new StatefulCase(1, 60, 2, 3, 2, GateRegime.Strong, "chunked", 60, 0, false, 5);
        var x = Qkv(c, new Random(5));
        var gk = Tensor.Zeros(1, 60, 2, 3);
        Array.Fill(gk.Data, -20.0);
        x["gk"] = gk;
        var gla = new Gla();
        var recurrent = gla.Call("recurrent", x);
        foreach (var result in new[] { gla.Call("parallel", x), gla.Call("chunked", x, "chunk_size=60"), gla.Call("chunked", x, "chunk_size=7") })
        {
            Assert.All(result["o"].Data, value => Assert.True(double.IsFinite(value)));
            TestTensors.AssertClose(result["o"], recurrent["o"], SameMathInDouble, "o");
            TestTensors.AssertClose(result["final_state"], recurrent["final_state"], SameMathInDouble, "final_state");
        }
    }

    private static Dictionary<string, Tensor> Qkv(StatefulCase c, Random random) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
        ["k"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
    };
}
