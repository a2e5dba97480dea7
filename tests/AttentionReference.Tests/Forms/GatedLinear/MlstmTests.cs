using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>
/// A random mLSTM problem. Forget pre-activations by regime: mild (sigmoid ≈ 0.9–1), strong (log f down to −20), mixed
/// (each step either); input gates in [−4, 4]. Wider input gates are no harder for the variants, but they make o itself
/// ill-conditioned: when the terms of qᵀn (up to e^i·|q·k| each) cancel down to the clamp at 1, rounding of order
/// e^i·1e-16 is amplified past 1e-12 in every variant alike (seen at i ≈ 7.6 with K = 7). Huge gates are tested
/// for finiteness on their own.
/// </summary>
public sealed record MlstmCase(int B, int T, int H, int K, int V, DecayRegime Regime, bool WithState, bool ExpGate,
    double Eps, int ChunkSize, int Seed)
{
    /// <summary>The case's parameters: eps, the forget gate, the chunk size.</summary>
    public string[] Parameters() =>
    [
        "eps=" + Eps.ToString("R", CultureInfo.InvariantCulture), "forget_gate=" + (ExpGate ? "exp" : "sigmoid"),
        "chunk_size=" + ChunkSize.ToString(CultureInfo.InvariantCulture),
    ];

    /// <summary>The inputs by name, with the initial states that are given.</summary>
    public static Dictionary<string, Tensor> Named(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, Tensor? c0 = null, Tensor? n0 = null, Tensor? m0 = null)
    {
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["i"] = i, ["f"] = f };
        foreach (var (name, state) in new[] { ("initial_state", c0), ("initial_normalizer", n0), ("initial_max", m0) })
        {
            if (state is not null)
            {
                inputs[name] = state;
            }
        }
        return inputs;
    }

    public (Tensor Q, Tensor K, Tensor V, Tensor I, Tensor F) Inputs()
    {
        var random = new Random(Seed);
        var (i, f) = (Tensor.Zeros(B, T, H), Tensor.Zeros(B, T, H));
        for (int n = 0; n < f.Length; n++)
        {
            i.Data[n] = 8 * random.NextDouble() - 4;
            double x = random.NextDouble();
            double logF = Regime switch
            {
                DecayRegime.Mild => -0.1 * x,
                DecayRegime.Strong => -20 * x,
                _ => random.Next(2) == 0 ? -1e-4 * x : -20 + x,
            };
            // The exponential gate takes log f itself; the sigmoid gate the pre-activation with logsigmoid(f) = log f.
            f.Data[n] = ExpGate ? logF : logF - Math.Log(-double.ExpM1(logF));
        }
        return (TestTensors.Normal(random, 1, B, T, H, K), TestTensors.Normal(random, 1, B, T, H, K),
                TestTensors.Normal(random, 1, B, T, H, V), i, f);
    }

    /// <summary>A stabilised initial state (C̃, ñ, m) with m of either sign, or none.</summary>
    public (Tensor? C0, Tensor? N0, Tensor? M0) State(int rows)
    {
        if (!WithState)
        {
            return (null, null, null);
        }
        var random = new Random(~Seed);
        var m0 = Tensor.Zeros(rows, H);
        for (int n = 0; n < m0.Length; n++)
        {
            m0.Data[n] = 6 * random.NextDouble() - 3;
        }
        return (TestTensors.Normal(random, 1, rows, H, K, V), TestTensors.Normal(random, 1, rows, H, K), m0);
    }

    public static Arbitrary<MlstmCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(1, 20)
         from h in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 3, 4, 7)
         from v in Gen.Elements(1, 2, 5)
         from regime in Gen.Elements(DecayRegime.Mild, DecayRegime.Strong, DecayRegime.Mixed)
         from withState in Gen.Elements(false, true)
         from expGate in Gen.Elements(false, true)
         from eps in Gen.Elements(0.0, 1e-6)
         from chunk in Gen.Choose(1, t + 3)
         from seed in Gen.Choose(0, int.MaxValue)
         select new MlstmCase(b, t, h, k, v, regime, withState, expGate, eps, chunk, seed)).ToArbitrary();
}

