using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.Softmax.FamilyTensors;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>
/// A random sparse problem: Tq ≠ Tk, GQA/MQA, block sizes that do not divide T, a random 0/1 layout (per head or
/// shared), random global tokens, causal or not. BigBird uses T = Tq = Tk and one block size Bq.
/// </summary>
public sealed record SparseCase(int B, int Tq, int Tk, int Hkv, int Group, int K, int V, int Bq, int Bk, int Window, bool Causal, bool SharedLayout, int Seed)
{
    public static IForm Form { get; } = new AttentionReference.Forms.Softmax.Sparse();

    public int Hq => Hkv * Group;

    public (Tensor Q, Tensor K, Tensor V) Inputs(int tk)
    {
        var random = new Random(Seed);
        return (TestTensors.Normal(random, 1, B, Tq, Hq, K),
                TestTensors.Normal(random, 1, B, tk, Hkv, K),
                TestTensors.Normal(random, 1, B, tk, Hkv, V));
    }

    /// <summary>A 0/1 layout [Hq or 1, ceil(Tq/bq), ceil(Tk/bk)], each cell 1 with probability 1/2.</summary>
    public Tensor Layout(int tk, int bq, int bk)
    {
        var random = new Random(Seed + 1);
        int[] shape = [SharedLayout ? 1 : Hq, (Tq + bq - 1) / bq, (tk + bk - 1) / bk];
        var data = new double[Tensor.ElementCount(shape)];
        for (int n = 0; n < data.Length; n++)
        {
            data[n] = random.Next(2);
        }
        return new Tensor(shape, data, DType.I32);
    }

    /// <summary>Up to three distinct global token positions in [0, tk).</summary>
    public Tensor GlobalTokens(int tk)
    {
        var random = new Random(Seed + 2);
        double[] picked = Enumerable.Range(0, random.Next(4)).Select(_ => (double)random.Next(tk)).Distinct().ToArray();
        return new Tensor([picked.Length], picked, DType.I64);
    }

    /// <summary>
    /// The variant's call on this case's tensors: block reads the layout, longformer the global tokens, bigbird both
    /// (T = Tq, one block size Bq, window_blocks = Window % 3).
    /// </summary>
    public (Dictionary<string, Tensor> Tensors, string[] Parameters) Call(string variant)
    {
        bool bigBird = variant == "bigbird";
        int tk = bigBird ? Tq : Tk, bk = bigBird ? Bq : Bk;
        var (q, k, v) = Inputs(tk);
        var tensors = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        if (variant != "longformer")
        {
            tensors["block_mask"] = Layout(tk, Bq, bk);
        }
        if (variant != "block")
        {
            tensors["global_tokens"] = GlobalTokens(tk);
        }
        return (tensors, [Parameter("causal", Causal), Parameter("block_q", Bq), Parameter("block_k", bk),
            Parameter("window", Window), Parameter("window_blocks", Window % 3)]);
    }

    /// <summary>o and lse of <paramref name="variant"/> on this case.</summary>
    public SoftmaxOutputs Run(string variant)
    {
        var (tensors, parameters) = Call(variant);
        return SoftmaxOutputs.Of(Form.Call(variant, tensors, parameters));
    }

    public static Arbitrary<SparseCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from tq in Gen.Choose(1, 11)
         from tk in Gen.Choose(1, 11)
         from hkv in Gen.Choose(1, 2)
         from g in Gen.Choose(1, 2)
         from k in Gen.Elements(1, 3, 8)
         from v in Gen.Elements(1, 4, 5)
         from bq in Gen.Choose(1, 4)
         from bk in Gen.Choose(1, 4)
         from window in Gen.Choose(0, 4)
         from causal in Gen.Elements(false, true)
         from shared in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new SparseCase(b, tq, tk, hkv, g, k, v, bq, bk, window, causal, shared, seed)).ToArbitrary();
}

