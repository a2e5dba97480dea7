using AttentionReference.Forms.Softmax;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>
/// A random sparse problem: Tq ≠ Tk, GQA/MQA, block sizes that do not divide T, a random 0/1 layout (per head or
/// shared), random global tokens, causal or not. BigBird uses T = Tq = Tk and one block size Bq.
/// </summary>
public sealed record SparseCase(int B, int Tq, int Tk, int Hkv, int Group, int K, int V, int Bq, int Bk, int Window, bool Causal, bool SharedLayout, int Seed)
{
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

public sealed class SparseTests
{
    // Both sides compute the same sums in double, in different orders and with different exp routines: a few ulps
    // per term over at most 11 terms, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    [Fact]
    public void Block_equals_softmax_with_the_dense_mask() => PropertyRuns.Check(Prop.ForAll(SparseCase.Arbitrary, c =>
    {
        var (q, k, v) = c.Inputs(c.Tk);
        Tensor layout = c.Layout(c.Tk, c.Bq, c.Bk);
        var options = new SparseOptions { Causal = c.Causal, BlockQ = c.Bq, BlockK = c.Bk };
        var sparse = Sparse.Block(q, k, v, layout, options);
        var dense = MaskedTextbook(c, q, k, v, (h, i, j) =>
            layout[layout.Dim(0) == 1 ? 0 : h, i / c.Bq, j / c.Bk] == 1 && (!c.Causal || j <= i + c.Tk - c.Tq));
        return TestTensors.Close(sparse.O, dense.O, SameMathInDouble) && TestTensors.Close(sparse.Lse, dense.Lse, SameMathInDouble);
    }));

    [Fact]
    public void Longformer_equals_softmax_with_the_dense_mask() => PropertyRuns.Check(Prop.ForAll(SparseCase.Arbitrary, c =>
    {
        var (q, k, v) = c.Inputs(c.Tk);
        Tensor globalTokens = c.GlobalTokens(c.Tk);
        var global = globalTokens.Data.Select(x => (int)x).ToHashSet();
        var sparse = Sparse.Longformer(q, k, v, globalTokens, new SparseOptions { Causal = c.Causal, Window = c.Window });
        // Beltagy et al. §3.1: a window of w keys on each side of the query's own position, plus symmetric global attention.
        var dense = MaskedTextbook(c, q, k, v, (_, i, j) =>
        {
            int self = i + c.Tk - c.Tq;
            bool allowed = Math.Abs(j - self) <= c.Window || global.Contains(self) || global.Contains(j);
            return allowed && (!c.Causal || j <= self);
        });
        return TestTensors.Close(sparse.O, dense.O, SameMathInDouble) && TestTensors.Close(sparse.Lse, dense.Lse, SameMathInDouble);
    }));

    [Fact]
    public void BigBird_equals_softmax_with_the_dense_mask() => PropertyRuns.Check(Prop.ForAll(SparseCase.Arbitrary, c =>
    {
        // Self-attention with one block size: T = Tq, B = Bq; the window counts blocks (window_blocks = Window % 3).
        int t = c.Tq, size = c.Bq, windowBlocks = c.Window % 3;
        var (q, k, v) = c.Inputs(t);
        Tensor random = c.Layout(t, size, size), globalTokens = c.GlobalTokens(t);
        var global = globalTokens.Data.Select(x => (int)x).ToHashSet();
        var options = new SparseOptions { Causal = c.Causal, BlockQ = size, BlockK = size, WindowBlocks = windowBlocks };
        var sparse = Sparse.BigBird(q, k, v, random, globalTokens, options);
        var dense = MaskedTextbook(c with { Tk = t }, q, k, v, (h, i, j) =>
        {
            bool window = Math.Abs(i / size - j / size) <= windowBlocks;
            bool randomBlock = random[random.Dim(0) == 1 ? 0 : h, i / size, j / size] == 1;
            return (window || global.Contains(i) || global.Contains(j) || randomBlock) && (!c.Causal || j <= i);
        });
        return TestTensors.Close(sparse.O, dense.O, SameMathInDouble) && TestTensors.Close(sparse.Lse, dense.Lse, SameMathInDouble);
    }));

