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
/// mlstm's laws: the stateful-form laws and the family's gradient edge cases (log forget gates drawn as the cases' log
/// gates, through either gate, input gates in [−4, 4], eps 0 or 1e-6), and on <see cref="MlstmCase"/>: the stabiliser
/// changes nothing (outputs, and gradients but through the initial state's scale), the two forget gates agree, the scale
/// multiplies q, huge input gates stay finite (gradients included), the gradient at the ties of the stabiliser's max and
/// of the denominator's clamp, and below the clamp the gradients of simple_gla with keys scaled by e^i.
/// </summary>
public sealed class MlstmTests : GatedLinearFormLaws
{
    protected override IForm Form { get; } = new Mlstm();

    private static readonly string[] s_inputGradients = ["dq", "dk", "dv", "di", "df"];

    // The step of the Richardson-corrected central difference at a kink (the tie law says why).
    private const double KinkStep = 1e-6;

    // Above the clamp, o_t = qᵀC_t / |qᵀn_t| does not change when q_t is scaled, so dq_t has no component along q_t and with
    // K = 1 none at all: every variant computes it as the difference of terms of the size of o (scale·C̃_t g and scale·γ ñ_t)
    // that cancel, rounded at their scale. It is held to that scale, the unit scale of the inputs, instead of its own norm.
    protected override bool GradientClose(StatefulCase c, string name, Tensor actual, Tensor expected) =>
        name == "dq" ? TestTensors.CloseAtUnitScale(actual, expected, SameGradientsInDouble) : base.GradientClose(c, name, actual, expected);

    // o_t = h̃_t / max(|scale·q_t·ñ_t|, e^{−m_t}): where the normaliser, a sum of terms up to e^4·|q·k_j| with random signs,
    // lands just past the clamp, o_t is steep in q_t and k_j, and |L‴| along a random direction of q reached 2e5·M, so that
    // the central difference's ε²/6·|L‴| came to 1.05 times FiniteDifferences.Tolerance (dq at T = 14, K = 5, mixed gates).
    // Ten times that bound leaves a margin of 10 there; a wrong gradient is off by far more.
    protected override double FiniteDifferenceTolerance(double magnitude, double analytic) => 10 * base.FiniteDifferenceTolerance(magnitude, analytic);

    private static bool ExpGate(StatefulCase c) => c.Seed % 2 == 0;

    protected override FormParameters Parameters(StatefulCase c) => FormParameters.None
        .With("forget_gate", ExpGate(c) ? "exp" : "sigmoid")
        .With("eps", c.Seed / 2 % 2 == 0 ? "0" : "1e-6");

    // log f = logGate at every step, through the case's gate (the sigmoid gate's pre-activation has logsigmoid(f) = logGate).
    protected override Dictionary<string, Tensor> AtLogGate(StatefulCase c, Dictionary<string, Tensor> inputs, double logGate)
    {
        Array.Fill(inputs["f"].Data, ExpGate(c) ? logGate : logGate - Math.Log(-double.ExpM1(logGate)));
        return inputs;
    }

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
        var (withState, given, restabilised) = RestabilisedState(c);
        return Form.Variants.All(variant => TestTensors.Close(
            Run(variant, withState, given)["o"], Run(variant, withState, restabilised)["o"], SameMathInDouble));
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

    [Law(50)]
    public bool With_eps_zero_the_stabiliser_passes_no_gradient_but_through_the_initial_states_scale(MlstmCase c)
    {
        // With eps = 0, o does not depend on the stabiliser: the inputs' gradients from do alone are the same for any
        // stabilisation of the initial state, (C̃·e^−δ, ñ·e^−δ, m + δ), and m_initial's gradient is only its role in
        // C = C̃·e^m, n = ñ·e^m: dm_initial = ⟨dC̃_initial, C̃_initial⟩ + ⟨dñ_initial, ñ_initial⟩.
        var (withState, given, restabilised) = RestabilisedState(c);
        var (c0, n0) = (given["initial_state"], given["initial_normalizer"]);
        given["do"] = restabilised["do"] = TestTensors.Normal(new Random(c.Seed + 1), 1, c.B, c.T, c.H, c.V);
        return Form.Variants.All(variant =>
        {
            var first = Gradients(variant, withState, given);
            var second = Gradients(variant, withState, restabilised);
            // The two stabilisations round the same terms at scales e^δ apart: 10 times the variants' bound. dq at the unit scale (see GradientClose).
            bool sameInputs = s_inputGradients.All(name => name == "dq" ? TestTensors.CloseAtUnitScale(first[name], second[name], 10 * SameGradientsInDouble)
                : TestTensors.Close(first[name], second[name], 10 * SameGradientsInDouble));
            var scaleRole = Tensor.Zeros(c.B, c.H);
            for (int n = 0; n < scaleRole.Length; n++)
            {
                scaleRole.Data[n] = Enumerable.Range(0, c.K * c.V).Sum(e => first["dinitial_state"].Data[n * c.K * c.V + e] * c0.Data[n * c.K * c.V + e])
                    + Enumerable.Range(0, c.K).Sum(e => first["dinitial_normalizer"].Data[n * c.K + e] * n0.Data[n * c.K + e]);
            }
            return sameInputs && TestTensors.Close(first["dinitial_max"], scaleRole, SameGradientsInDouble);
        });
    }

