using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>A random softmax problem: shapes covering T = 1, Tq ≠ Tk, GQA/MQA, Dk ≠ Dv, odd head dims.</summary>
public sealed record SoftmaxCase(int B, int Tq, int Tk, int Hkv, int Group, int K, int V, bool Causal, int Seed)
{
    public int Hq => Hkv * Group;

    public (Tensor Q, Tensor K, Tensor V) Inputs(double scale = 1)
    {
        var random = new Random(Seed);
        return (TestTensors.Normal(random, scale, B, Tq, Hq, K),
                TestTensors.Normal(random, scale, B, Tk, Hkv, K),
                TestTensors.Normal(random, scale, B, Tk, Hkv, V));
    }

    public static Arbitrary<SoftmaxCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from tq in Gen.Choose(1, 9)
         from tk in Gen.Choose(1, 9)
         from hkv in Gen.Choose(1, 2)
         from g in Gen.Choose(1, 3)
         from k in Gen.Elements(1, 3, 8, 17)
         from v in Gen.Elements(1, 4, 5)
         from causal in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new SoftmaxCase(b, tq, tk, hkv, g, k, v, causal, seed)).ToArbitrary();
}

public sealed class SoftmaxNaiveTests
{
    // Both sides compute the same sums in double, in different orders and with different exp routines:
    // Agreement.Close's bounds (1e-12 on the scale of each output) and their reasons.

    [Fact]
    public void Naive_equals_the_textbook_definition() => PropertyRuns.Check(Prop.ForAll(SoftmaxCase.Arbitrary, c =>
    {
        var (q, k, v) = c.Inputs();
        var result = AttentionReference.Forms.Softmax.Softmax.Naive(q, k, v, new SoftmaxOptions { Causal = c.Causal });
        var (o, lse) = Textbook(c, q, k, v);
        return Agreement.Close(result, new SoftmaxResult(o, lse), v);
    }));

    [Fact]
    public void Gqa_equals_mha_with_repeated_keys_and_values() => PropertyRuns.Check(Prop.ForAll(SoftmaxCase.Arbitrary, c =>
    {
        var (q, k, v) = c.Inputs();
        var options = new SoftmaxOptions { Causal = c.Causal };
        var grouped = AttentionReference.Forms.Softmax.Softmax.Naive(q, k, v, options);
        var full = AttentionReference.Forms.Softmax.Softmax.Naive(q, RepeatHeads(k, c.Group), RepeatHeads(v, c.Group), options);
        // Identical arithmetic on identical numbers: the results must agree bit for bit.
        return grouped.O.Data.SequenceEqual(full.O.Data) && grouped.Lse.Data.SequenceEqual(full.Lse.Data);
    }));

    [Fact]
    public void Causal_outputs_do_not_depend_on_later_keys() => PropertyRuns.Check(Prop.ForAll(SoftmaxCase.Arbitrary, c =>
    {
        var (q, k, v) = c.Inputs();
        var options = new SoftmaxOptions { Causal = true };
        var before = AttentionReference.Forms.Softmax.Softmax.Naive(q, k, v, options);
        // Perturb the last key and value: only queries whose diagonal reaches key Tk−1 (i ≥ Tq−1) may change.
        var (k2, v2) = (k.Clone(), v.Clone());
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hkv; h++)
            {
                k2[b, c.Tk - 1, h, 0] += 1;
                v2[b, c.Tk - 1, h, 0] += 1;
            }
        }
        var after = AttentionReference.Forms.Softmax.Softmax.Naive(q, k2, v2, options);
        int rowsBefore = c.Tq - 1; // rows 0..Tq−2 see keys up to i + Tk − Tq ≤ Tk − 2
        int oRow = c.Hq * c.V, lseRow = c.Hq;
        for (int b = 0; b < c.B; b++)
        {
            int oStart = b * c.Tq * oRow, lseStart = b * c.Tq * lseRow;
            if (!before.O.Data.AsSpan(oStart, rowsBefore * oRow).SequenceEqual(after.O.Data.AsSpan(oStart, rowsBefore * oRow))
                || !before.Lse.Data.AsSpan(lseStart, rowsBefore * lseRow).SequenceEqual(after.Lse.Data.AsSpan(lseStart, rowsBefore * lseRow)))
            {
                return false;
            }
        }
        return true;
    }));

    [Fact]
    public void Rows_with_no_allowed_key_give_zero_output_and_minus_infinity_lse()
    {
        // Tq = 5 > Tk = 2 under bottom-right causal: queries 0..2 have diagonals −3..−1 and see no key.
        var c = new SoftmaxCase(1, 5, 2, 1, 1, 4, 3, true, 7);
        var (q, k, v) = c.Inputs();
        var result = AttentionReference.Forms.Softmax.Softmax.Naive(q, k, v, new SoftmaxOptions { Causal = true });
        for (int i = 0; i < 5; i++)
        {
            bool empty = i < 3;
            Assert.Equal(empty, double.IsNegativeInfinity(result.Lse[0, i, 0]));
            Assert.Equal(empty, Enumerable.Range(0, 3).All(d => result.O[0, i, 0, d] == 0));
        }
    }

    [Fact]
    public void Huge_scores_do_not_overflow_thanks_to_the_running_max() => PropertyRuns.Check(Prop.ForAll(SoftmaxCase.Arbitrary, c =>
    {
        // Inputs of size 100 with K ≥ 1 give scores of order ±1e4: exp of them overflows, exp(s − max) does not.
        var (q, k, v) = c.Inputs(scale: 100);
        var result = AttentionReference.Forms.Softmax.Softmax.Naive(q, k, v, new SoftmaxOptions { Causal = c.Causal });
        return result.O.Data.All(double.IsFinite) && result.Lse.Data.All(x => double.IsFinite(x) || double.IsNegativeInfinity(x));
    }), cases: 200);

    /// <summary>The definition as written in the paper, with none of the library's code: explicit loops, Math.Exp, the causal predicate.</summary>
    private static (Tensor O, Tensor Lse) Textbook(SoftmaxCase c, Tensor q, Tensor k, Tensor v)
    {
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
                    var weights = new double[c.Tk];
                    double total = 0;
                    for (int j = 0; j < c.Tk; j++)
                    {
                        if (c.Causal && j > i + c.Tk - c.Tq)
                        {
                            continue;
                        }
                        double s = 0;
                        for (int d = 0; d < c.K; d++)
                        {
                            s += q[b, i, h, d] * k[b, j, hk, d];
                        }
                        weights[j] = Math.Exp(scale * s); // inputs are O(1): no overflow without the max here
                        total += weights[j];
                    }
                    lse[b, i, h] = Math.Log(total); // log 0 = −∞ for an empty row
                    for (int d = 0; d < c.V; d++)
                    {
                        double sum = 0;
                        for (int j = 0; j < c.Tk; j++)
                        {
                            sum += weights[j] * v[b, j, hk, d];
                        }
                        o[b, i, h, d] = total == 0 ? 0 : sum / total;
                    }
                }
            }
        }
        return (o, lse);
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
