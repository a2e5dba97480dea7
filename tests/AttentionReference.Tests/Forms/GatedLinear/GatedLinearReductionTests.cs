using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>The reductions between the forms of the gated linear family (FORMS.md), each for every variant, outputs and gradients.</summary>
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

    // Gradients of two forms along different code paths (another recurrence, a sum over K in another order): the shared
    // gradient laws' bound, 1e-11 relative to each gradient's norm (StatefulGradientLaws).
    private const double SameGradientsInDouble = 1e-11;

    [Law]
    public bool Gla_gradients_with_a_key_gate_constant_over_K_are_simple_glas_with_dg_the_sum_of_dgk_over_K(StatefulCase c)
    {
        var random = new Random(c.Seed);
        var x = WithCotangents(c, random, Qkv(c, random));
        Tensor g = c.Gates(random, c.B, c.T, c.H);
        var gk = Tensor.Zeros(c.B, c.T, c.H, c.K);
        for (int i = 0; i < gk.Length; i++)
        {
            gk.Data[i] = g.Data[i / c.K];
        }
        return s_variants.All(variant =>
        {
            var gla = Gradients(new Gla(), variant, new Dictionary<string, Tensor>(x) { ["gk"] = gk }, c);
            var simple = Gradients(new SimpleGla(), variant, new Dictionary<string, Tensor>(x) { ["g"] = g }, c);
            return Same(gla, simple, "dq", "dk", "dv", "dinitial_state")
                && TestTensors.Close(SumOverLastAxis(gla["dgk"]), simple["dg"], SameGradientsInDouble);
        });
    }

    [Law]
    public bool Retention_gradients_are_simple_glas_with_g_equal_to_log_gamma_and_dgamma_the_sum_of_dg_over_gamma(StatefulCase c)
    {
        var random = new Random(c.Seed);
        var x = WithCotangents(c, random, Qkv(c, random));
        var gamma = new Tensor([c.H], c.Gates(random, c.H).Data.Select(Math.Exp).ToArray());
        var g = Tensor.Zeros(c.B, c.T, c.H);
        for (int i = 0; i < g.Length; i++)
        {
            g.Data[i] = Math.Log(gamma.Data[i % c.H]);
        }
        return s_variants.All(variant =>
        {
            var retention = Gradients(new Retention(), variant, new Dictionary<string, Tensor>(x) { ["gamma"] = gamma }, c);
            var simple = Gradients(new SimpleGla(), variant, new Dictionary<string, Tensor>(x) { ["g"] = g }, c);
            // dγ_h = Σ_t dg_t / γ_h over every step and sequence of head h.
            var dgamma = new Tensor([c.H], Enumerable.Range(0, c.H)
                .Select(h => simple["dg"].Data.Where((_, i) => i % c.H == h).Sum() / gamma.Data[h]).ToArray());
            return Same(retention, simple, "dq", "dk", "dv", "dinitial_state")
                && TestTensors.Close(retention["dgamma"], dgamma, SameGradientsInDouble);
        });
    }

    [Law]
    public bool Hgrn2_gradients_are_glas_with_k_equal_to_one_minus_exp_gk_composed(StatefulCase c)
    {
        var random = new Random(c.Seed);
        var x = WithCotangents(c, random, new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
        });
        var gk = c.Gates(random, c.B, c.T, c.H, c.K);
        var k = new Tensor(gk.ShapeArray(), gk.Data.Select(a => 1 - Math.Exp(a)).ToArray());
        return s_variants.All(variant =>
        {
            var hgrn2 = Gradients(new Hgrn2(), variant, new Dictionary<string, Tensor>(x) { ["gk"] = gk }, c);
            var gla = Gradients(new Gla(), variant, new Dictionary<string, Tensor>(x) { ["k"] = k, ["gk"] = gk }, c);
            // k = 1 − exp(gk): dgk = gla's dgk − exp(gk) ⊙ dk.
            var dgk = new Tensor(gk.ShapeArray(), gk.Data.Select((a, i) => gla["dgk"].Data[i] - Math.Exp(a) * gla["dk"].Data[i]).ToArray());
            return Same(hgrn2, gla, "dq", "dv", "dinitial_state") && TestTensors.Close(hgrn2["dgk"], dgk, SameGradientsInDouble);
        });
    }

    /// <summary>The backward pass of <paramref name="variant"/> at the case's chunk size.</summary>
    private static IReadOnlyDictionary<string, Tensor> Gradients(Form form, string variant, IReadOnlyDictionary<string, Tensor> inputs, StatefulCase c) =>
        form.Backward(variant, form.Contract.Bind(inputs, FormParameters.None.With("chunk_size", c.ChunkSize.ToString(CultureInfo.InvariantCulture))));

    /// <summary>An initial state and the cotangents do and dfinal_state of the case.</summary>
    private static Dictionary<string, Tensor> WithCotangents(StatefulCase c, Random random, Dictionary<string, Tensor> x)
    {
        x["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        x["do"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V);
        x["dfinal_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        return x;
    }

    private static bool Same(IReadOnlyDictionary<string, Tensor> actual, IReadOnlyDictionary<string, Tensor> expected, params string[] names) =>
        names.All(name => TestTensors.Close(actual[name], expected[name], SameGradientsInDouble));

    /// <summary>x summed over its last axis.</summary>
    private static Tensor SumOverLastAxis(Tensor x)
    {
        int[] shape = x.ShapeArray();
        int width = shape[^1];
        return new Tensor(shape[..^1], Enumerable.Range(0, x.Length / width).Select(i => x.Data.Skip(i * width).Take(width).Sum()).ToArray());
    }

    private static Dictionary<string, Tensor> Qkv(StatefulCase c, Random random) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
        ["k"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
    };
}
