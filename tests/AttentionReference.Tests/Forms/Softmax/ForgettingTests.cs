using AttentionReference.Forms.Softmax;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>A random FoX problem: GQA/MQA, odd head dims, gates log σ(x) of normal x, and tile sizes that do not divide T.</summary>
public sealed record ForgettingCase(int B, int T, int Hkv, int Group, int K, int V, int BlockQ, int BlockK, int Seed)
{
    public int Hq => Hkv * Group;

    public (Tensor Q, Tensor K, Tensor V, Tensor G) Inputs()
    {
        var random = new Random(Seed);
        var (q, k, v) = (TestTensors.Normal(random, 1, B, T, Hq, K), TestTensors.Normal(random, 1, B, T, Hkv, K), TestTensors.Normal(random, 1, B, T, Hkv, V));
        // FoX's gate: f = σ(w·x + b), g = log f = −softplus(−x) ≤ 0; x normal with mean 1 covers weak and strong gates.
        Tensor x = TestTensors.Normal(random, 2, B, T, Hq);
        var g = new Tensor(x.ShapeArray(), x.Data.Select(z => -Math.Log(1 + Math.Exp(-(z + 1)))).ToArray());
        return (q, k, v, g);
    }

    public static Arbitrary<ForgettingCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(1, 13)
         from hkv in Gen.Choose(1, 2)
         from g in Gen.Choose(1, 3)
         from k in Gen.Elements(1, 3, 8)
         from v in Gen.Elements(1, 4, 5)
         from bq in Gen.Choose(1, 6)
         from bk in Gen.Choose(1, 6)
         from seed in Gen.Choose(0, int.MaxValue)
         select new ForgettingCase(b, t, hkv, g, k, v, bq, bk, seed)).ToArbitrary();
}

public sealed class ForgettingTests
{
    // The same sums in double in different orders (the bias as one running sum, or as A_i + E_j; online or one-pass
    // softmax): a few ulps per term over at most 13 terms, below 1e-12 relative.
    private const double SameMathInDouble = 1e-12;

    [Fact]
    public void Naive_equals_the_definition_with_the_bias_summed_per_element() => PropertyRuns.Check(Prop.ForAll(ForgettingCase.Arbitrary, c =>
    {
        var (q, k, v, g) = c.Inputs();
        var result = Forgetting.Naive(q, k, v, g);
        var (o, lse) = Textbook(c, q, k, v, g);
        return TestTensors.Close(result.O, o, SameMathInDouble) && TestTensors.Close(result.Lse, lse, SameMathInDouble);
    }));

    [Fact]
    public void Tiled_equals_naive_for_any_block_sizes() => PropertyRuns.Check(Prop.ForAll(ForgettingCase.Arbitrary, c =>
    {
        var (q, k, v, g) = c.Inputs();
        var naive = Forgetting.Naive(q, k, v, g);
        var tiled = Forgetting.Tiled(q, k, v, g, new ForgettingOptions { BlockQ = c.BlockQ, BlockK = c.BlockK });
        return TestTensors.Close(tiled.O, naive.O, SameMathInDouble) && TestTensors.Close(tiled.Lse, naive.Lse, SameMathInDouble);
    }));