    [Fact]
    public void An_all_ones_layout_equals_full_softmax() => PropertyRuns.Check(Prop.ForAll(SparseCase.Arbitrary, c =>
    {
        var (q, k, v) = c.Inputs(c.Tk);
        Tensor layout = c.Layout(c.Tk, c.Bq, c.Bk);
        Array.Fill(layout.Data, 1.0);
        var sparse = Sparse.Block(q, k, v, layout, new SparseOptions { Causal = c.Causal, BlockQ = c.Bq, BlockK = c.Bk });
        var dense = AttentionReference.Forms.Softmax.Softmax.Naive(q, k, v, new SoftmaxOptions { Causal = c.Causal });
        return TestTensors.Close(sparse.O, dense.O, SameMathInDouble) && TestTensors.Close(sparse.Lse, dense.Lse, SameMathInDouble);
    }), cases: 200);

    [Fact]
    public void Longformer_without_global_tokens_equals_softmax_with_a_symmetric_window() => PropertyRuns.Check(Prop.ForAll(SparseCase.Arbitrary, c =>
    {
        var (q, k, v) = c.Inputs(c.Tk);
        var sparse = Sparse.Longformer(q, k, v, null, new SparseOptions { Causal = c.Causal, Window = c.Window });
        var dense = AttentionReference.Forms.Softmax.Softmax.Naive(q, k, v,
            new SoftmaxOptions { Causal = c.Causal, WindowLeft = c.Window, WindowRight = c.Window });
        return TestTensors.Close(sparse.O, dense.O, SameMathInDouble) && TestTensors.Close(sparse.Lse, dense.Lse, SameMathInDouble);
    }), cases: 200);

    [Fact]
    public void A_shared_layout_equals_the_same_layout_repeated_over_heads() => PropertyRuns.Check(Prop.ForAll(SparseCase.Arbitrary, c =>
    {
        var shared = c with { SharedLayout = true };
        var (q, k, v) = shared.Inputs(c.Tk);
        Tensor layout = shared.Layout(c.Tk, c.Bq, c.Bk);
        var repeated = Tensor.Zeros(c.Hq, layout.Dim(1), layout.Dim(2));
        for (int h = 0; h < c.Hq; h++)
        {
            Array.Copy(layout.Data, 0, repeated.Data, h * layout.Length, layout.Length);
        }
        var options = new SparseOptions { Causal = c.Causal, BlockQ = c.Bq, BlockK = c.Bk };
        var once = Sparse.Block(q, k, v, layout, options);
        var perHead = Sparse.Block(q, k, v, new Tensor(repeated.ShapeArray(), repeated.Data, DType.I32), options);
        // The same keys in the same order: bit for bit.
        return once.O.Data.SequenceEqual(perHead.O.Data) && once.Lse.Data.SequenceEqual(perHead.Lse.Data);
    }), cases: 200);

    [Fact]
    public void Rows_of_an_empty_block_row_give_zero_output_and_minus_infinity_lse()
    {
        // Tq = 6 in blocks of 2; block row 1 (queries 2 and 3) sees nothing.
        var c = new SparseCase(1, 6, 5, 1, 1, 4, 3, 2, 2, 0, false, true, 11);
        var (q, k, v) = c.Inputs(c.Tk);
        var layout = new Tensor([1, 3, 3], [1, 0, 1, 0, 0, 0, 0, 1, 1], DType.I32);
        var result = Sparse.Block(q, k, v, layout, new SparseOptions { BlockQ = 2, BlockK = 2 });
        for (int i = 0; i < 6; i++)
        {
            bool empty = i is 2 or 3;
            Assert.Equal(empty, double.IsNegativeInfinity(result.Lse[0, i, 0]));
            Assert.Equal(empty, Enumerable.Range(0, 3).All(d => result.O[0, i, 0, d] == 0));
        }
    }

    [Fact]
    public void A_nan_in_a_disallowed_key_does_not_reach_the_output() => PropertyRuns.Check(Prop.ForAll(SparseCase.Arbitrary, c =>
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
        var result = Sparse.Longformer(q, k, v, null, new SparseOptions { Window = 0 });
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
    }), cases: 200);

