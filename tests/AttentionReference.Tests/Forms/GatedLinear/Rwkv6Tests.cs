using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>How the log decays w are drawn.</summary>
public enum DecayRegime
{
    /// <summary>w ∈ [−0.5, 0]: long memory.</summary>
    Mild,
    /// <summary>w ∈ [−20, 0]: the state forgets almost everything each step.</summary>
    Strong,
    /// <summary>Each element either tiny (−1e-4·u) or large (−20 + u): both ends in one tensor.</summary>
    Mixed,
}

/// <summary>A random RWKV-6 problem: T = 1 upwards, odd head dims, every decay regime, with or without a state.</summary>
public sealed record Rwkv6Case(int B, int T, int H, int K, int V, DecayRegime Regime, bool WithState, int ChunkSize, int Seed)
{
    public (Tensor Q, Tensor K, Tensor V, Tensor W, Tensor U, Tensor? S0) Inputs()
    {
        var random = new Random(Seed);
        var w = Tensor.Zeros(B, T, H, K);
        for (int n = 0; n < w.Length; n++)
        {
            double x = random.NextDouble();
            w.Data[n] = Regime switch
            {
                DecayRegime.Mild => -0.5 * x,
                DecayRegime.Strong => -20 * x,
                _ => random.Next(2) == 0 ? -1e-4 * x : -20 + x,
            };
        }
        return (TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1, B, T, H, K),
                TestTensors.Normal(random, 1, B, T, H, V), w, TestTensors.Normal(random, 1, H, K),
                WithState ? TestTensors.Normal(random, 1, B, H, K, V) : null);
    }

    /// <summary>The inputs by name, as the form takes them.</summary>
    public static Dictionary<string, Tensor> Named(Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, Tensor? s0)
    {
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["w"] = w, ["u"] = u };
        if (s0 is not null)
        {
            inputs["initial_state"] = s0;
        }
        return inputs;
    }

    public static Arbitrary<Rwkv6Case> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(1, 20)
         from h in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 3, 4, 7)
         from v in Gen.Elements(1, 2, 5)
         from regime in Gen.Elements(DecayRegime.Mild, DecayRegime.Strong, DecayRegime.Mixed)
         from withState in Gen.Elements(false, true)
         from chunk in Gen.Choose(1, t + 3)
         from seed in Gen.Choose(0, int.MaxValue)
         select new Rwkv6Case(b, t, h, k, v, regime, withState, chunk, seed)).ToArbitrary();
}

/// <summary>
/// rwkv6's laws: the stateful-form laws and the family's gradient edge cases (w drawn as the cases' log gates, u the same
/// in every call of a case), and on <see cref="Rwkv6Case"/>: the definition written out as fla's naive loop, exclusive gla
/// at u = 0, the scale on q; at u = 0 the gradients of simple_gla and gla one step behind.
/// </summary>
public sealed class Rwkv6Tests : GatedLinearFormLaws
{
    protected override IForm Form { get; } = new Rwkv6();