/// <summary>sparse's laws: each pattern is softmax with the equivalent dense mask.</summary>
public sealed class SparseTests
{
    // Both sides compute the same sums in double, in different orders and with different exp routines:
    // Agreement.Close's bounds (1e-12 on the scale of each output) and their reasons.

    private static readonly string[] s_variants = ["block", "longformer", "bigbird"];

    /// <summary>The dense reference: the textbook softmax with −∞ where <paramref name="allowed"/>(h, i, j) is false.</summary>
    private static SoftmaxOutputs Dense(SparseCase c, Dictionary<string, Tensor> x, Func<int, int, int, bool> allowed)
    {
        var (q, k, v) = (x["q"], x["k"], x["v"]);
        return Textbook.Attention(c.B, c.Tq, k.Dim(1), c.Hq, c.V,
            (b, h, i, j) => allowed(h, i, j) ? Textbook.Dot(q, k, b, h, i, j, c.Group) / Math.Sqrt(c.K) : double.NegativeInfinity,
            (b, h, j, d) => v[b, j, h / c.Group, d]);
    }

    /// <summary>allowed_h(i, j) ∧ causal of <paramref name="variant"/> on this case's tensors, spelled out from the papers.</summary>
    private static Func<int, int, int, bool> Allowed(SparseCase c, string variant, Dictionary<string, Tensor> x)
    {
        switch (variant)
        {
            case "block":
                Tensor layout = x["block_mask"];
                return (h, i, j) => layout[layout.Dim(0) == 1 ? 0 : h, i / c.Bq, j / c.Bk] == 1 && (!c.Causal || j <= i + c.Tk - c.Tq);
            case "longformer":
            {
                var global = x["global_tokens"].Data.Select(t => (int)t).ToHashSet();
                // Beltagy et al. §3.1: a window of w keys on each side of the query's own position, plus symmetric global attention.
                return (_, i, j) =>
                {
                    int self = i + c.Tk - c.Tq;
                    bool allowed = Math.Abs(j - self) <= c.Window || global.Contains(self) || global.Contains(j);
                    return allowed && (!c.Causal || j <= self);
                };
            }
            default:
            {
                // Self-attention with one block size: T = Tq, B = Bq; the window counts blocks (window_blocks = Window % 3).
                int size = c.Bq, windowBlocks = c.Window % 3;
                Tensor random = x["block_mask"];
                var global = x["global_tokens"].Data.Select(t => (int)t).ToHashSet();
                return (h, i, j) =>
                {
                    bool window = Math.Abs(i / size - j / size) <= windowBlocks;
                    bool randomBlock = random[random.Dim(0) == 1 ? 0 : h, i / size, j / size] == 1;
                    return (window || global.Contains(i) || global.Contains(j) || randomBlock) && (!c.Causal || j <= i);
                };
            }
        }
    }

    [Law]
    public bool Block_equals_softmax_with_the_dense_mask(SparseCase c)
    {
        var (x, _) = c.Call("block");
        return Agreement.Close(c.Run("block"), Dense(c, x, Allowed(c, "block", x)), x["v"]);
    }

    [Law]
    public bool Longformer_equals_softmax_with_the_dense_mask(SparseCase c)
    {
        var (x, _) = c.Call("longformer");
        return Agreement.Close(c.Run("longformer"), Dense(c, x, Allowed(c, "longformer", x)), x["v"]);
    }

    [Law]
    public bool BigBird_equals_softmax_with_the_dense_mask(SparseCase c)
    {
        var (x, _) = c.Call("bigbird");
        return Agreement.Close(c.Run("bigbird"), Dense(c, x, Allowed(c, "bigbird", x)), x["v"]);
    }

    // Gradients (issue #19): every pattern's against finite differences, and against softmax's under the dense mask
    // (FamilyGradients.SameGradientsInDouble and its reason).

    [Law(50)]
    public Property Gradients_of_every_pattern_equal_central_finite_differences(SparseCase c)
    {
        var random = new Random(c.Seed);
        foreach (string variant in s_variants)
        {
            var (x, parameters) = c.Call(variant);
            if (FamilyGradients.FiniteDifferenceMismatch(SparseCase.Form, variant, x, parameters, random) is { } mismatch)
            {
                return false.Label($"{variant}: {mismatch}");
            }
        }
        return true.ToProperty();
    }