    [Fact]
    public void A_layout_of_the_wrong_shape_is_bad_input_naming_block_mask()
    {
        var c = new SparseCase(1, 6, 5, 1, 2, 4, 3, 2, 2, 0, false, false, 3);
        var (q, k, v) = c.Inputs(c.Tk);
        var layout = new Tensor([2, 3, 2], new double[12], DType.I32); // Nk must be ceil(5/2) = 3
        var error = Assert.Throws<InputException>(() => Sparse.Block(q, k, v, layout, new SparseOptions { BlockQ = 2, BlockK = 2 }));
        Assert.Equal("block_mask", error.Tensor);
    }

    [Fact]
    public void A_global_token_outside_the_keys_is_bad_input_naming_global_tokens()
    {
        var c = new SparseCase(1, 4, 4, 1, 1, 4, 3, 2, 2, 1, false, true, 5);
        var (q, k, v) = c.Inputs(c.Tk);
        var error = Assert.Throws<InputException>(() => Sparse.Longformer(q, k, v, new Tensor([1], [4], DType.I32), new SparseOptions { Window = 1 }));
        Assert.Equal("global_tokens", error.Tensor);
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
        foreach (var (key, value) in new Dictionary<string, string>
                 { ["causal"] = "true", ["block_q"] = "2", ["block_k"] = "2", ["window"] = "1", ["window_blocks"] = "1" })
        {
            file.Metadata[key] = value;
        }
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        TensorFiles.Write(input, file);

        var run = CliRunner.Run("run", "sparse", "--in", input, "--out", output, "--variant", variant);
        Assert.Equal(0, run.ExitCode);
        var options = new SparseOptions { Causal = true, BlockQ = 2, BlockK = 2, Window = 1, WindowBlocks = 1 };
        SparseResult expected = variant switch
        {
            "block" => Sparse.Block(q, k, v, layout, options),
            "longformer" => Sparse.Longformer(q, k, v, globalTokens, options),
            _ => Sparse.BigBird(q, k, v, layout, globalTokens, options),
        };
        var written = TensorFiles.Read(output);
        Assert.Equal(expected.O.Data, written["o"].Data);
        Assert.Equal(expected.Lse.Data, written["lse"].Data);

        var check = CliRunner.Run("check", "sparse", "--in", input, "--candidate", output, "--variant", variant);
        Assert.Equal(0, check.ExitCode);
    }

    /// <summary>
    /// The dense reference from the textbook: the full score matrix with −∞ where the mask forbids, then a stable
    /// softmax (max, exp, sum) with Math.Exp; an all-masked row gives o = 0 and lse = −∞.
    /// </summary>
    private static (Tensor O, Tensor Lse) MaskedTextbook(SparseCase c, Tensor q, Tensor k, Tensor v, Func<int, int, int, bool> allowed)
    {
        int tk = k.Dim(1);
        var o = Tensor.Zeros(c.B, c.Tq, c.Hq, c.V);
        var lse = Tensor.Zeros(c.B, c.Tq, c.Hq);
        double scale = 1 / Math.Sqrt(c.K);
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hq; h++)
            {
                int hk = h / c.Group;
                for (int i = 0; i < c.Tq; i++)
                {
                    var s = new double[tk];
                    for (int j = 0; j < tk; j++)
                    {
                        double dot = 0;
                        for (int d = 0; d < c.K; d++)
                        {
                            dot += q[b, i, h, d] * k[b, j, hk, d];
                        }
                        s[j] = allowed(h, i, j) ? scale * dot : double.NegativeInfinity;
                    }
                    double m = s.Length == 0 ? double.NegativeInfinity : s.Max();
                    if (double.IsNegativeInfinity(m))
                    {
                        lse[b, i, h] = double.NegativeInfinity;
                        continue;
                    }
                    double total = s.Sum(x => Math.Exp(x - m));
                    lse[b, i, h] = m + Math.Log(total);
                    for (int d = 0; d < c.V; d++)
                    {
                        double sum = 0;
                        for (int j = 0; j < tk; j++)
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
}
