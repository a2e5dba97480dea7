using AttentionReference.Forms;
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
    public static IForm Form { get; } = new AttentionReference.Forms.Softmax.Forgetting();

    public int Hq => Hkv * Group;

    /// <summary>o and lse of <paramref name="variant"/> with this case's block sizes (and cu_seqlens where given).</summary>
    public SoftmaxOutputs Run(string variant, Tensor q, Tensor k, Tensor v, Tensor g, Tensor? cuSeqlens = null)
    {
        var tensors = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g };
        if (cuSeqlens is not null)
        {
            tensors["cu_seqlens"] = cuSeqlens;
        }
        return SoftmaxOutputs.Of(Form.Call(variant, tensors, FamilyTensors.Parameter("block_q", BlockQ), FamilyTensors.Parameter("block_k", BlockK)));
    }

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

/// <summary>forgetting's laws: naive against the per-element definition, tiled = naive, causality, strong gates, GQA, varlen.</summary>
public sealed class ForgettingTests
{
    // The same sums in double in different orders (the bias as one running sum, or as A_i + E_j; online or one-pass
    // softmax): a few ulps per term over at most 13 terms, below 1e-12 relative.
    private const double SameMathInDouble = 1e-12;

    private static readonly string[] s_variants = ["naive", "tiled"];

    private static bool Close(SoftmaxOutputs a, SoftmaxOutputs b) =>
        TestTensors.Close(a.O, b.O, SameMathInDouble) && TestTensors.Close(a.Lse, b.Lse, SameMathInDouble);

    [Law]
    public bool Naive_equals_the_definition_with_the_bias_summed_per_element(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        return Close(c.Run("naive", q, k, v, g), Textbook(c, q, k, v, g));
    }

    [Law]
    public bool Tiled_equals_naive_for_any_block_sizes(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        return Close(c.Run("tiled", q, k, v, g), c.Run("naive", q, k, v, g));
    }

    [Law]
    public bool Outputs_do_not_depend_on_later_steps(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
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
        return s_variants.All(variant =>
        {
            SoftmaxOutputs before = c.Run(variant, q, k, v, g), after = c.Run(variant, q2, k2, v2, g2);
            return FamilyTensors.SliceTime(before.O, 0, c.T - 1).Data.SequenceEqual(FamilyTensors.SliceTime(after.O, 0, c.T - 1).Data)
                && FamilyTensors.SliceTime(before.Lse, 0, c.T - 1).Data.SequenceEqual(FamilyTensors.SliceTime(after.Lse, 0, c.T - 1).Data);
        });
    }

    [Law]
    public bool Strong_gates_of_minus_20_per_step_stay_finite_and_exact(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        Array.Fill(g.Data, -20.0);
        var textbook = Textbook(c, q, k, v, g);
        return s_variants.All(variant =>
        {
            var result = c.Run(variant, q, k, v, g);
            return result.O.Data.Concat(result.Lse.Data).All(double.IsFinite) && Close(result, textbook);
        });
    }

