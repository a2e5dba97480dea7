using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.GatedLinear.Rwkv6MlstmTensors;

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

public sealed class Rwkv6Tests
{
    // The variants sum the same terms in double in different orders, and form each decay either as a product of
    // exp(w) (recurrent) or as exp of a sum of w (parallel, chunked): a few ulps per term over at most 20 steps and
    // 7 channels, far below 1e-12 relative to the norm of the result.
    private const double SameMathInDouble = 1e-12;

    /// <summary>1 to 4 packed sequences of 0 to 7 steps each (empty sequences included).</summary>
    internal static Arbitrary<int[]> SequenceLengths { get; } =
        (from n in Gen.Choose(1, 4) from lengths in Gen.ArrayOf(Gen.Choose(0, 7), n) select lengths).ToArbitrary();

    private static Rwkv6Result Run(string variant, Rwkv6Case c, Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, Rwkv6Options options) =>
        variant switch
        {
            "recurrent" => Rwkv6.Recurrent(q, k, v, w, u, options),
            "parallel" => Rwkv6.Parallel(q, k, v, w, u, options),
            _ => Rwkv6.Chunked(q, k, v, w, u, c.ChunkSize, options),
        };

    private static bool Close(Rwkv6Result a, Rwkv6Result b) =>
        TestTensors.Close(a.O, b.O, SameMathInDouble) && TestTensors.Close(a.FinalState, b.FinalState, SameMathInDouble);