    [Law(50)]
    public bool At_a_tie_of_the_stabilisers_max_and_of_the_clamp_the_gradient_is_the_two_sides_average(MlstmCase c)
    {
        // Step 0 is built on both kinks: log f_0 + m_{−1} = i_0 = −0.5 (m_0 = max of equals) and, with K = 1, scale 1,
        // k_0 = 1, q_0 = e^{0.5}: |q_0·ñ_0| = e^{−m_0} (the clamp of the denominator). At a tie the gradient is half of each
        // side's (PyTorch's torch.maximum), and so is what the central difference measures at a kink:
        //   D(ε) = (L(x + εu) − L(x − εu)) / 2ε = ⟨(g₊ + g₋)/2, u⟩ + ε (u·H₊u − u·H₋u)/4 + ε² (L‴₊ + L‴₋)/12 + O(ε³),
        // with an O(ε) term where the two sides' curvatures differ; Richardson's 2·D(ε/2) − D(ε) removes it and leaves
        // ε²·|L‴|/12. With ε = 1e-6 that is 8e-14·|L‴| (half the shared law's ε²/6 at its step), and the rounding, about
        // 1e-16·M/ε from D(ε) and four times that from 2·D(ε/2), 5e-10·M: both within FiniteDifferences.Tolerance's 1e-8·M
        // where |L‴| is of the order of M. Mild gates keep it so (log gates of −20 make o_t steep where the clamp nearly
        // holds), and the direction u moves step 0 alone, where the kinks are (the shared finite-difference law covers the
        // other steps): along a random direction of every step's gates, whose sums decay every later state, |L‴| grows as
        // T³ and the error reached 2.4e-8·|⟨df, u⟩| at T = 18, past the bound. Every variant meets the same ties.
        var tie = c with { K = 1, ExpGate = true, WithState = false, Regime = DecayRegime.Mild };
        var (q, k, v, i, f) = tie.Inputs();
        for (int b = 0; b < tie.B; b++)
        {
            for (int h = 0; h < tie.H; h++)
            {
                (f[b, 0, h], i[b, 0, h], k[b, 0, h, 0], q[b, 0, h, 0]) = (-0.5, -0.5, 1, Math.Exp(0.5));
            }
        }
        var inputs = MlstmCase.Named(q, k, v, i, f);
        string[] parameters = [.. tie.Parameters(), "scale=1"];
        var outputs = Form.Call("recurrent", inputs, parameters);
        var random = new Random(c.Seed);
        var cotangents = outputs.ToDictionary(p => "d" + p.Key, p => TestTensors.Normal(random, 1, p.Value.ShapeArray()));
        var (_, magnitude) = FiniteDifferences.Pairing(cotangents, outputs);
        var withCotangents = new Dictionary<string, Tensor>(inputs).Concat(cotangents).ToDictionary();
        return Form.Variants.All(variant =>
        {
            var gradients = Gradients(variant, tie, withCotangents, parameters);
            return inputs.All(p =>
            {
                Tensor u = AtStepZero(TestTensors.Normal(random, 1, p.Value.ShapeArray()));
                double L(double ε) => FiniteDifferences.Pairing(cotangents,
                    Form.Call("recurrent", new Dictionary<string, Tensor>(inputs) { [p.Key] = FiniteDifferences.Moved(p.Value, u, ε) }, parameters)).Value;
                double D(double ε) => (L(ε) - L(-ε)) / (2 * ε);
                double finite = 2 * D(KinkStep / 2) - D(KinkStep);
                double analytic = FiniteDifferences.Dot(gradients["d" + p.Key], u);
                // Ten times the shared bound, as mlstm's finite-difference law has: |L‴| can exceed M with mild gates too,
                // where o is steep just past the clamp; a wrong tie rule is off by half a slope, O(M), far beyond it.
                return Math.Abs(finite - analytic) <= 10 * FiniteDifferences.Tolerance(magnitude, analytic) ? true
                    : throw new InvalidOperationException($"{variant} d{p.Key}: finite difference {finite:R}, gradient {analytic:R}, magnitude {magnitude:E2}");
            });
        });
    }