    [Law]
    public bool Weak_gates_after_huge_ones_keep_their_digits(ForgettingCase c)
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
        var textbook = Textbook(c, q, k, v, g);
        return s_variants.All(variant => Close(c.Run(variant, q, k, v, g), textbook));
    }

    [Law]
    public bool Gqa_equals_mha_with_repeated_keys_and_values(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        var (kFull, vFull) = (FamilyTensors.RepeatHeads(k, c.Group), FamilyTensors.RepeatHeads(v, c.Group));
        // Identical arithmetic on identical numbers: bit for bit.
        return s_variants.All(variant => c.Run(variant, q, k, v, g).SameBits(c.Run(variant, q, kFull, vFull, g)));
    }

    [Law]
    public bool Varlen_equals_separate_runs_of_each_sequence(ForgettingCase c)
    {
        // B = 1 holding the packed sequences; cut T at random places (empty sequences included).
        var packed = c with { B = 1 };
        var (q, k, v, g) = packed.Inputs();
        var random = new Random(c.Seed);
        int[] cuts = [0, .. Enumerable.Range(0, random.Next(4)).Select(_ => random.Next(c.T + 1)).Order(), c.T];
        var cuSeqlens = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I32);
        foreach (string variant in s_variants)
        {
            var together = packed.Run(variant, q, k, v, g, cuSeqlens);
            for (int n = 0; n + 1 < cuts.Length; n++)
            {
                var (start, length) = (cuts[n], cuts[n + 1] - cuts[n]);
                var alone = packed.Run(variant, FamilyTensors.SliceTime(q, start, length), FamilyTensors.SliceTime(k, start, length),
                    FamilyTensors.SliceTime(v, start, length), FamilyTensors.SliceTime(g, start, length));
                // The same arithmetic on the same numbers, read from other offsets: the same bits.
                if (!new SoftmaxOutputs(FamilyTensors.SliceTime(together.O, start, length), FamilyTensors.SliceTime(together.Lse, start, length)).SameBits(alone))
                {
                    return false;
                }
            }
        }
        return true;
    }

    // Gradients (issue #19): the definition's against finite differences; tiled's, GQA's and varlen's against the
    // definition's (FamilyGradients.SameGradientsInDouble and its reason).

    private static Dictionary<string, Tensor> Call(Tensor q, Tensor k, Tensor v, Tensor g) => new() { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g };

    private static string[] Blocks(ForgettingCase c) => [FamilyTensors.Parameter("block_q", c.BlockQ), FamilyTensors.Parameter("block_k", c.BlockK)];

    [Law(50)]
    public Property Gradients_of_naive_equal_central_finite_differences(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        string? mismatch = FamilyGradients.FiniteDifferenceMismatch(ForgettingCase.Form, "naive", Call(q, k, v, g), Blocks(c), new Random(c.Seed));
        return (mismatch is null).Label(mismatch ?? "");
    }

    [Law]
    public bool Backward_of_tiled_equals_naive_for_any_block_sizes(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        var inputs = FamilyGradients.WithCotangents(ForgettingCase.Form, "naive", Call(q, k, v, g), Blocks(c), new Random(c.Seed));
        return FamilyGradients.Same(FamilyGradients.Gradients(ForgettingCase.Form, "tiled", inputs, Blocks(c)),
            FamilyGradients.Gradients(ForgettingCase.Form, "naive", inputs, Blocks(c)));
    }

    [Law]
    public bool Backward_with_gates_of_minus_20_per_step_stays_finite_and_tiled_equals_naive(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        Array.Fill(g.Data, -20.0);
        var inputs = FamilyGradients.WithCotangents(ForgettingCase.Form, "naive", Call(q, k, v, g), Blocks(c), new Random(c.Seed));
        var naive = FamilyGradients.Gradients(ForgettingCase.Form, "naive", inputs, Blocks(c));
        return naive.Values.All(x => x.Data.All(double.IsFinite))
            && FamilyGradients.Same(FamilyGradients.Gradients(ForgettingCase.Form, "tiled", inputs, Blocks(c)), naive);
    }

    [Law]
    public bool Backward_with_strong_gates_before_weak_ones_keeps_the_digits_of_dg(ForgettingCase c)
    {
        // g = −20 per step over the first half, FoX's gates after: dg_r of a step under the strong gates is ~e^−20 of the
        // diagonal's dS_ii (of order dlse_i). A dg taken as a reverse cumulative sum of rowsum(dS) − colsum(dS) subtracts
        // those from each other and keeps ~7 digits; summing the entries of dg_r alone keeps them all.
        var (q, k, v, g) = c.Inputs();
        for (int n = 0; n < g.Length; n++)
        {
            if (n / c.Hq % c.T < c.T / 2)
            {
                g.Data[n] = -20;
            }
        }
        var inputs = FamilyGradients.WithCotangents(ForgettingCase.Form, "naive", Call(q, k, v, g), Blocks(c), new Random(c.Seed));
        return FamilyGradients.Same(FamilyGradients.Gradients(ForgettingCase.Form, "tiled", inputs, Blocks(c)),
            FamilyGradients.Gradients(ForgettingCase.Form, "naive", inputs, Blocks(c)));
    }

    [Law]
    public bool Backward_gqa_equals_mha_with_repeated_keys_and_values_summed_over_the_repeats(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        var grouped = FamilyGradients.WithCotangents(ForgettingCase.Form, "naive", Call(q, k, v, g), Blocks(c), new Random(c.Seed));
        var repeated = new Dictionary<string, Tensor>(grouped) { ["k"] = FamilyTensors.RepeatHeads(k, c.Group), ["v"] = FamilyTensors.RepeatHeads(v, c.Group) };
        return s_variants.All(variant =>
        {
            var mha = FamilyGradients.Gradients(ForgettingCase.Form, variant, repeated, Blocks(c));
            var summed = new Dictionary<string, Tensor>(mha) { ["dk"] = FamilyTensors.SumRepeats(mha["dk"], c.Group), ["dv"] = FamilyTensors.SumRepeats(mha["dv"], c.Group) };
            return FamilyGradients.Same(FamilyGradients.Gradients(ForgettingCase.Form, variant, grouped, Blocks(c)), summed);
        });
    }

    [Law]
    public Property Backward_varlen_equals_separate_runs_of_each_sequence(ForgettingCase c)
    {
        // B = 1 holding the packed sequences; cut T at random places (empty sequences included).
        var packed = c with { B = 1 };
        var (q, k, v, g) = packed.Inputs();
        var random = new Random(c.Seed);
        int[] cuts = [0, .. Enumerable.Range(0, random.Next(4)).Select(_ => random.Next(c.T + 1)).Order(), c.T];
        var inputs = FamilyGradients.WithCotangents(ForgettingCase.Form, "naive", Call(q, k, v, g), Blocks(c), random);
        inputs["cu_seqlens"] = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I32);
        foreach (string variant in s_variants)
        {
            var together = FamilyGradients.Gradients(ForgettingCase.Form, variant, inputs, Blocks(packed));
            for (int n = 0; n + 1 < cuts.Length; n++)
            {
                var (start, length) = (cuts[n], cuts[n + 1] - cuts[n]);
                var alone = inputs.Where(p => p.Key != "cu_seqlens").ToDictionary(p => p.Key, p => FamilyTensors.SliceTime(p.Value, start, length));
                var separate = FamilyGradients.Gradients(ForgettingCase.Form, variant, alone, Blocks(packed));
                // The same arithmetic on the same numbers, read from other offsets: the same bits.
                if (!separate.All(p => FamilyTensors.SliceTime(together[p.Key], start, length).Data.SequenceEqual(p.Value.Data)))
                {
                    return false.Label($"{variant}: sequence {n}");
                }
            }
        }
        return true.ToProperty();
    }

    [Fact]
    public void A_gate_without_the_query_heads_is_bad_input_naming_g()
    {
        var c = new ForgettingCase(1, 4, 1, 2, 3, 3, 2, 2, 1);
        var (q, k, v, _) = c.Inputs();
        Assert.Equal("g", Assert.Throws<InputException>(() => c.Run("naive", q, k, v, Tensor.Zeros(1, 4, 1))).Tensor);
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
        var expected = Textbook(c, q, k, v, g);
        var written = TensorFiles.Read(output);
        TestTensors.AssertClose(written["o"], expected.O, SameMathInDouble, "o");
        TestTensors.AssertClose(written["lse"], expected.Lse, SameMathInDouble, "lse");

        var check = CliRunner.Run("check", "forgetting", "--in", input, "--candidate", output, "--variant", variant);
        Assert.Equal(0, check.ExitCode);
    }

    /// <summary>
    /// FoX's definition with none of the library's code: D_ij = Σ_{r=j+1..i} g_r added up for each (i, j) on its own,
    /// the causal score matrix materialised, then a stable softmax with Math.Exp.
    /// </summary>
    private static SoftmaxOutputs Textbook(ForgettingCase c, Tensor q, Tensor k, Tensor v, Tensor g) =>
        Softmax.Textbook.Attention(c.B, c.T, c.T, c.Hq, c.V, (b, h, i, j) =>
        {
            if (j > i)
            {
                return double.NegativeInfinity; // causal
            }
            double bias = 0;
            for (int r = j + 1; r <= i; r++)
            {
                bias += g[b, r, h];
            }
            return Softmax.Textbook.Dot(q, k, b, h, i, j, c.Group) / Math.Sqrt(c.K) + bias;
        }, (b, h, j, d) => v[b, j, h / c.Group, d]);
}
