using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.GatedLinear.Rwkv6MlstmTensors;

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
    public MlstmOptions Options(Tensor? c0 = null, Tensor? n0 = null, Tensor? m0 = null, Tensor? cu = null) => new()
    {
        Eps = Eps,
        ForgetGate = ExpGate ? MlstmForgetGate.Exponential : MlstmForgetGate.Sigmoid,
        InitialState = c0,
        InitialNormalizer = n0,
        InitialMax = m0,
        CuSeqlens = cu,
    };

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

public sealed class MlstmTests
{
    // The variants sum the same terms in double in different orders (the stabiliser m is the same running max,
    // unrolled); a few ulps per term over at most 20 steps: far below 1e-12 relative to the result's norm.
    private const double SameMathInDouble = 1e-12;

    private static MlstmResult Run(string variant, MlstmCase c, Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, MlstmOptions options) =>
        variant switch
        {
            "recurrent" => Mlstm.Recurrent(q, k, v, i, f, options),
            "parallel" => Mlstm.Parallel(q, k, v, i, f, options),
            _ => Mlstm.Chunked(q, k, v, i, f, c.ChunkSize, options),
        };

    // m is compared in absolute terms: it is a log, so an absolute error is a relative error of the state.
    private static bool Close(MlstmResult a, MlstmResult b) =>
        TestTensors.Close(a.O, b.O, SameMathInDouble)
        && TestTensors.Close(a.FinalState, b.FinalState, SameMathInDouble)
        && TestTensors.Close(a.FinalNormalizer, b.FinalNormalizer, SameMathInDouble)
        && a.FinalMax.Data.Zip(b.FinalMax.Data).All(p => Math.Abs(p.First - p.Second) <= SameMathInDouble * (1 + Math.Abs(p.Second)));

    private static Arbitrary<string> Variants { get; } = Gen.Elements("recurrent", "parallel", "chunked").ToArbitrary();