    [Law]
    public Property Backward_of_every_pattern_equals_softmax_backward_with_the_dense_mask(SparseCase c)
    {
        var random = new Random(c.Seed);
        foreach (string variant in s_variants)
        {
            var (x, parameters) = c.Call(variant);
            var inputs = FamilyGradients.WithCotangents(SparseCase.Form, variant, x, parameters, random);
            var allowed = Allowed(c, variant, x);
            int tk = x["k"].Dim(1);
            var mask = new Tensor([1, c.Hq, c.Tq, tk], new double[c.Hq * c.Tq * tk], DType.I32);
            for (int h = 0; h < c.Hq; h++)
            {
                for (int i = 0; i < c.Tq; i++)
                {
                    for (int j = 0; j < tk; j++)
                    {
                        mask[0, h, i, j] = allowed(h, i, j) ? 1 : 0;
                    }
                }
            }
            var dense = new Dictionary<string, Tensor>
            {
                ["q"] = x["q"], ["k"] = x["k"], ["v"] = x["v"], ["mask"] = mask, ["do"] = inputs["do"], ["dlse"] = inputs["dlse"],
            };
            if (!FamilyGradients.Same(FamilyGradients.Gradients(SparseCase.Form, variant, inputs, parameters),
                FamilyGradients.Gradients(FormCatalog.Find("softmax"), "naive", dense)))
            {
                return false.Label(variant);
            }
        }
        return true.ToProperty();
    }

    [Law]
    public bool Gqa_equals_mha_with_repeated_keys_and_values_in_every_pattern(SparseCase c)
    {
        return s_variants.All(variant =>
        {
            var (x, parameters) = c.Call(variant);
            var full = new Dictionary<string, Tensor>(x) { ["k"] = RepeatHeads(x["k"], c.Group), ["v"] = RepeatHeads(x["v"], c.Group) };
            // Identical arithmetic on identical numbers: bit for bit.
            return SoftmaxOutputs.Of(SparseCase.Form.Call(variant, x, parameters)).SameBits(SoftmaxOutputs.Of(SparseCase.Form.Call(variant, full, parameters)));
        });
    }

    [Law]
    public Property Backward_gqa_equals_mha_with_repeated_keys_and_values_summed_over_the_repeats_in_every_pattern(SparseCase c)
    {
        var random = new Random(c.Seed);
        foreach (string variant in s_variants)
        {
            var (x, parameters) = c.Call(variant);
            var grouped = FamilyGradients.WithCotangents(SparseCase.Form, variant, x, parameters, random);
            var repeated = new Dictionary<string, Tensor>(grouped) { ["k"] = RepeatHeads(x["k"], c.Group), ["v"] = RepeatHeads(x["v"], c.Group) };
            var mha = FamilyGradients.Gradients(SparseCase.Form, variant, repeated, parameters);
            var summed = new Dictionary<string, Tensor> { ["dq"] = mha["dq"], ["dk"] = SumRepeats(mha["dk"], c.Group), ["dv"] = SumRepeats(mha["dv"], c.Group) };
            if (!FamilyGradients.Same(FamilyGradients.Gradients(SparseCase.Form, variant, grouped, parameters), summed))
            {
                return false.Label(variant);
            }
        }
        return true.ToProperty();
    }

    [Law]
    public bool A_shared_layout_equals_the_same_layout_repeated_over_heads(SparseCase c)
    {
        var (x, parameters) = (c with { SharedLayout = true }).Call("block");
        Tensor layout = x["block_mask"];
        var repeated = Tensor.Zeros(c.Hq, layout.Dim(1), layout.Dim(2));
        for (int h = 0; h < c.Hq; h++)
        {
            Array.Copy(layout.Data, 0, repeated.Data, h * layout.Length, layout.Length);
        }
        var perHead = new Dictionary<string, Tensor>(x) { ["block_mask"] = new Tensor(repeated.ShapeArray(), repeated.Data, DType.I32) };
        // The same keys in the same order: bit for bit.
        return SoftmaxOutputs.Of(SparseCase.Form.Call("block", x, parameters)).SameBits(SoftmaxOutputs.Of(SparseCase.Form.Call("block", perHead, parameters)));
    }