    protected override Dictionary<string, Tensor> AtLogGate(StatefulCase c, Dictionary<string, Tensor> inputs, double logGate)
    {
        Array.Fill(inputs["w"].Data, logGate);
        return inputs;
    }

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t) => new()
    {
        ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
        ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
        ["w"] = c.Gates(random, b, t, c.H, c.K),
        ["u"] = TestTensors.Normal(new Random(c.Seed), 1, c.H, c.K), // one bonus per head, the same in every call of the case
    };

    private IReadOnlyDictionary<string, Tensor> Run(string variant, Rwkv6Case c, Dictionary<string, Tensor> inputs, params string[] parameters) =>
        Form.Call(variant, inputs, [FormCalls.ChunkSize(c.ChunkSize), .. parameters]);

    [Law]
    public bool Recurrent_equals_the_definition_written_out(Rwkv6Case c)
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        var result = Run("recurrent", c, Rwkv6Case.Named(q, k, v, w, u, s0));
        var (o, s) = Definition(q, k, v, w, u, s0);
        return TestTensors.Close(result["o"], o, SameMathInDouble) && TestTensors.Close(result["final_state"], s, SameMathInDouble);
    }

    [Law]
    public bool With_zero_bonus_every_variant_is_exclusive_gla(Rwkv6Case c)
    {
        var (q, k, v, w, _, s0) = c.Inputs();
        var inputs = Rwkv6Case.Named(q, k, v, w, Tensor.Zeros(c.H, c.K), s0);
        var (o, s) = ExclusiveGla(q, k, v, w, s0);
        return Form.Variants.All(variant => Run(variant, c, inputs) is var result
            && TestTensors.Close(result["o"], o, SameMathInDouble) && TestTensors.Close(result["final_state"], s, SameMathInDouble));
    }

    [Law]
    public bool The_scale_multiplies_the_queries(Rwkv6Case c)
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        double scale = (1 + c.Seed % 300) / 100.0;
        var scaledQ = new Tensor(q.ShapeArray(), q.Data.Select(x => x * scale).ToArray());
        var given = Run("recurrent", c, Rwkv6Case.Named(q, k, v, w, u, s0), "scale=" + scale.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        var folded = Run("recurrent", c, Rwkv6Case.Named(scaledQ, k, v, w, u, s0), "scale=1");
        return FormCalls.AllClose(given, folded, SameMathInDouble);
    }

    [Law(50)]
    public bool With_zero_bonus_and_a_decay_constant_over_K_the_gradients_are_simple_glas_one_step_behind(StatefulCase c)
    {
        // rwkv6 at u = 0 reads S_{t−1} (exclusive); simple_gla reads S_t. On T + 1 steps with k, v, g shifted one step later
        // (k'_0 = v'_0 = 0, g'_0 = 0) and q one step earlier (q'_T = 0), simple_gla's S'_t is rwkv6's S_{t−1}: its o'_t is
        // rwkv6's o_t, its last state rwkv6's final state. So dq = dq'[0, T), dk = dk'[1, T], dv = dv'[1, T],
        // Σ_c dw_tc = dg'_{t+1}, and dinitial_state agrees, for every variant of rwkv6.
        var (inputs, gate) = ZeroBonusCase(c, constantOverK: true);
        var shifted = OneStepBehind(inputs, "g", gate);
        var expected = Gradients(new SimpleGla(), "recurrent", shifted, c);
        return Form.Variants.All(variant =>
        {
            var actual = Gradients(variant, inputs, c);
            return OneStepBehindAgrees(c, actual, expected, "dg");
        });
    }

    [Law(50)]
    public bool With_zero_bonus_and_a_decay_per_key_channel_the_gradients_are_glas_one_step_behind(StatefulCase c)
    {
        // The same shift with gla and w per key channel: the outputs agree, and the gradients with dgk'_{t+1} = dw_t (nothing summed).
        var (inputs, gate) = ZeroBonusCase(c, constantOverK: false);
        var shifted = OneStepBehind(inputs, "gk", gate);
        var gla = new Gla();
        var glaOutputs = gla.Call("recurrent", shifted.Where(p => !p.Key.StartsWith('d')).ToDictionary());
        var expected = Gradients(gla, "recurrent", shifted, c);
        return Form.Variants.All(variant =>
        {
            var outputs = Run(variant, inputs.Where(p => !p.Key.StartsWith('d')).ToDictionary(), c);
            return TestTensors.Close(outputs["o"], SliceTime(glaOutputs["o"], 0, c.T), SameMathInDouble)
                && TestTensors.Close(outputs["final_state"], glaOutputs["final_state"], SameMathInDouble)
                && OneStepBehindAgrees(c, Gradients(variant, inputs, c), expected, "dgk");
        });
    }

    /// <summary>q, k, v, w (= g on every key channel, or per channel), u = 0, an initial state when the case has one, and cotangents.</summary>
    private static (Dictionary<string, Tensor> Inputs, Tensor Gate) ZeroBonusCase(StatefulCase c, bool constantOverK)
    {
        var random = new Random(c.Seed);
        Tensor gate = constantOverK ? c.Gates(random, c.B, c.T, c.H) : c.Gates(random, c.B, c.T, c.H, c.K);
        var w = Tensor.Zeros(c.B, c.T, c.H, c.K);
        for (int n = 0; n < w.Length; n++)
        {
            w.Data[n] = constantOverK ? gate.Data[n / c.K] : gate.Data[n];
        }
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
            ["k"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
            ["w"] = w,
            ["u"] = Tensor.Zeros(c.H, c.K),
            ["do"] = TestTensors.Normal(random, 1, c.B, c.T, c.H, c.V),
            ["dfinal_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V),
        };
        if (c.WithState)
        {
            inputs["initial_state"] = TestTensors.Normal(random, 1, c.B, c.H, c.K, c.V);
        }
        return (inputs, gate);
    }

    /// <summary>The gla-side inputs on T + 1 steps: k, v and the gate one step later, q and do one step earlier.</summary>
    private static Dictionary<string, Tensor> OneStepBehind(Dictionary<string, Tensor> inputs, string gateName, Tensor gate)
    {
        var shifted = new Dictionary<string, Tensor>
        {
            ["q"] = Padded(inputs["q"], 0, 1), ["do"] = Padded(inputs["do"], 0, 1),
            ["k"] = Padded(inputs["k"], 1, 0), ["v"] = Padded(inputs["v"], 1, 0), [gateName] = Padded(gate, 1, 0),
            ["dfinal_state"] = inputs["dfinal_state"],
        };
        if (inputs.TryGetValue("initial_state", out Tensor? s0))
        {
            shifted["initial_state"] = s0;
        }
        return shifted;
    }

    /// <summary>rwkv6's gradients against the shifted form's: dq on [0, T), dk, dv on [1, T], the gate's on [1, T] (dw summed over K for a per-head gate).</summary>
    private static bool OneStepBehindAgrees(StatefulCase c, IReadOnlyDictionary<string, Tensor> actual, IReadOnlyDictionary<string, Tensor> expected, string gate)
    {
        Tensor dw = actual["dw"];
        if (expected[gate].Rank == 3)
        {
            dw = Tensor.Zeros(c.B, c.T, c.H);
            for (int n = 0; n < actual["dw"].Length; n++)
            {
                dw.Data[n / c.K] += actual["dw"].Data[n];
            }
        }
        return TestTensors.Close(actual["dq"], SliceTime(expected["dq"], 0, c.T), SameGradientsInDouble)
            && TestTensors.Close(actual["dk"], SliceTime(expected["dk"], 1, c.T + 1), SameGradientsInDouble)
            && TestTensors.Close(actual["dv"], SliceTime(expected["dv"], 1, c.T + 1), SameGradientsInDouble)
            && TestTensors.Close(dw, SliceTime(expected[gate], 1, c.T + 1), SameGradientsInDouble)
            && (!actual.ContainsKey("dinitial_state") || TestTensors.Close(actual["dinitial_state"], expected["dinitial_state"], SameGradientsInDouble));
    }

    /// <summary>x with <paramref name="before"/> and <paramref name="after"/> zero steps added on its time axis.</summary>
    private static Tensor Padded(Tensor x, int before, int after)
    {
        var zerosBefore = Tensor.Zeros([x.Dim(0), before, .. x.ShapeArray().Skip(2)]);
        var zerosAfter = Tensor.Zeros([x.Dim(0), after, .. x.ShapeArray().Skip(2)]);
        return ConcatTime(ConcatTime(zerosBefore, x), zerosAfter);
    }

    private static IReadOnlyDictionary<string, Tensor> Gradients(Form form, string variant, IReadOnlyDictionary<string, Tensor> inputs, StatefulCase c) =>
        form.Backward(variant, form.Contract.Bind(inputs, FormParameters.None.With("chunk_size", c.ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture))));

    [Fact]
    public void A_bonus_of_the_wrong_shape_is_bad_input_naming_u()
    {
        var c = new Rwkv6Case(1, 4, 2, 3, 2, DecayRegime.Mild, false, 2, 1);
        var (q, k, v, w, _, _) = c.Inputs();
        var error = Assert.Throws<InputException>(() => Form.Call("recurrent", Rwkv6Case.Named(q, k, v, w, Tensor.Zeros(2), null)));
        Assert.Equal("u", error.Tensor);
        Assert.Throws<InputException>(() => Form.Call("chunked", Rwkv6Case.Named(q, k, v, w, Tensor.Zeros(2, 3), null), "chunk_size=0"));
    }

    /// <summary>fla's naive_recurrent_rwkv6 as plain loops over indices: read with the bonus, then decay and add.</summary>
    private static (Tensor O, Tensor S) Definition(Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, Tensor? s0)
    {
        int bs = q.Dim(0), ts = q.Dim(1), hs = q.Dim(2), ks = q.Dim(3), vs = v.Dim(3);
        double scale = 1 / Math.Sqrt(ks);
        var o = Tensor.Zeros(bs, ts, hs, vs);
        var s = s0?.Clone() ?? Tensor.Zeros(bs, hs, ks, vs);
        for (int b = 0; b < bs; b++)
        {
            for (int h = 0; h < hs; h++)
            {
                for (int t = 0; t < ts; t++)
                {
                    for (int e = 0; e < vs; e++)
                    {
                        double sum = 0;
                        for (int c = 0; c < ks; c++)
                        {
                            sum += scale * q[b, t, h, c] * (s[b, h, c, e] + u[h, c] * k[b, t, h, c] * v[b, t, h, e]);
                        }
                        o[b, t, h, e] = sum;
                    }
                    for (int c = 0; c < ks; c++)
                    {
                        for (int e = 0; e < vs; e++)
                        {
                            s[b, h, c, e] = s[b, h, c, e] * Math.Exp(w[b, t, h, c]) + k[b, t, h, c] * v[b, t, h, e];
                        }
                    }
                }
            }
        }
        return (o, s);
    }

    /// <summary>GLA's exclusive form, o_t = scale·q_tᵀ S_{t−1}, S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ, written independently.</summary>
    private static (Tensor O, Tensor S) ExclusiveGla(Tensor q, Tensor k, Tensor v, Tensor w, Tensor? s0)
    {
        int bs = q.Dim(0), ts = q.Dim(1), hs = q.Dim(2), ks = q.Dim(3), vs = v.Dim(3);
        var o = Tensor.Zeros(bs, ts, hs, vs);
        var s = s0?.Clone() ?? Tensor.Zeros(bs, hs, ks, vs);
        for (int b = 0; b < bs; b++)
        {
            for (int h = 0; h < hs; h++)
            {
                for (int t = 0; t < ts; t++)
                {
                    for (int c = 0; c < ks; c++)
                    {
                        for (int e = 0; e < vs; e++)
                        {
                            o[b, t, h, e] += q[b, t, h, c] / Math.Sqrt(ks) * s[b, h, c, e];
                            s[b, h, c, e] = Math.Exp(w[b, t, h, c]) * s[b, h, c, e] + k[b, t, h, c] * v[b, t, h, e];
                        }
                    }
                }
            }
        }
        return (o, s);
    }
}