    [Law(50)]
    public bool With_input_gates_far_below_the_clamp_the_gradients_are_simple_glas_with_keys_scaled_by_exp_i(MlstmCase c)
    {
        // With i ≈ −30 the normaliser stays far below the clamp (|scale·q_t·n_t| ≤ T·e^{−29}·|q_t||k| ≪ 1), so with eps = 0
        // and the exponential forget gate o_t = scale·q_tᵀ C_t, C_t = f_t C_{t−1} + k'_t v_tᵀ, k'_t = e^{i_t} k_t: simple_gla
        // with g = log f. Its gradients give mlstm's: dq and dv alike, dk_t = e^{i_t} dk'_t, di_t = k_t·dk_t, df = dg (with
        // only do given the stabiliser passes no gradient at eps = 0, and the clamp none to the normaliser).
        var gate = c with { ExpGate = true, Eps = 0, WithState = false };
        var (q, k, v, i, f) = gate.Inputs();
        for (int n = 0; n < i.Length; n++)
        {
            i.Data[n] = -30 + i.Data[n] / 4;
        }
        var scaledK = k.Clone();
        for (int n = 0; n < k.Length; n++)
        {
            scaledK.Data[n] *= Math.Exp(i.Data[n / c.K]);
        }
        var dO = TestTensors.Normal(new Random(c.Seed + 2), 1, c.B, c.T, c.H, c.V);
        var simpleGla = new SimpleGla();
        var expected = simpleGla.Backward("recurrent", simpleGla.Contract.Bind(
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = scaledK, ["v"] = v, ["g"] = f, ["do"] = dO }, FormParameters.None));
        var (dk, di) = (expected["dk"].Clone(), Tensor.Zeros(c.B, c.T, c.H));
        for (int n = 0; n < dk.Length; n++)
        {
            dk.Data[n] *= Math.Exp(i.Data[n / c.K]);
            di.Data[n / c.K] += k.Data[n] * dk.Data[n];
        }
        var inputs = MlstmCase.Named(q, k, v, i, f);
        inputs["do"] = dO;
        return Form.Variants.All(variant => Gradients(variant, gate, inputs) is var actual
            && TestTensors.Close(actual["dq"], expected["dq"], SameGradientsInDouble)
            && TestTensors.Close(actual["dv"], expected["dv"], SameGradientsInDouble)
            && TestTensors.Close(actual["dk"], dk, SameGradientsInDouble)
            && TestTensors.Close(actual["di"], di, SameGradientsInDouble)
            && TestTensors.Close(actual["df"], expected["dg"], SameGradientsInDouble));
    }

    [Law(50)]
    public bool Huge_input_gates_give_finite_gradients_thanks_to_the_stabiliser(MlstmCase c)
    {
        // exp(800) overflows; every factor of the backward pass is a gate of the stabilised forward (≤ 1).
        var (q, k, v, i, f) = c.Inputs();
        for (int n = 0; n < i.Length; n++)
        {
            i.Data[n] += 800;
        }
        var (c0, n0, m0) = c.State(c.B);
        var random = new Random(c.Seed);
        var inputs = MlstmCase.Named(q, k, v, i, f, c0, n0, m0);
        foreach (var (name, output) in Form.Call("recurrent", inputs, c.Parameters()))
        {
            inputs["d" + name] = TestTensors.Normal(random, 1, output.ShapeArray());
        }
        return Form.Variants.All(variant => Gradients(variant, c, inputs).Values.All(g => g.Data.All(double.IsFinite)));
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

    private IReadOnlyDictionary<string, Tensor> Gradients(string variant, MlstmCase c, IReadOnlyDictionary<string, Tensor> inputs, params string[] parameters)
    {
        var form = (Form)Form;
        string[] all = parameters.Length > 0 ? parameters : c.Parameters();
        return form.Backward(variant, form.Contract.Bind(inputs, new FormParameters(all.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]))));
    }

    /// <summary>
    /// The case (eps = 0) with an initial state, and the same inputs with that state restabilised by δ:
    /// (C̃·e^−δ, ñ·e^−δ, m + δ), the same unstabilised state.
    /// </summary>
    private static (MlstmCase Case, Dictionary<string, Tensor> Given, Dictionary<string, Tensor> Restabilised) RestabilisedState(MlstmCase c)
    {
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
        return (withState, MlstmCase.Named(q, k, v, i, f, c0, n0, m0), MlstmCase.Named(q, k, v, i, f, c1, n1, m1));
    }

    /// <summary>x [B,T,...] with every step but step 0 set to zero.</summary>
    private static Tensor AtStepZero(Tensor x)
    {
        int step = x.Length / (x.Dim(0) * x.Dim(1));
        for (int n = 0; n < x.Length; n++)
        {
            x.Data[n] = n / step % x.Dim(1) == 0 ? x.Data[n] : 0;
        }
        return x;
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