/// <summary>
/// mlstm's laws: the stateful-form laws (log forget gates drawn as the cases' log gates, through either gate, input gates
/// in [−4, 4], eps 0 or 1e-6), and on <see cref="MlstmCase"/>: the stabiliser changes nothing, the two forget gates
/// agree, the scale multiplies q, huge input gates stay finite.
/// </summary>
public sealed class MlstmTests : StatefulFormLaws
{
    protected override IForm Form { get; } = new Mlstm();

    private static bool ExpGate(StatefulCase c) => c.Seed % 2 == 0;

    protected override FormParameters Parameters(StatefulCase c) => FormParameters.None
        .With("forget_gate", ExpGate(c) ? "exp" : "sigmoid")
        .With("eps", c.Seed / 2 % 2 == 0 ? "0" : "1e-6");

    protected override Dictionary<string, Tensor> Inputs(StatefulCase c, Random random, int b, int t)
    {
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["k"] = TestTensors.Normal(random, 1, b, t, c.H, c.K),
            ["v"] = TestTensors.Normal(random, 1, b, t, c.H, c.V),
            ["i"] = new Tensor([b, t, c.H], Enumerable.Range(0, b * t * c.H).Select(_ => 8 * random.NextDouble() - 4).ToArray()),
        };
        // The exponential gate takes log f itself; the sigmoid gate the pre-activation whose logsigmoid is log f.
        Tensor logF = c.Gates(random, b, t, c.H);
        inputs["f"] = ExpGate(c) ? logF : new Tensor(logF.ShapeArray(), logF.Data.Select(g => g - Math.Log(-double.ExpM1(g))).ToArray());
        return inputs;
    }

    // m is compared in absolute terms: it is a log, so an absolute error is a relative error of the state (and m near 0
    // has no relative scale of its own). o is held to 1e-11: o_t = h̃_t / max(|n_t·q_t|, exp(−m_t)) is a ratio of sums whose
    // terms are exps of summed gates relative to a stabiliser, which the variants take at different points (the step's
    // m_t, the chunk's), so the same terms are rounded at different scales before they are summed and divided; 1e-12 was
    // exceeded once in about 5000 cases (1.04e-12 at T = 41 with mixed gates), 1e-11 leaves a margin of 10 there.
    protected override bool Close(string name, Tensor actual, Tensor expected) => name switch
    {
        "final_max" => actual.Data.Zip(expected.Data).All(p => Math.Abs(p.First - p.Second) <= SameMathInDouble * (1 + Math.Abs(p.Second))),
        "o" => TestTensors.Close(actual, expected, 10 * SameMathInDouble),
        _ => base.Close(name, actual, expected),
    };

    private IReadOnlyDictionary<string, Tensor> Run(string variant, MlstmCase c, Dictionary<string, Tensor> inputs, params string[] parameters) =>
        Form.Call(variant, inputs, [.. c.Parameters(), .. parameters]);

    [Law]
    public bool The_stabiliser_does_not_change_outputs_or_the_unscaled_state(MlstmCase c)
    {
        // Mild inputs so that the unstabilised recurrence stays finite: forget gates near 1, |i| ≤ 4 over 20 steps.
        var mild = c with { Regime = DecayRegime.Mild, Eps = 0 };
        var (q, k, v, i, f) = mild.Inputs();
        var (c0, n0, m0) = mild.State(mild.B);
        var (o, cFinal, nFinal) = Unstabilised(mild, q, k, v, i, f, c0, n0, m0);
        return Form.Variants.All(variant =>
        {
            var stable = Run(variant, mild, MlstmCase.Named(q, k, v, i, f, c0, n0, m0));
            // C̃·exp(m) and ñ·exp(m) are the unstabilised C and n.
            var (cUnscaled, nUnscaled) = (stable["final_state"].Clone(), stable["final_normalizer"].Clone());
            Unscale(cUnscaled, stable["final_max"], mild.K * mild.V);
            Unscale(nUnscaled, stable["final_max"], mild.K);
            return TestTensors.Close(stable["o"], o, SameMathInDouble)
                && TestTensors.Close(cUnscaled, cFinal, SameMathInDouble)
                && TestTensors.Close(nUnscaled, nFinal, SameMathInDouble);
        });
    }

    [Law]
    public bool Rescaling_the_initial_state_against_its_max_leaves_outputs_unchanged(MlstmCase c)
    {
        // (C̃·e^−δ, ñ·e^−δ, m + δ) is the same unstabilised state; with eps = 0 the outputs cannot tell them apart.
        var withState = c with { WithState = true, Eps = 0 };
        var (q, k, v, i, f) = withState.Inputs();
        var (c0, n0, m0) = withState.State(withState.B);
        double delta = (c.Seed % 101 - 50) / 10.0;
        var (c1, n1, m1) = (c0!.Clone(), n0!.Clone(), m0!.Clone());
        Unscale(c1, Filled(m0.ShapeArray(), -delta), withState.K * withState.V);
        Unscale(n1, Filled(m0.ShapeArray(), -delta), withState.K);
        for (int n = 0; n < m1.Length; n++)
        {
            m1.Data[n] += delta;
        }
        return Form.Variants.All(variant => TestTensors.Close(
            Run(variant, withState, MlstmCase.Named(q, k, v, i, f, c0, n0, m0))["o"],
            Run(variant, withState, MlstmCase.Named(q, k, v, i, f, c1, n1, m1))["o"], SameMathInDouble));
    }

    [Law]
    public bool The_exponential_gate_of_logsigmoid_f_is_the_sigmoid_gate_of_f(MlstmCase c)
    {
        var sigmoid = c with { ExpGate = false };
        var (q, k, v, i, f) = sigmoid.Inputs();
        var logF = f.Clone();
        for (int n = 0; n < logF.Length; n++)
        {
            logF.Data[n] = f.Data[n] >= 0 ? -Math.Log(1 + Math.Exp(-f.Data[n])) : f.Data[n] - Math.Log(1 + Math.Exp(f.Data[n]));
        }
        var (c0, n0, m0) = c.State(c.B);
        return Form.Variants.All(variant => AllClose(
            Run(variant, c with { ExpGate = true }, MlstmCase.Named(q, k, v, i, logF, c0, n0, m0)),
            Run(variant, sigmoid, MlstmCase.Named(q, k, v, i, f, c0, n0, m0))));
    }

    [Law]
    public bool The_scale_multiplies_the_queries(MlstmCase c)
    {
        var (q, k, v, i, f) = c.Inputs();
        var (c0, n0, m0) = c.State(c.B);
        double scale = (1 + c.Seed % 300) / 100.0;
        var scaledQ = new Tensor(q.ShapeArray(), q.Data.Select(x => x * scale).ToArray());
        return Form.Variants.All(variant => AllClose(
            Run(variant, c, MlstmCase.Named(q, k, v, i, f, c0, n0, m0), "scale=" + scale.ToString("R", CultureInfo.InvariantCulture)),
            Run(variant, c, MlstmCase.Named(scaledQ, k, v, i, f, c0, n0, m0), "scale=1")));
    }

    [Law]
    public bool Huge_input_gates_stay_finite_thanks_to_the_stabiliser(MlstmCase c)
    {
        // exp(800) overflows a double; exp(i − m) never does.
        var (q, k, v, i, f) = c.Inputs();
        for (int n = 0; n < i.Length; n++)
        {
            i.Data[n] += 800;
        }
        return Form.Variants.All(variant => Run(variant, c, MlstmCase.Named(q, k, v, i, f)) is var result
            && result["o"].Data.All(double.IsFinite) && result["final_state"].Data.All(double.IsFinite));
    }

    [Fact]
    public void Gates_of_the_wrong_shape_are_bad_input_naming_the_gate()
    {
        var c = new MlstmCase(1, 4, 2, 3, 2, DecayRegime.Mild, false, false, 0, 2, 1);
        var (q, k, v, i, _) = c.Inputs();
        var error = Assert.Throws<InputException>(() => Form.Call("recurrent", MlstmCase.Named(q, k, v, i, Tensor.Zeros(1, 4, 2, 1))));
        Assert.Equal("f", error.Tensor);
        Assert.Throws<InputException>(() => Form.Call("recurrent", MlstmCase.Named(q, k, v, i, i), "eps=-1"));
        Assert.Throws<InputException>(() => Form.Call("chunked", MlstmCase.Named(q, k, v, i, i), "chunk_size=0"));
    }

    private static Tensor Filled(int[] shape, double value)
    {
        var x = Tensor.Zeros(shape);
        Array.Fill(x.Data, value);
        return x;
    }

    /// <summary>Multiplies each block of <paramref name="block"/> values by exp of its row of <paramref name="m"/>.</summary>
    private static void Unscale(Tensor x, Tensor m, int block)
    {
        for (int n = 0; n < x.Length; n++)
        {
            x.Data[n] *= Math.Exp(m.Data[n / block]);
        }
    }

    /// <summary>
    /// The paper's cell with no stabiliser at all, as plain loops: C_t = f_t C_{t−1} + exp(i_t) k vᵀ,
    /// n_t = f_t n_{t−1} + exp(i_t) k, o_t = (q/√K)ᵀ C_t / max(|(q/√K)ᵀ n_t|, 1). Returns o and the unscaled C, n.
    /// </summary>
    private static (Tensor O, Tensor C, Tensor N) Unstabilised(MlstmCase c, Tensor q, Tensor k, Tensor v, Tensor i, Tensor f,
        Tensor? c0, Tensor? n0, Tensor? m0)
    {
        var o = Tensor.Zeros(c.B, c.T, c.H, c.V);
        var (cs, ns) = (Tensor.Zeros(c.B, c.H, c.K, c.V), Tensor.Zeros(c.B, c.H, c.K));
        double scale = 1 / Math.Sqrt(c.K);
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.H; h++)
            {
                double e0 = m0 is null ? 1 : Math.Exp(m0[b, h]);
                for (int a = 0; a < c.K; a++)
                {
                    ns[b, h, a] = (n0?[b, h, a] ?? 0) * e0;
                    for (int e = 0; e < c.V; e++)
                    {
                        cs[b, h, a, e] = (c0?[b, h, a, e] ?? 0) * e0;
                    }
                }
                for (int t = 0; t < c.T; t++)
                {
                    double x = f[b, t, h];
                    double forget = c.ExpGate ? Math.Exp(x) : 1 / (1 + Math.Exp(-x)), input = Math.Exp(i[b, t, h]);
                    double qn = 0;
                    for (int a = 0; a < c.K; a++)
                    {
                        ns[b, h, a] = forget * ns[b, h, a] + input * k[b, t, h, a];
                        qn += scale * q[b, t, h, a] * ns[b, h, a];
                        for (int e = 0; e < c.V; e++)
                        {
                            cs[b, h, a, e] = forget * cs[b, h, a, e] + input * k[b, t, h, a] * v[b, t, h, e];
                        }
                    }
                    for (int e = 0; e < c.V; e++)
                    {
                        double num = 0;
                        for (int a = 0; a < c.K; a++)
                        {
                            num += scale * q[b, t, h, a] * cs[b, h, a, e];
                        }
                        o[b, t, h, e] = num / Math.Max(Math.Abs(qn), 1);
                    }
                }
            }
        }
        return (o, cs, ns);
    }
}