    [Fact]
    public void Parallel_equals_recurrent() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary, c =>
    {
        var (q, k, v, i, f) = c.Inputs();
        var (c0, n0, m0) = c.State(c.B);
        var options = c.Options(c0, n0, m0);
        return Close(Mlstm.Parallel(q, k, v, i, f, options), Mlstm.Recurrent(q, k, v, i, f, options));
    }));

    [Fact]
    public void Chunked_equals_recurrent_for_any_chunk_size() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary, c =>
    {
        var (q, k, v, i, f) = c.Inputs();
        var (c0, n0, m0) = c.State(c.B);
        var options = c.Options(c0, n0, m0);
        return Close(Mlstm.Chunked(q, k, v, i, f, c.ChunkSize, options), Mlstm.Recurrent(q, k, v, i, f, options));
    }));

    [Fact]
    public void The_stabiliser_does_not_change_outputs_or_the_unscaled_state() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary, Variants, (c, variant) =>
    {
        // Mild inputs so that the unstabilised recurrence stays finite: forget gates near 1, |i| ≤ 4 over 20 steps.
        var mild = c with { Regime = DecayRegime.Mild, Eps = 0 };
        var (q, k, v, i, f) = mild.Inputs();
        var (c0, n0, m0) = mild.State(mild.B);
        var stable = Run(variant, mild, q, k, v, i, f, mild.Options(c0, n0, m0));
        var (o, cFinal, nFinal) = Unstabilised(mild, q, k, v, i, f, c0, n0, m0);
        // C̃·exp(m) and ñ·exp(m) are the unstabilised C and n.
        var (cUnscaled, nUnscaled) = (stable.FinalState.Clone(), stable.FinalNormalizer.Clone());
        Unscale(cUnscaled, stable.FinalMax, mild.K * mild.V);
        Unscale(nUnscaled, stable.FinalMax, mild.K);
        return TestTensors.Close(stable.O, o, SameMathInDouble)
            && TestTensors.Close(cUnscaled, cFinal, SameMathInDouble)
            && TestTensors.Close(nUnscaled, nFinal, SameMathInDouble);
    }));

    [Fact]
    public void Rescaling_the_initial_state_against_its_max_leaves_outputs_unchanged() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary,
        Variants, Gen.Choose(-50, 50).ToArbitrary(), (c, variant, shift) =>
    {
        // (C̃·e^−δ, ñ·e^−δ, m + δ) is the same unstabilised state; with eps = 0 the outputs cannot tell them apart.
        var withState = c with { WithState = true, Eps = 0 };
        var (q, k, v, i, f) = withState.Inputs();
        var (c0, n0, m0) = withState.State(withState.B);
        double delta = shift / 10.0;
        var (c1, n1, m1) = (c0!.Clone(), n0!.Clone(), m0!.Clone());
        Unscale(c1, Filled(m0.ShapeArray(), -delta), withState.K * withState.V);
        Unscale(n1, Filled(m0.ShapeArray(), -delta), withState.K);
        for (int n = 0; n < m1.Length; n++)
        {
            m1.Data[n] += delta;
        }
        var a = Run(variant, withState, q, k, v, i, f, withState.Options(c0, n0, m0));
        var b = Run(variant, withState, q, k, v, i, f, withState.Options(c1, n1, m1));
        return TestTensors.Close(a.O, b.O, SameMathInDouble);
    }));

    [Fact]
    public void The_exponential_gate_of_logsigmoid_f_is_the_sigmoid_gate_of_f() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary, Variants, (c, variant) =>
    {
        var sigmoid = c with { ExpGate = false };
        var (q, k, v, i, f) = sigmoid.Inputs();
        var logF = f.Clone();
        for (int n = 0; n < logF.Length; n++)
        {
            logF.Data[n] = f.Data[n] >= 0 ? -Math.Log(1 + Math.Exp(-f.Data[n])) : f.Data[n] - Math.Log(1 + Math.Exp(f.Data[n]));
        }
        var (c0, n0, m0) = c.State(c.B);
        var viaSigmoid = Run(variant, sigmoid, q, k, v, i, f, sigmoid.Options(c0, n0, m0));
        var exponential = c with { ExpGate = true };
        var viaExp = Run(variant, exponential, q, k, v, i, logF, exponential.Options(c0, n0, m0));
        return Close(viaSigmoid, viaExp);
    }), cases: 200);

    [Fact]
    public void State_passing_split_at_any_step_equals_one_run() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary,
        Gen.Choose(0, 1000).ToArbitrary(), Variants, (c, cut, variant) =>
    {
        var (q, k, v, i, f) = c.Inputs();
        var (c0, n0, m0) = c.State(c.B);
        int t = cut % (c.T + 1);
        var whole = Run(variant, c, q, k, v, i, f, c.Options(c0, n0, m0));
        var first = Run(variant, c, SliceTime(q, 0, t), SliceTime(k, 0, t), SliceTime(v, 0, t), SliceTime(i, 0, t), SliceTime(f, 0, t),
            c.Options(c0, n0, m0));
        var second = Run(variant, c, SliceTime(q, t, c.T), SliceTime(k, t, c.T), SliceTime(v, t, c.T), SliceTime(i, t, c.T), SliceTime(f, t, c.T),
            c.Options(first.FinalState, first.FinalNormalizer, first.FinalMax));
        return Close(second with { O = ConcatTime(first.O, second.O) }, whole);
    }));

    [Fact]
    public void Varlen_equals_separate_runs() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary, Rwkv6Tests.SequenceLengths, Variants, (c, lengths, variant) =>
    {
        var packed = c with { B = 1, T = lengths.Sum() };
        var (q, k, v, i, f) = packed.Inputs();
        var (c0, n0, m0) = packed.State(lengths.Length);
        var together = Run(variant, packed, q, k, v, i, f, packed.Options(c0, n0, m0, CuSeqlens(lengths)));
        Tensor o = Tensor.Zeros(1, 0, c.H, c.V);
        var (cs, ns, ms) = (new List<Tensor>(), new List<Tensor>(), new List<Tensor>());
        int start = 0;
        for (int n = 0; n < lengths.Length; n++)
        {
            int end = start + lengths[n];
            var alone = Mlstm.Recurrent(SliceTime(q, start, end), SliceTime(k, start, end), SliceTime(v, start, end),
                SliceTime(i, start, end), SliceTime(f, start, end),
                packed.Options(c0 is null ? null : Rows(c0, n, n + 1), n0 is null ? null : Rows(n0, n, n + 1), m0 is null ? null : Rows(m0, n, n + 1)));
            o = ConcatTime(o, alone.O);
            (cs, ns, ms) = ([.. cs, alone.FinalState], [.. ns, alone.FinalNormalizer], [.. ms, alone.FinalMax]);
            start = end;
        }
        return Close(together, new MlstmResult(o, StackRows(cs), StackRows(ns), StackRows(ms)));
    }));

    [Fact]
    public void Outputs_do_not_depend_on_later_inputs() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary,
        Gen.Choose(0, 1000).ToArbitrary(), Variants, (c, cut, variant) =>
    {
        var (q, k, v, i, f) = c.Inputs();
        var (c0, n0, m0) = c.State(c.B);
        int t0 = cut % c.T;
        var before = Run(variant, c, q, k, v, i, f, c.Options(c0, n0, m0));
        var (q2, k2, v2, i2, f2) = (q.Clone(), k.Clone(), v.Clone(), i.Clone(), f.Clone());
        var random = new Random(c.Seed ^ 0x5bd1e995);
        foreach (Tensor x in new[] { q2, k2, v2, i2, f2 })
        {
            for (int n = 0; n < x.Length; n++)
            {
                if (x.IndexOf(n)[1] > t0)
                {
                    x.Data[n] = random.NextDouble() * 20 - 10;
                }
            }
        }
        var after = Run(variant, c, q2, k2, v2, i2, f2, c.Options(c0, n0, m0));
        // Rows up to t0 are computed from the same numbers in the same order: bit-identical.
        return SamePrefix(before.O, after.O, t0 + 1);
    }));

    [Fact]
    public void The_scale_multiplies_the_queries() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary,
        Gen.Choose(1, 300).ToArbitrary(), Variants, (c, hundredths, variant) =>
    {
        var (q, k, v, i, f) = c.Inputs();
        var (c0, n0, m0) = c.State(c.B);
        double scale = hundredths / 100.0;
        var scaledQ = q.Clone();
        for (int n = 0; n < scaledQ.Length; n++)
        {
            scaledQ.Data[n] *= scale;
        }
        var given = Run(variant, c, q, k, v, i, f, c.Options(c0, n0, m0) with { Scale = scale });
        var folded = Run(variant, c, scaledQ, k, v, i, f, c.Options(c0, n0, m0) with { Scale = 1 });
        return Close(given, folded);
    }), cases: 200);

    [Fact]
    public void Huge_input_gates_stay_finite_thanks_to_the_stabiliser() => PropertyRuns.Check(Prop.ForAll(MlstmCase.Arbitrary, Variants, (c, variant) =>
    {
        // exp(800) overflows a double; exp(i − m) never does.
        var (q, k, v, i, f) = c.Inputs();
        for (int n = 0; n < i.Length; n++)
        {
            i.Data[n] += 800;
        }
        var result = Run(variant, c, q, k, v, i, f, c.Options());
        return result.O.Data.All(double.IsFinite) && result.FinalState.Data.All(double.IsFinite);
    }), cases: 200);

    [Fact]
    public void Gates_of_the_wrong_shape_are_bad_input_naming_the_gate()
    {
        var c = new MlstmCase(1, 4, 2, 3, 2, DecayRegime.Mild, false, false, 0, 2, 1);
        var (q, k, v, i, _) = c.Inputs();
        var error = Assert.Throws<InputException>(() => Mlstm.Recurrent(q, k, v, i, Tensor.Zeros(1, 4, 2, 1)));
        Assert.Contains("'f'", error.Message, StringComparison.Ordinal);
        Assert.Throws<InputException>(() => Mlstm.Recurrent(q, k, v, i, i, new MlstmOptions { Eps = -1 }));
        Assert.Throws<InputException>(() => Mlstm.Chunked(q, k, v, i, i, chunkSize: 0));
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