    [Fact]
    public void Parallel_equals_recurrent() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary, c =>
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        var options = new Rwkv6Options { InitialState = s0 };
        return Close(Rwkv6.Parallel(q, k, v, w, u, options), Rwkv6.Recurrent(q, k, v, w, u, options));
    }));

    [Fact]
    public void Chunked_equals_recurrent_for_any_chunk_size() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary, c =>
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        var options = new Rwkv6Options { InitialState = s0 };
        return Close(Rwkv6.Chunked(q, k, v, w, u, c.ChunkSize, options), Rwkv6.Recurrent(q, k, v, w, u, options));
    }));

    [Fact]
    public void Recurrent_equals_the_definition_written_out() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary, c =>
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        var result = Rwkv6.Recurrent(q, k, v, w, u, new Rwkv6Options { InitialState = s0 });
        var (o, s) = Definition(q, k, v, w, u, s0);
        return TestTensors.Close(result.O, o, SameMathInDouble) && TestTensors.Close(result.FinalState, s, SameMathInDouble);
    }));

    [Fact]
    public void With_zero_bonus_every_variant_is_exclusive_gla() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary,
        Gen.Elements("recurrent", "parallel", "chunked").ToArbitrary(), (c, variant) =>
    {
        var (q, k, v, w, _, s0) = c.Inputs();
        var u = Tensor.Zeros(c.H, c.K);
        var result = Run(variant, c, q, k, v, w, u, new Rwkv6Options { InitialState = s0 });
        var (o, s) = ExclusiveGla(q, k, v, w, s0);
        return TestTensors.Close(result.O, o, SameMathInDouble) && TestTensors.Close(result.FinalState, s, SameMathInDouble);
    }));

    [Fact]
    public void State_passing_split_at_any_step_equals_one_run() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary,
        Gen.Choose(0, 1000).ToArbitrary(), Gen.Elements("recurrent", "parallel", "chunked").ToArbitrary(), (c, cut, variant) =>
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        int t = cut % (c.T + 1);
        var whole = Run(variant, c, q, k, v, w, u, new Rwkv6Options { InitialState = s0 });
        var first = Run(variant, c, SliceTime(q, 0, t), SliceTime(k, 0, t), SliceTime(v, 0, t), SliceTime(w, 0, t), u,
            new Rwkv6Options { InitialState = s0 });
        var second = Run(variant, c, SliceTime(q, t, c.T), SliceTime(k, t, c.T), SliceTime(v, t, c.T), SliceTime(w, t, c.T), u,
            new Rwkv6Options { InitialState = first.FinalState });
        return Close(new Rwkv6Result(ConcatTime(first.O, second.O), second.FinalState), whole);
    }));

    [Fact]
    public void Varlen_equals_separate_runs() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary,
        SequenceLengths, Gen.Elements("recurrent", "parallel", "chunked").ToArbitrary(), (c, lengths, variant) =>
    {
        var packed = c with { B = 1, T = lengths.Sum(), WithState = true };
        var (q, k, v, w, u, _) = packed.Inputs();
        var s0 = TestTensors.Normal(new Random(c.Seed), 1, lengths.Length, c.H, c.K, c.V);
        var together = Run(variant, packed, q, k, v, w, u, new Rwkv6Options { InitialState = s0, CuSeqlens = CuSeqlens(lengths) });
        Tensor o = Tensor.Zeros(1, 0, c.H, c.V);
        var finals = new List<Tensor>();
        int start = 0;
        for (int n = 0; n < lengths.Length; n++)
        {
            int end = start + lengths[n];
            var alone = Rwkv6.Recurrent(SliceTime(q, start, end), SliceTime(k, start, end), SliceTime(v, start, end),
                SliceTime(w, start, end), u, new Rwkv6Options { InitialState = Rows(s0, n, n + 1) });
            o = ConcatTime(o, alone.O);
            finals.Add(alone.FinalState);
            start = end;
        }
        return Close(together, new Rwkv6Result(o, StackRows(finals)));
    }));

    [Fact]
    public void Outputs_do_not_depend_on_later_inputs() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary,
        Gen.Choose(0, 1000).ToArbitrary(), Gen.Elements("recurrent", "parallel", "chunked").ToArbitrary(), (c, cut, variant) =>
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        int t0 = cut % c.T; // outputs 0..t0 must not move when anything after t0 changes
        var before = Run(variant, c, q, k, v, w, u, new Rwkv6Options { InitialState = s0 });
        var (q2, k2, v2, w2) = (q.Clone(), k.Clone(), v.Clone(), w.Clone());
        var random = new Random(c.Seed ^ 0x5bd1e995);
        foreach (Tensor x in new[] { q2, k2, v2, w2 })
        {
            for (int n = 0; n < x.Length; n++)
            {
                if (x.IndexOf(n)[1] > t0)
                {
                    x.Data[n] = x == w2 ? -20 * random.NextDouble() : random.NextDouble() * 10 - 5;
                }
            }
        }
        var after = Run(variant, c, q2, k2, v2, w2, u, new Rwkv6Options { InitialState = s0 });
        // Rows up to t0 are computed from the same numbers in the same order: bit-identical.
        return SamePrefix(before.O, after.O, t0 + 1);
    }));

    [Fact]
    public void The_scale_multiplies_the_queries() => PropertyRuns.Check(Prop.ForAll(Rwkv6Case.Arbitrary,
        Gen.Choose(1, 300).ToArbitrary(), (c, hundredths) =>
    {
        var (q, k, v, w, u, s0) = c.Inputs();
        double scale = hundredths / 100.0;
        var scaledQ = q.Clone();
        VectorScale(scaledQ, scale);
        var given = Rwkv6.Recurrent(q, k, v, w, u, new Rwkv6Options { InitialState = s0, Scale = scale });
        var folded = Rwkv6.Recurrent(scaledQ, k, v, w, u, new Rwkv6Options { InitialState = s0, Scale = 1 });
        return Close(given, folded);
    }), cases: 200);

    [Fact]
    public void A_bonus_of_the_wrong_shape_is_bad_input_naming_u()
    {
        var c = new Rwkv6Case(1, 4, 2, 3, 2, DecayRegime.Mild, false, 2, 1);
        var (q, k, v, w, _, _) = c.Inputs();
        var error = Assert.Throws<InputException>(() => Rwkv6.Recurrent(q, k, v, w, Tensor.Zeros(2)));
        Assert.Contains("'u'", error.Message, StringComparison.Ordinal);
        Assert.Throws<InputException>(() => Rwkv6.Chunked(q, k, v, w, Tensor.Zeros(2, 3), chunkSize: 0));
    }

    private static void VectorScale(Tensor x, double a)
    {
        for (int n = 0; n < x.Length; n++)
        {
            x.Data[n] *= a;
        }
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