    [Fact]
    public void Rows_of_an_empty_block_row_give_zero_output_and_minus_infinity_lse()
    {
        // Tq = 6 in blocks of 2; block row 1 (queries 2 and 3) sees nothing.
        var c = new SparseCase(1, 6, 5, 1, 1, 4, 3, 2, 2, 0, false, true, 11);
        var (q, k, v) = c.Inputs(c.Tk);
        var layout = new Tensor([1, 3, 3], [1, 0, 1, 0, 0, 0, 0, 1, 1], DType.I32);
        var result = SoftmaxOutputs.Of(SparseCase.Form.Call("block",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = layout }, "block_q=2", "block_k=2"));
        for (int i = 0; i < 6; i++)
        {
            bool empty = i is 2 or 3;
            Assert.Equal(empty, double.IsNegativeInfinity(result.Lse[0, i, 0]));
            Assert.Equal(empty, Enumerable.Range(0, 3).All(d => result.O[0, i, 0, d] == 0));
        }
    }

    [Fact]
    public void Rows_of_an_empty_block_row_give_zero_gradients_whatever_their_dlse()
    {
        // Tq = 6 in blocks of 2; block row 1 (queries 2 and 3) sees nothing: large cotangents on its o = 0 and lse = −∞
        // change nothing, and its dq is 0.
        var c = new SparseCase(1, 6, 5, 1, 1, 4, 3, 2, 2, 0, false, true, 11);
        var (q, k, v) = c.Inputs(c.Tk);
        var layout = new Tensor([1, 3, 3], [1, 0, 1, 0, 0, 0, 0, 1, 1], DType.I32);
        string[] blocks = ["block_q=2", "block_k=2"];
        var inputs = FamilyGradients.WithCotangents(SparseCase.Form, "block",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = layout }, blocks, new Random(7));
        var quiet = new Dictionary<string, Tensor>(inputs) { ["do"] = inputs["do"].Clone(), ["dlse"] = inputs["dlse"].Clone() };
        foreach (int i in (int[])[2, 3])
        {
            (inputs["dlse"][0, i, 0], quiet["dlse"][0, i, 0]) = (1e3, 0);
            for (int d = 0; d < 3; d++)
            {
                (inputs["do"][0, i, 0, d], quiet["do"][0, i, 0, d]) = (5, 0);
            }
        }
        var gradients = FamilyGradients.Gradients(SparseCase.Form, "block", inputs, blocks);
        Assert.All(gradients.Values, g => Assert.All(g.Data, e => Assert.True(double.IsFinite(e))));
        Assert.All(SliceTime(gradients["dq"], 2, 2).Data, e => Assert.Equal(0, e));
        Assert.True(FamilyGradients.Same(gradients, FamilyGradients.Gradients(SparseCase.Form, "block", quiet, blocks)));
    }

    [Law]
    public bool A_nan_in_a_disallowed_key_does_not_reach_the_output(SparseCase c)
    {
        // Longformer with window 0 and no global token: query i sees only key d_i, so key 0 is outside every row
        // but the one whose d_i = 0; a NaN there may reach that row only.
        var (q, k, v) = c.Inputs(c.Tk);
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hkv; h++)
            {
                k[b, 0, h, 0] = double.NaN;
                v[b, 0, h, 0] = double.NaN;
            }
        }
        var result = SoftmaxOutputs.Of(SparseCase.Form.Call("longformer", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v }, "window=0"));
        for (int i = 0; i < c.Tq; i++)
        {
            bool seesKey0 = i + c.Tk - c.Tq == 0;
            for (int b = 0; b < c.B; b++)
            {
                for (int h = 0; h < c.Hq; h++)
                {
                    if (double.IsNaN(result.Lse[b, i, h]) != seesKey0)
                    {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    [Fact]
    public void A_layout_of_the_wrong_shape_is_bad_input_naming_block_mask()
    {
        var c = new SparseCase(1, 6, 5, 1, 2, 4, 3, 2, 2, 0, false, false, 3);
        var (q, k, v) = c.Inputs(c.Tk);
        var layout = new Tensor([2, 3, 2], new double[12], DType.I32); // Nk must be ceil(5/2) = 3
        var error = Assert.Throws<InputException>(() => SparseCase.Form.Call("block",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = layout }, "block_q=2", "block_k=2"));
        Assert.Equal("block_mask", error.Tensor);
        var floats = new Tensor([2, 3, 3], new double[18]); // a layout is never floats
        Assert.Equal("block_mask", Assert.Throws<InputException>(() => SparseCase.Form.Call("block",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = floats }, "block_q=2", "block_k=2")).Tensor);
    }

    [Fact]
    public void A_global_token_outside_the_keys_is_bad_input_naming_global_tokens()
    {
        var c = new SparseCase(1, 4, 4, 1, 1, 4, 3, 2, 2, 1, false, true, 5);
        var (q, k, v) = c.Inputs(c.Tk);
        var error = Assert.Throws<InputException>(() => SparseCase.Form.Call("longformer",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["global_tokens"] = new Tensor([1], [4], DType.I32) }, "window=1"));
        Assert.Equal("global_tokens", error.Tensor);
    }

    [Fact]
    public void Bigbird_on_cross_attention_or_with_two_block_sizes_is_bad_input()
    {
        var c = new SparseCase(1, 4, 6, 1, 1, 4, 3, 2, 2, 1, false, true, 5);
        var (q, k, v) = c.Inputs(c.Tk);
        var tensors = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = c.Layout(c.Tk, 2, 2) };
        var error = Assert.Throws<InputException>(() => SparseCase.Form.Call("bigbird", tensors, "block_q=2", "block_k=2"));
        Assert.Contains("needs Tq = Tk and block_q = block_k", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("block")]
    [InlineData("longformer")]
    [InlineData("bigbird")]
    public void Run_and_check_work_from_files(string variant)
    {
        using var temp = new TempFolder();
        var c = new SparseCase(1, 8, 8, 1, 2, 4, 3, 2, 2, 1, true, false, 21);
        var (q, k, v) = c.Inputs(c.Tk);
        Tensor layout = c.Layout(c.Tk, 2, 2), globalTokens = new Tensor([1], [5], DType.I32);
        var file = new TensorFile();
        file.Add("q", q);
        file.Add("k", k);
        file.Add("v", v);
        file.Add("block_mask", layout);
        file.Add("global_tokens", globalTokens);
        var parameters = new Dictionary<string, string> { ["causal"] = "true", ["block_q"] = "2", ["block_k"] = "2", ["window"] = "1", ["window_blocks"] = "1" };
        foreach (var (key, value) in parameters)
        {
            file.Metadata[key] = value;
        }
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        TensorFiles.Write(input, file);

        var run = CliRunner.Run("run", "sparse", "--in", input, "--out", output, "--variant", variant);
        Assert.Equal(0, run.ExitCode);
        var tensors = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        if (variant != "longformer")
        {
            tensors["block_mask"] = layout;
        }
        if (variant != "block")
        {
            tensors["global_tokens"] = globalTokens;
        }
        var expected = SparseCase.Form.Run(variant, tensors, new FormParameters(parameters));
        var written = TensorFiles.Read(output);
        Assert.Equal(expected["o"].Data, written["o"].Data);
        Assert.Equal(expected["lse"].Data, written["lse"].Data);

        var check = CliRunner.Run("check", "sparse", "--in", input, "--candidate", output, "--variant", variant);
        Assert.Equal(0, check.ExitCode);
    }
}
