using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using Sm = AttentionReference.Forms.Softmax.Softmax;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>The laws that join the variants (naive, tiled, split, decode) under every option.</summary>
public sealed class SoftmaxVariantTests
{
    // Every side computes the same sums in double, in different orders (blocks, parts, rescalings) and with
    // different exp routines: Agreement.Close's bounds (1e-12 on the scale of each output) and their reasons.

    [Fact]
    public void Naive_equals_the_textbook_definition_with_every_option() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c =>
    {
        var x = c.Inputs();
        var naive = Sm.Naive(x.Q, x.K, x.V, x.Options);
        var textbook = Textbook.Attention(c, x);
        return Agreement.Close(naive, textbook, x.V);
    }));

    [Fact]
    public void Tiled_split_and_decode_equal_naive_for_any_block_size_and_number_of_splits() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c =>
    {
        var x = c.Inputs();
        var results = c.AllVariants(x).ToList();
        SoftmaxResult naive = results[0].Result;
        return results.All(r => Agreement.Close(r.Result, naive, x.V)) // −∞ only where naive has −∞: the same empty rows
            .Label($"variants: {string.Join(", ", results.Select(r => $"{r.Name} o {TestTensors.RelativeError(r.Result.O, naive.O):E1} lse {TestTensors.RelativeError(r.Result.Lse, naive.Lse):E1}"))}");
    }));

    [Fact]
    public void Lse_is_the_log_of_the_sum_of_exp_of_the_materialised_scores() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c =>
    {
        var x = c.Inputs();
        var lse = Tensor.Zeros(c.B, c.Tq, c.Hq);
        for (int b = 0; b < c.B; b++)
        {
            for (int i = 0; i < c.Tq; i++)
            {
                for (int h = 0; h < c.Hq; h++)
                {
                    // Scores are O(10) here: exp without the max is exact enough, and log 0 = −∞ for an empty row.
                    lse[b, i, h] = Math.Log(Enumerable.Range(0, c.Tk).Sum(j => Math.Exp(Textbook.Score(c, x, b, h, i, j))));
                }
            }
        }
        return c.AllVariants(x).All(r => Agreement.CloseLse(r.Result.Lse, lse));
    }));

    [Fact]
    public void A_bool_mask_equals_the_additive_mask_of_zeros_and_minus_infinity() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c0 =>
    {
        var c = c0 with { Mask = MaskChoice.Bool };
        var x = c.Inputs();
        Tensor additive = new(x.Options.Mask!.ShapeArray(), x.Options.Mask.Data.Select(m => m == 1 ? 0 : double.NegativeInfinity).ToArray());
        var y = x with { Options = x.Options with { Mask = additive, MaskKind = MaskKind.Additive } };
        // The same scores (s + 0) and the same allowed sets: identical arithmetic, so identical bits.
        return c.AllVariants(x).Zip(c.AllVariants(y)).All(p =>
            p.First.Result.O.Data.SequenceEqual(p.Second.Result.O.Data) && p.First.Result.Lse.Data.SequenceEqual(p.Second.Result.Lse.Data));
    }));

    [Fact]
    public void An_integer_mask_is_a_bool_mask() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c0 =>
    {
        var c = c0 with { Mask = MaskChoice.Bool };
        var x = c.Inputs();
        Tensor integer = new(x.Options.Mask!.ShapeArray(), (double[])x.Options.Mask.Data.Clone(), DType.I32);
        var y = x with { Options = x.Options with { Mask = integer, MaskKind = null } };
        return Sm.Naive(x.Q, x.K, x.V, x.Options).O.Data.SequenceEqual(Sm.Naive(y.Q, y.K, y.V, y.Options).O.Data);
    }), cases: 200);

    [Fact]
    public void Causal_top_left_equals_a_lower_triangular_bool_mask() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c0 =>
    {
        var c = c0 with { Causal = true, TopLeft = true, WindowLeft = -1, WindowRight = -1, Mask = MaskChoice.None };
        var x = c.Inputs();
        var tril = new Tensor([c.Tq, c.Tk], Enumerable.Range(0, c.Tq * c.Tk).Select(n => n % c.Tk <= n / c.Tk ? 1.0 : 0.0).ToArray(), DType.I32);
        var masked = x.Options with { Causal = false, Alignment = CausalAlignment.BottomRight, Mask = tril, AlibiSlopes = null };
        var causal = x.Options with { AlibiSlopes = null };
        var a = Sm.Naive(x.Q, x.K, x.V, causal);
        var b = Sm.Naive(x.Q, x.K, x.V, masked);
        return a.O.Data.SequenceEqual(b.O.Data) && a.Lse.Data.SequenceEqual(b.Lse.Data);
    }));

    [Fact]
    public void A_row_does_not_depend_on_keys_it_may_not_read() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, Gen.Choose(0, 1000).ToArbitrary(), (c, pick) =>
    {
        // Causality and its generalisation to windows and masks: change key j* and value j*; every row whose A_i
        // lacks j* keeps its output to the bit, in every variant.
        var x = c.Inputs();
        int jStar = pick % c.Tk;
        var (k2, v2) = (x.K.Clone(), x.V.Clone());
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hkv; h++)
            {
                k2[b, jStar, h, 0] += 3;
                v2[b, jStar, h, 0] += 3;
            }
        }
        var y = x with { K = k2, V = v2 };
        foreach (var ((name, before), (_, after)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in Rows(c))
            {
                if (!Textbook.Allowed(c, x, b, h, i, jStar) && !SameRow(c, before, after, b, i, h))
                {
                    return false.Label($"{name}: row ({b},{i},{h}) changed with key {jStar}");
                }
            }
        }
        return true.ToProperty();
    }));

    [Fact]
    public void Permuting_keys_and_values_together_changes_nothing_without_causality_masks_or_alibi() =>
        PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c0 =>
    {
        var c = c0 with { Causal = false, WindowLeft = -1, WindowRight = -1, Alibi = false, Mask = MaskChoice.None };
        var x = c.Inputs();
        int[] permutation = Enumerable.Range(0, c.Tk).OrderBy(j => (j * 7919 + c.Seed) % 104729).ToArray();
        var y = x with { K = PermuteTime(x.K, permutation), V = PermuteTime(x.V, permutation) };
        return c.AllVariants(x).Zip(c.AllVariants(y)).All(p =>
            Agreement.Close(p.Second.Result, p.First.Result, x.V));
    }));

    [Fact]
    public void Scores_of_plus_or_minus_1e4_stay_finite_and_the_variants_agree() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c0 =>
    {
        // Inputs of size 100 give scores of order ±1e4 (exp overflows at 710); every variant subtracts a max first.
        var c = c0 with { Softcap = 0 };
        var x = c.Inputs(scale: 100);
        var results = c.AllVariants(x).ToList();
        return results.All(r => r.Result.O.Data.All(double.IsFinite) && r.Result.Lse.Data.All(e => double.IsFinite(e) || double.IsNegativeInfinity(e))
                                && Agreement.Close(r.Result, results[0].Result, x.V));
    }), cases: 200);

    [Fact]
    public void Softcap_bounds_huge_scores_and_the_variants_agree() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c0 =>
    {
        var c = c0 with { Softcap = 5, Alibi = false, Mask = MaskChoice.None };
        var x = c.Inputs(scale: 1e3);
        var results = c.AllVariants(x).ToList();
        // |c·tanh(s/c)| ≤ c: lse ≤ c + ln Tk, whatever the raw scores.
        return results.All(r => r.Result.Lse.Data.All(e => double.IsNegativeInfinity(e) || e <= 5 + Math.Log(c.Tk) + 1e-12)
                                && Agreement.Close(r.Result, results[0].Result, x.V));
    }), cases: 200);

    [Fact]
    public void Rows_with_every_key_masked_give_zero_output_and_minus_infinity_lse_in_every_variant()
    {
        // A mask whose query row 1 is all false, the others all true: only row 1 is empty.
        var c = new SoftmaxOptionsCase(2, 3, 4, 1, 2, 3, 2, false, false, -1, -1, 0, false, MaskChoice.Bool, 0, 2, 3, 3, 11);
        var x = c.Inputs();
        var mask = new Tensor([3, 4], Enumerable.Range(0, 12).Select(n => n / 4 == 1 ? 0.0 : 1.0).ToArray(), DType.I64);
        x = x with { Options = x.Options with { Mask = mask, MaskKind = null } };
        foreach (var (name, result) in c.AllVariants(x))
        {
            foreach (var (b, i, h) in Rows(c))
            {
                Assert.True((i == 1) == double.IsNegativeInfinity(result.Lse[b, i, h]), $"{name}: lse of row ({b},{i},{h})");
                Assert.True(i != 1 || Enumerable.Range(0, c.V).All(d => result.O[b, i, h, d] == 0), $"{name}: o of row ({b},{i},{h})");
            }
        }
    }

    [Fact]
    public void A_nan_in_a_key_reaches_exactly_the_rows_that_read_it() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, Gen.Choose(0, 1000).ToArbitrary(), (c, pick) =>
    {
        var x = c.Inputs();
        int jStar = pick % c.Tk, hkStar = pick % c.Hkv;
        var k2 = x.K.Clone();
        k2[0, jStar, hkStar, 0] = double.NaN;
        var y = x with { K = k2 };
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in Rows(c))
            {
                bool reads = b == 0 && h / c.Group == hkStar && Textbook.Allowed(c, x, b, h, i, jStar);
                bool ok = reads
                    ? double.IsNaN(dirty.Lse[b, i, h]) && Enumerable.Range(0, c.V).All(d => double.IsNaN(dirty.O[b, i, h, d]))
                    : SameRow(c, clean, dirty, b, i, h);
                if (!ok)
                {
                    return false.Label($"{name}: row ({b},{i},{h}), reads key {jStar} of head {hkStar}: {reads}");
                }
            }
        }
        return true.ToProperty();
    }));

    [Fact]
    public void A_nan_in_a_query_reaches_its_row_unless_the_row_is_empty() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, Gen.Choose(0, 1000).ToArbitrary(), (c, pick) =>
    {
        var x = c.Inputs();
        var (bStar, iStar, hStar) = (pick % c.B, pick % c.Tq, pick % c.Hq);
        var q2 = x.Q.Clone();
        q2[bStar, iStar, hStar, c.K - 1] = double.NaN;
        var y = x with { Q = q2 };
        bool empty = Enumerable.Range(0, c.Tk).All(j => !Textbook.Allowed(c, x, bStar, hStar, iStar, j));
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in Rows(c))
            {
                bool ok = (b, i, h) != (bStar, iStar, hStar) || empty
                    ? SameRow(c, clean, dirty, b, i, h)
                    : double.IsNaN(dirty.Lse[b, i, h]) && Enumerable.Range(0, c.V).All(d => double.IsNaN(dirty.O[b, i, h, d]));
                if (!ok)
                {
                    return false.Label($"{name}: row ({b},{i},{h})");
                }
            }
        }
        return true.ToProperty();
    }));

    [Fact]
    public void A_nan_alibi_slope_reaches_every_non_empty_row_of_its_head() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, Gen.Choose(0, 1000).ToArbitrary(), (c0, pick) =>
    {
        var c = c0 with { Alibi = true };
        var x = c.Inputs();
        int hStar = pick % c.Hq;
        var slopes = x.Options.AlibiSlopes!.Clone();
        slopes[hStar] = double.NaN;
        var y = x with { Options = x.Options with { AlibiSlopes = slopes } };
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in Rows(c))
            {
                bool empty = Enumerable.Range(0, c.Tk).All(j => !Textbook.Allowed(c, x, b, h, i, j));
                bool ok = h != hStar || empty
                    ? SameRow(c, clean, dirty, b, i, h)
                    : double.IsNaN(dirty.Lse[b, i, h]) && Enumerable.Range(0, c.V).All(d => double.IsNaN(dirty.O[b, i, h, d]));
                if (!ok)
                {
                    return false.Label($"{name}: row ({b},{i},{h})");
                }
            }
        }
        return true.ToProperty();
    }), cases: 200);

    [Fact]
    public void A_nan_in_one_value_component_reaches_only_that_component_of_the_rows_that_read_it() =>
        PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, Gen.Choose(0, 1000).ToArbitrary(), (c, pick) =>
    {
        var x = c.Inputs();
        int jStar = pick % c.Tk, dStar = pick % c.V;
        var v2 = x.V.Clone();
        v2[0, jStar, 0, dStar] = double.NaN;
        var y = x with { V = v2 };
        foreach (var ((name, clean), (_, dirty)) in c.AllVariants(x).Zip(c.AllVariants(y)))
        {
            foreach (var (b, i, h) in Rows(c))
            {
                bool reads = b == 0 && h / c.Group == 0 && Textbook.Allowed(c, x, b, h, i, jStar);
                for (int d = 0; d < c.V; d++)
                {
                    bool nan = double.IsNaN(dirty.O[b, i, h, d]);
                    if (nan != (reads && d == dStar) || (!nan && dirty.O[b, i, h, d] != clean.O[b, i, h, d]))
                    {
                        return false.Label($"{name}: o[{b},{i},{h},{d}]");
                    }
                }
                if (dirty.Lse[b, i, h].CompareTo(clean.Lse[b, i, h]) != 0)
                {
                    return false.Label($"{name}: lse[{b},{i},{h}] changed");
                }
            }
        }
        return true.ToProperty();
    }));

    [Fact]
    public void Merge_of_a_single_partial_is_that_partial_and_empty_partials_add_nothing() => PropertyRuns.Check(Prop.ForAll(SoftmaxOptionsCase.Arbitrary, c =>
    {
        var x = c.Inputs();
        var naive = Sm.Naive(x.Q, x.K, x.V, x.Options);
        var empty = new SoftmaxResult(Tensor.Zeros(naive.O.ShapeArray()),
            new Tensor(naive.Lse.ShapeArray(), Enumerable.Repeat(double.NegativeInfinity, naive.Lse.Length).ToArray()));
        var merged = Sm.Merge([empty, naive, empty]);
        // exp(lse − lse) = 1 exactly and the empty parts contribute 0·0: the same bits except for the 1·o product.
        return Agreement.CloseO(merged.O, naive.O, x.V, 1e-15) && merged.Lse.Data.SequenceEqual(naive.Lse.Data);
    }), cases: 200);

    internal static IEnumerable<(int B, int I, int H)> Rows(SoftmaxOptionsCase c) =>
        from b in Enumerable.Range(0, c.B) from i in Enumerable.Range(0, c.Tq) from h in Enumerable.Range(0, c.Hq) select (b, i, h);

    private static bool SameRow(SoftmaxOptionsCase c, SoftmaxResult x, SoftmaxResult y, int b, int i, int h) =>
        x.Lse[b, i, h].CompareTo(y.Lse[b, i, h]) == 0 && Enumerable.Range(0, c.V).All(d => x.O[b, i, h, d].CompareTo(y.O[b, i, h, d]) == 0);

    private static Tensor PermuteTime(Tensor x, int[] permutation)
    {
        var y = Tensor.Zeros(x.ShapeArray());
        int b = x.Dim(0), t = x.Dim(1), row = x.Dim(2) * x.Dim(3);
        for (int n = 0; n < b; n++)
        {
            for (int j = 0; j < t; j++)
            {
                Array.Copy(x.Data, (n * t + permutation[j]) * row, y.Data, (n * t + j) * row, row);
            }
        }
        return y;
    }
}