    [Fact]
    public void Outputs_do_not_depend_on_later_steps() => PropertyRuns.Check(Prop.ForAll(ForgettingCase.Arbitrary, c =>
    {
        var (q, k, v, g) = c.Inputs();
        var options = new ForgettingOptions { BlockQ = c.BlockQ, BlockK = c.BlockK };
        var before = Forgetting.Tiled(q, k, v, g, options);
        // Change every input at the last step: rows 0 … T−2 must stay bit for bit the same.
        var (q2, k2, v2, g2) = (q.Clone(), k.Clone(), v.Clone(), g.Clone());
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hq; h++)
            {
                q2[b, c.T - 1, h, 0] += 1;
                g2[b, c.T - 1, h] -= 1;
            }
            for (int h = 0; h < c.Hkv; h++)
            {
                k2[b, c.T - 1, h, 0] += 1;
                v2[b, c.T - 1, h, 0] += 1;
            }
        }
        var after = Forgetting.Tiled(q2, k2, v2, g2, options);
        int oStep = c.Hq * c.V, lseStep = c.Hq;
        for (int b = 0; b < c.B; b++)
        {
            if (!before.O.Data.AsSpan(b * c.T * oStep, (c.T - 1) * oStep).SequenceEqual(after.O.Data.AsSpan(b * c.T * oStep, (c.T - 1) * oStep))
                || !before.Lse.Data.AsSpan(b * c.T * lseStep, (c.T - 1) * lseStep).SequenceEqual(after.Lse.Data.AsSpan(b * c.T * lseStep, (c.T - 1) * lseStep)))
            {
                return false;
            }
        }
        return true;
    }), cases: 200);

    [Fact]
    public void Strong_gates_of_minus_20_per_step_stay_finite_and_exact() => PropertyRuns.Check(Prop.ForAll(ForgettingCase.Arbitrary, c =>
    {
        var (q, k, v, g) = c.Inputs();
        Array.Fill(g.Data, -20.0);
        var (o, lse) = Textbook(c, q, k, v, g);
        var naive = Forgetting.Naive(q, k, v, g);
        var tiled = Forgetting.Tiled(q, k, v, g, new ForgettingOptions { BlockQ = c.BlockQ, BlockK = c.BlockK });
        return naive.O.Data.Concat(naive.Lse.Data).Concat(tiled.O.Data).Concat(tiled.Lse.Data).All(double.IsFinite)
            && TestTensors.Close(naive.O, o, SameMathInDouble) && TestTensors.Close(naive.Lse, lse, SameMathInDouble)
            && TestTensors.Close(tiled.O, o, SameMathInDouble) && TestTensors.Close(tiled.Lse, lse, SameMathInDouble);
    }), cases: 200);

    [Fact]
    public void Weak_gates_after_huge_ones_keep_their_digits() => PropertyRuns.Check(Prop.ForAll(ForgettingCase.Arbitrary, c =>
    {
        // The first half forgets with g = −1e6 per step, the rest with g ≈ −0.1: a cumulative sum c reaches −1e6·T/2,
        // and c_i − c_j for two late steps would keep only ~10 of the ~16 digits of −0.1·(i − j). Summed directly,
        // the late rows match the per-element definition to rounding.
        var (q, k, v, g) = c.Inputs();
        for (int n = 0; n < g.Length; n++)
        {
            int t = n / c.Hq % c.T;
            g.Data[n] = t < c.T / 2 ? -1e6 : -0.1 + 0.01 * g.Data[n];
        }
        var (o, lse) = Textbook(c, q, k, v, g);
        var naive = Forgetting.Naive(q, k, v, g);
        var tiled = Forgetting.Tiled(q, k, v, g, new ForgettingOptions { BlockQ = c.BlockQ, BlockK = c.BlockK });
        return TestTensors.Close(naive.O, o, SameMathInDouble) && TestTensors.Close(naive.Lse, lse, SameMathInDouble)
            && TestTensors.Close(tiled.O, o, SameMathInDouble) && TestTensors.Close(tiled.Lse, lse, SameMathInDouble);
    }), cases: 200);

    [Fact]
    public void Gqa_equals_mha_with_repeated_keys_and_values() => PropertyRuns.Check(Prop.ForAll(ForgettingCase.Arbitrary, c =>
    {
        var (q, k, v, g) = c.Inputs();
        var grouped = Forgetting.Naive(q, k, v, g);
        var full = Forgetting.Naive(q, RepeatHeads(k, c.Group), RepeatHeads(v, c.Group), g);
        // Identical arithmetic on identical numbers: bit for bit.
        return grouped.O.Data.SequenceEqual(full.O.Data) && grouped.Lse.Data.SequenceEqual(full.Lse.Data);
    }), cases: 200);

    [Fact]
    public void Varlen_equals_separate_runs_of_each_sequence() => PropertyRuns.Check(Prop.ForAll(ForgettingCase.Arbitrary, c =>
    {
        // B = 1 holding the packed sequences; cut T at random places (empty sequences included).
        var packed = c with { B = 1 };
        var (q, k, v, g) = packed.Inputs();
        var random = new Random(c.Seed);
        int[] cuts = [0, .. Enumerable.Range(0, random.Next(4)).Select(_ => random.Next(c.T + 1)).Order(), c.T];
        var cuSeqlens = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I32);
        for (int pass = 0; pass < 2; pass++)
        {
            bool tiled = pass == 1;
            var options = new ForgettingOptions { BlockQ = c.BlockQ, BlockK = c.BlockK };
            ForgettingResult Run(Tensor q1, Tensor k1, Tensor v1, Tensor g1, ForgettingOptions o1) =>
                tiled ? Forgetting.Tiled(q1, k1, v1, g1, o1) : Forgetting.Naive(q1, k1, v1, g1, o1);
            var together = Run(q, k, v, g, options with { CuSeqlens = cuSeqlens });
            for (int n = 0; n + 1 < cuts.Length; n++)
            {
                var (start, length) = (cuts[n], cuts[n + 1] - cuts[n]);
                if (length == 0)
                {
                    continue;
                }
                var alone = Run(Steps(q, start, length), Steps(k, start, length), Steps(v, start, length), Steps(g, start, length), options);
                // The same arithmetic on the same numbers, read from other offsets: equal to rounding at most.
                if (!TestTensors.Close(Steps(together.O, start, length), alone.O, SameMathInDouble)
                    || !TestTensors.Close(Steps(together.Lse, start, length), alone.Lse, SameMathInDouble))
                {
                    return false;
                }
            }
        }
        return true;
    }), cases: 200);

    [Fact]
    public void A_gate_without_the_query_heads_is_bad_input_naming_g()
    {
        var (q, k, v, _) = new ForgettingCase(1, 4, 1, 2, 3, 3, 2, 2, 1).Inputs();
        var error = Assert.Throws<InputException>(() => Forgetting.Naive(q, k, v, Tensor.Zeros(1, 4, 1)));
        Assert.Equal("g", error.Tensor);
    }

    [Theory]
    [InlineData("naive")]
    [InlineData("tiled")]
    public void Run_and_check_work_from_files(string variant)
    {
        using var temp = new TempFolder();
        var c = new ForgettingCase(2, 9, 1, 2, 4, 3, 4, 3, 13);
        var (q, k, v, g) = c.Inputs();
        var file = new TensorFile();
        file.Add("q", q);
        file.Add("k", k);
        file.Add("v", v);
        file.Add("g", g);
        file.Metadata["block_q"] = "4";
        file.Metadata["block_k"] = "3";
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        TensorFiles.Write(input, file);

        var run = CliRunner.Run("run", "forgetting", "--in", input, "--out", output, "--variant", variant);
        Assert.Equal(0, run.ExitCode);
        var (o, lse) = Textbook(c, q, k, v, g);
        var written = TensorFiles.Read(output);
        TestTensors.AssertClose(written["o"], o, SameMathInDouble, "o");
        TestTensors.AssertClose(written["lse"], lse, SameMathInDouble, "lse");

        var check = CliRunner.Run("check", "forgetting", "--in", input, "--candidate", output, "--variant", variant);
        Assert.Equal(0, check.ExitCode);
    }

    /// <summary>
    /// FoX's definition with none of the library's code: D_ij = Σ_{r=j+1..i} g_r added up for each (i, j) on its own,
    /// the causal score matrix materialised, then a stable softmax with Math.Exp.
    /// </summary>
    private static (Tensor O, Tensor Lse) Textbook(ForgettingCase c, Tensor q, Tensor k, Tensor v, Tensor g)
    {
        var o = Tensor.Zeros(c.B, c.T, c.Hq, c.V);
        var lse = Tensor.Zeros(c.B, c.T, c.Hq);
        double scale = 1 / Math.Sqrt(c.K);
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hq; h++)
            {
                int hk = h / c.Group;
                for (int i = 0; i < c.T; i++)
                {
                    var s = new double[i + 1];
                    for (int j = 0; j <= i; j++)
                    {
                        double dot = 0, bias = 0;
                        for (int d = 0; d < c.K; d++)
                        {
                            dot += q[b, i, h, d] * k[b, j, hk, d];
                        }
                        for (int r = j + 1; r <= i; r++)
                        {
                            bias += g[b, r, h];
                        }
                        s[j] = scale * dot + bias;
                    }
                    double m = s.Max();
                    double total = s.Sum(x => Math.Exp(x - m));
                    lse[b, i, h] = m + Math.Log(total);
                    for (int d = 0; d < c.V; d++)
                    {
                        double sum = 0;
                        for (int j = 0; j <= i; j++)
                        {
                            sum += Math.Exp(s[j] - m) * v[b, j, hk, d];
                        }
                        o[b, i, h, d] = sum / total;
                    }
                }
            }
        }
        return (o, lse);
    }

    /// <summary>Time steps [start, start + length) of a [1,T,…] tensor.</summary>
    private static Tensor Steps(Tensor x, int start, int length)
    {
        int[] shape = x.ShapeArray();
        int step = x.Length / shape[1];
        shape[1] = length;
        return new Tensor(shape, x.Data.AsSpan(start * step, length * step).ToArray());
    }

    private static Tensor RepeatHeads(Tensor x, int group)
    {
        int[] shape = x.ShapeArray();
        var repeated = Tensor.Zeros(shape[0], shape[1], shape[2] * group, shape[3]);
        for (int b = 0; b < shape[0]; b++)
        {
            for (int t = 0; t < shape[1]; t++)
            {
                for (int h = 0; h < shape[2] * group; h++)
                {
                    for (int d = 0; d < shape[3]; d++)
                    {
                        repeated[b, t, h, d] = x[b, t, h / group, d];
                    }
                }
            }
        }
        return repeated;
    }
}
