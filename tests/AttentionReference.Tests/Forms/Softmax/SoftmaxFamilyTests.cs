using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>o and lse of one call of a softmax-family form.</summary>
public sealed record SoftmaxOutputs(Tensor O, Tensor Lse)
{
    /// <summary>The o and lse of a form's outputs.</summary>
    public static SoftmaxOutputs Of(IReadOnlyDictionary<string, Tensor> outputs) => new(outputs["o"], outputs["lse"]);

    /// <summary>Identical bits in o and lse.</summary>
    public bool SameBits(SoftmaxOutputs other) => O.Data.SequenceEqual(other.O.Data) && Lse.Data.SequenceEqual(other.Lse.Data);
}

/// <summary>
/// Whether two softmax results agree to rounding in double, element by element, on the scale their rounding has.
/// o_i is a convex combination of rows of v, so its rounding error scales with max|v| however much o_i itself cancels
/// towards 0 (a normwise ‖a − b‖/‖b‖ fails on such rows: found with V = 1, one row); lse_i = m_i + ln l_i errs on the
/// scale of |lse_i| + ln Tk, and ln Tk ≤ ln 20 is covered by the + 1 with room to spare at 1e-12.
/// </summary>
internal static class Agreement
{
    /// <summary>Sums of ≤ 17·9 terms in double in different orders: a few ulps (2.2e-16) each, far below 1e-12.</summary>
    public const double SameMathInDouble = 1e-12;

    /// <summary>o and lse agree: same non-finite values at the same places, finite ones within the bounds above.</summary>
    public static bool Close(SoftmaxOutputs actual, SoftmaxOutputs expected, Tensor v, double tolerance = SameMathInDouble) =>
        CloseO(actual.O, expected.O, v, tolerance) && CloseLse(actual.Lse, expected.Lse, tolerance);

    /// <summary>|a − b| ≤ tolerance·(|b| + max|v|) element by element.</summary>
    public static bool CloseO(Tensor actual, Tensor expected, Tensor v, double tolerance = SameMathInDouble)
    {
        double scale = v.Data.Where(double.IsFinite).Select(Math.Abs).DefaultIfEmpty(0).Max();
        return Within(actual, expected, b => tolerance * (Math.Abs(b) + scale));
    }

    /// <summary>|a − b| ≤ tolerance·(|b| + 1) element by element.</summary>
    public static bool CloseLse(Tensor actual, Tensor expected, double tolerance = SameMathInDouble) =>
        Within(actual, expected, b => tolerance * (Math.Abs(b) + 1));

    private static bool Within(Tensor actual, Tensor expected, Func<double, double> bound) =>
        actual.Shape.SequenceEqual(expected.Shape)
        && actual.Data.Zip(expected.Data).All(p => double.IsFinite(p.Second)
            ? double.IsFinite(p.First) && Math.Abs(p.First - p.Second) <= bound(p.Second)
            : p.First.Equals(p.Second)); // −∞ for −∞, NaN for NaN
}

/// <summary>
/// The definition of softmax attention written out with none of the library's code: explicit loops over (b, h, i, j),
/// the score matrix materialised with −∞ where a key is not allowed, then the max, Σ exp(s − max) with Math.Exp, and
/// the weighted sum; a row with no allowed key gives o = 0 and lse = −∞.
/// </summary>
internal static class Textbook
{
    /// <summary>
    /// o [B,Tq,Hq,V] and lse [B,Tq,Hq] from <paramref name="score"/>(b, h, i, j) (−∞: not allowed) and
    /// <paramref name="value"/>(b, h, j, d).
    /// </summary>
    public static SoftmaxOutputs Attention(int batch, int tq, int tk, int hq, int dv,
        Func<int, int, int, int, double> score, Func<int, int, int, int, double> value)
    {
        var o = Tensor.Zeros(batch, tq, hq, dv);
        var lse = Tensor.Zeros(batch, tq, hq);
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < hq; h++)
            {
                for (int i = 0; i < tq; i++)
                {
                    double[] s = Enumerable.Range(0, tk).Select(j => score(b, h, i, j)).ToArray();
                    double max = s.DefaultIfEmpty(double.NegativeInfinity).Max();
                    if (double.IsNegativeInfinity(max))
                    {
                        lse[b, i, h] = double.NegativeInfinity;
                        continue;
                    }
                    double total = s.Sum(e => Math.Exp(e - max));
                    lse[b, i, h] = max + Math.Log(total);
                    for (int d = 0; d < dv; d++)
                    {
                        double sum = 0;
                        for (int j = 0; j < tk; j++)
                        {
                            sum += s[j] is double.NegativeInfinity ? 0 : Math.Exp(s[j] - max) * value(b, h, j, d);
                        }
                        o[b, i, h, d] = sum / total;
                    }
                }
            }
        }
        return new SoftmaxOutputs(o, lse);
    }

    /// <summary>q_i · k_j of query head h, its key head h / group.</summary>
    public static double Dot(Tensor q, Tensor k, int b, int h, int i, int j, int group)
    {
        double dot = 0;
        for (int d = 0; d < q.Dim(3); d++)
        {
            dot += q[b, i, h, d] * k[b, j, h / group, d];
        }
        return dot;
    }
}

/// <summary>Tensor helpers of the family's laws.</summary>
internal static class FamilyTensors
{
    /// <summary>x[:, start:start+length] (any rank ≥ 2).</summary>
    public static Tensor SliceTime(Tensor x, int start, int length)
    {
        int[] shape = x.ShapeArray();
        int row = shape.Skip(2).Aggregate(1, (a, e) => a * e), t = shape[1];
        shape[1] = length;
        var y = Tensor.Zeros(shape);
        for (int b = 0; b < shape[0]; b++)
        {
            Array.Copy(x.Data, (b * t + start) * row, y.Data, b * length * row, length * row);
        }
        return y;
    }

    /// <summary>
    /// whole[:, start:start+T'] += part for a part [B,T',…] of whole [B,T,…] (rank ≥ 2); a part of whole's own shape is
    /// added entry by entry (start 0), as is a tensor of rank 1.
    /// </summary>
    public static void AddTime(Tensor part, Tensor whole, int start)
    {
        int[] shape = whole.ShapeArray();
        if (shape.Length < 2)
        {
            for (int n = 0; n < part.Length; n++)
            {
                whole.Data[n] += part.Data[n];
            }
            return;
        }
        int row = shape.Skip(2).Aggregate(1, (a, e) => a * e), t = shape[1], length = part.Dim(1);
        for (int b = 0; b < shape[0]; b++)
        {
            for (int n = 0; n < length * row; n++)
            {
                whole.Data[(b * t + start) * row + n] += part.Data[b * length * row + n];
            }
        }
    }

    /// <summary>x[b:b+1].</summary>
    public static Tensor SliceBatch(Tensor x, int b)
    {
        int[] shape = x.ShapeArray();
        int size = x.Length / shape[0];
        shape[0] = 1;
        return new Tensor(shape, x.Data.AsSpan(b * size, size).ToArray());
    }

    /// <summary>[B,T,H,D] with each head repeated <paramref name="group"/> times: MHA's k and v for GQA's.</summary>
    public static Tensor RepeatHeads(Tensor x, int group)
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

    /// <summary>Σ over each group of <paramref name="group"/> heads of a [B,T,H·group,D] gradient: [B,T,H,D].</summary>
    public static Tensor SumRepeats(Tensor x, int group)
    {
        int[] shape = x.ShapeArray();
        var summed = Tensor.Zeros(shape[0], shape[1], shape[2] / group, shape[3]);
        for (int b = 0; b < shape[0]; b++)
        {
            for (int t = 0; t < shape[1]; t++)
            {
                for (int h = 0; h < shape[2]; h++)
                {
                    for (int d = 0; d < shape[3]; d++)
                    {
                        summed[b, t, h / group, d] += x[b, t, h, d];
                    }
                }
            }
        }
        return summed;
    }

    /// <summary>cu_seqlens [N+1] (int32) of sequences of the given lengths.</summary>
    public static Tensor CumulativeLengths(int[] lengths)
    {
        var cu = new double[lengths.Length + 1];
        for (int n = 0; n < lengths.Length; n++)
        {
            cu[n + 1] = cu[n] + lengths[n];
        }
        return new Tensor([cu.Length], cu, DType.I32);
    }

    /// <summary>"name=value" with the value written to round-trip.</summary>
    public static string Parameter(string name, double value) => name + "=" + value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>"name=value".</summary>
    public static string Parameter(string name, int value) => name + "=" + value.ToString(CultureInfo.InvariantCulture);

    /// <summary>"name=value" parameters as a backend takes them.</summary>
    public static FormParameters Parameters(IEnumerable<string> parameters) =>
        new(parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal));

    /// <summary>"name=true" or "name=false".</summary>
    public static string Parameter(string name, bool value) => name + "=" + (value ? "true" : "false");
}

/// <summary>The reductions between the forms of the softmax family (FORMS.md): each form to softmax attention.</summary>
public sealed class SoftmaxFamilyTests
{
    // Two forms computing the same sums in double along different code paths: Agreement's bounds and their reasons.

    private static readonly IForm Softmax = FormCatalog.Find("softmax");
    private static readonly string[] s_forgettingVariants = ["naive", "tiled"];
    private static readonly string[] s_mlaVariants = ["naive", "absorbed"];

    [Law]
    public bool Sparse_with_an_all_ones_layout_equals_softmax(SparseCase c)
    {
        var (q, k, v) = c.Inputs(c.Tk);
        Tensor layout = c.Layout(c.Tk, c.Bq, c.Bk);
        Array.Fill(layout.Data, 1.0);
        var sparse = SoftmaxOutputs.Of(FormCatalog.Find("sparse").Call("block", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = layout },
            FamilyTensors.Parameter("causal", c.Causal), FamilyTensors.Parameter("block_q", c.Bq), FamilyTensors.Parameter("block_k", c.Bk)));
        var dense = SoftmaxOutputs.Of(Softmax.Call("naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v },
            FamilyTensors.Parameter("causal", c.Causal)));
        return Agreement.Close(sparse, dense, v);
    }

    [Law]
    public bool Longformer_without_global_tokens_equals_softmax_with_a_symmetric_window(SparseCase c)
    {
        var (q, k, v) = c.Inputs(c.Tk);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        var sparse = SoftmaxOutputs.Of(FormCatalog.Find("sparse").Call("longformer", inputs,
            FamilyTensors.Parameter("causal", c.Causal), FamilyTensors.Parameter("window", c.Window)));
        var dense = SoftmaxOutputs.Of(Softmax.Call("naive", inputs, FamilyTensors.Parameter("causal", c.Causal),
            FamilyTensors.Parameter("window_left", c.Window), FamilyTensors.Parameter("window_right", c.Window)));
        return Agreement.Close(sparse, dense, v);
    }

    [Law]
    public bool Forgetting_with_zero_gates_equals_causal_softmax_in_both_variants(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        Array.Clear(g.Data);
        var softmax = SoftmaxOutputs.Of(Softmax.Call("naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v }, "causal=true"));
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["g"] = g };
        return s_forgettingVariants.All(variant => Agreement.Close(SoftmaxOutputs.Of(FormCatalog.Find("forgetting").Call(variant, inputs,
            FamilyTensors.Parameter("block_q", c.BlockQ), FamilyTensors.Parameter("block_k", c.BlockK))), softmax, v));
    }

    [Law]
    public bool Mla_equals_softmax_on_the_expanded_keys_and_values_in_both_variants(MlaCase c)
    {
        var x = c.Inputs();
        var (q, k, v) = Expanded(c, x);
        var softmax = SoftmaxOutputs.Of(Softmax.Call("naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v },
            FamilyTensors.Parameter("causal", c.Causal)));
        return s_mlaVariants.All(variant =>
            Agreement.Close(SoftmaxOutputs.Of(FormCatalog.Find("mla").Call(variant, x.Tensors(), FamilyTensors.Parameter("causal", c.Causal))), softmax, v));
    }

    // Gradients (issue #19): each form's reduction carries over to its gradients (FamilyGradients.SameGradientsInDouble).

    [Law]
    public bool Forgetting_gradients_with_zero_gates_equal_causal_softmax_gradients_in_both_variants(ForgettingCase c)
    {
        var (q, k, v, g) = c.Inputs();
        Array.Clear(g.Data);
        string[] blocks = [FamilyTensors.Parameter("block_q", c.BlockQ), FamilyTensors.Parameter("block_k", c.BlockK)];
        var inputs = FamilyGradients.WithCotangents(Softmax, "naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v }, ["causal=true"], new Random(c.Seed));
        var softmax = FamilyGradients.Gradients(Softmax, "naive", inputs, "causal=true");
        inputs["g"] = g;
        return s_forgettingVariants.All(variant => FamilyGradients.Same(
            FamilyGradients.Gradients(FormCatalog.Find("forgetting"), variant, inputs, blocks).Where(p => p.Key != "dg").ToDictionary(), softmax));
    }

    [Law]
    public bool Sparse_gradients_with_an_all_ones_layout_equal_softmax_gradients(SparseCase c)
    {
        var (q, k, v) = c.Inputs(c.Tk);
        Tensor layout = c.Layout(c.Tk, c.Bq, c.Bk);
        Array.Fill(layout.Data, 1.0);
        string causal = FamilyTensors.Parameter("causal", c.Causal);
        var inputs = FamilyGradients.WithCotangents(Softmax, "naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v }, [causal], new Random(c.Seed));
        var softmax = FamilyGradients.Gradients(Softmax, "naive", inputs, causal);
        inputs["block_mask"] = layout;
        return FamilyGradients.Same(FamilyGradients.Gradients(FormCatalog.Find("sparse"), "block", inputs, causal,
            FamilyTensors.Parameter("block_q", c.Bq), FamilyTensors.Parameter("block_k", c.Bk)), softmax);
    }

    [Fact]
    public void One_query_and_one_key_give_dv_do_and_dq_dk_scale_dlse_k_q_in_every_form_and_variant()
    {
        // T = 1: the one key has weight 1, so o = v and lse = s = scale·q·k; then dv = do, and dS = P(dP − D) = dlse (dP =
        // do·v, D = do·v − dlse), so dq = scale·dlse·k and dk = scale·dlse·q, summed over the two query heads that read the
        // one key head (GQA). Forgetting's gate enters no score (an empty sum): dg = 0. Sums of a few O(1) terms.
        var random = new Random(17);
        const int Hq = 2, K = 3, V = 2;
        var (q, k, v) = (TestTensors.Normal(random, 1, 1, 1, Hq, K), TestTensors.Normal(random, 1, 1, 1, 1, K), TestTensors.Normal(random, 1, 1, 1, 1, V));
        var (dO, dLse) = (TestTensors.Normal(random, 1, 1, 1, Hq, V), TestTensors.Normal(random, 1, 1, 1, Hq));
        double scale = 1 / Math.Sqrt(K);
        var (dq, dk, dv) = (Tensor.Zeros(1, 1, Hq, K), Tensor.Zeros(1, 1, 1, K), Tensor.Zeros(1, 1, 1, V));
        for (int h = 0; h < Hq; h++)
        {
            for (int d = 0; d < K; d++)
            {
                dq[0, 0, h, d] = scale * dLse[0, 0, h] * k[0, 0, 0, d];
                dk[0, 0, 0, d] += scale * dLse[0, 0, h] * q[0, 0, h, d];
            }
            for (int d = 0; d < V; d++)
            {
                dv[0, 0, 0, d] += dO[0, 0, h, d];
            }
        }
        var ones = new Tensor([1, 1, 1], [1.0], DType.I32);
        var gate = new Tensor([1, 1, Hq], [-0.5, -3.0]);
        var cases = new (string Form, string Variant, string Gate, string[] Parameters)[]
        {
            ("softmax", "naive", "", ["causal=true"]), ("softmax", "tiled", "", ["causal=true"]), ("softmax", "split", "", ["num_splits=3"]),
            ("softmax", "decode", "", ["causal=true"]), ("forgetting", "naive", "g", []), ("forgetting", "tiled", "g", []),
            ("sparse", "block", "block_mask", []), ("sparse", "longformer", "", []), ("sparse", "bigbird", "block_mask", []),
        };
        foreach (var (form, variant, extra, parameters) in cases)
        {
            bool decode = variant == "decode";
            var call = new Dictionary<string, Tensor> { ["q"] = q, [decode ? "k_cache" : "k"] = k, [decode ? "v_cache" : "v"] = v, ["do"] = dO, ["dlse"] = dLse };
            var expected = new Dictionary<string, Tensor> { ["dq"] = dq, [decode ? "dk_cache" : "dk"] = dk, [decode ? "dv_cache" : "dv"] = dv };
            if (extra == "g")
            {
                (call["g"], expected["dg"]) = (gate, Tensor.Zeros(1, 1, Hq));
            }
            else if (extra.Length > 0)
            {
                call[extra] = ones;
            }
            Assert.True(FamilyGradients.Same(FamilyGradients.Gradients(FormCatalog.Find(form), variant, call, parameters), expected), $"{form} {variant}");
        }
    }

    [Law]
    public bool Mla_query_and_rope_key_gradients_are_softmaxs_on_the_expanded_keys_in_both_variants(MlaCase c)
    {
        // q = [q_nope; q_pe], k = [W_UK c; k_pe] per head: dq splits into dq_nope and dq_pe, and k_pe, read by every
        // head, collects the last Dr components of every head's dk.
        var x = c.Inputs();
        var (q, k, v) = Expanded(c, x);
        string causal = FamilyTensors.Parameter("causal", c.Causal);
        var inputs = FamilyGradients.WithCotangents(Softmax, "naive", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v }, [causal], new Random(c.Seed));
        var softmax = FamilyGradients.Gradients(Softmax, "naive", inputs, causal);
        var (dqNope, dqPe, dkPe) = (Tensor.Zeros(c.B, c.Tq, c.H, c.Dn), Tensor.Zeros(c.B, c.Tq, c.H, c.Dr), Tensor.Zeros(c.B, c.Sk, c.Dr));
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.H; h++)
            {
                for (int i = 0; i < c.Tq; i++)
                {
                    for (int d = 0; d < c.Dn + c.Dr; d++)
                    {
                        (d < c.Dn ? dqNope : dqPe)[b, i, h, d < c.Dn ? d : d - c.Dn] = softmax["dq"][b, i, h, d];
                    }
                }
                for (int j = 0; j < c.Sk; j++)
                {
                    for (int r = 0; r < c.Dr; r++)
                    {
                        dkPe[b, j, r] += softmax["dk"][b, j, h, c.Dn + r];
                    }
                }
            }
        }
        var mlaInputs = new Dictionary<string, Tensor>(x.Tensors()) { ["do"] = inputs["do"], ["dlse"] = inputs["dlse"] };
        return s_mlaVariants.All(variant =>
        {
            var mla = FamilyGradients.Gradients(FormCatalog.Find("mla"), variant, mlaInputs, causal);
            return TestTensors.Close(mla["dq_nope"], dqNope, FamilyGradients.SameGradientsInDouble)
                && TestTensors.Close(mla["dq_pe"], dqPe, FamilyGradients.SameGradientsInDouble)
                && TestTensors.Close(mla["dk_pe"], dkPe, FamilyGradients.SameGradientsInDouble);
        });
    }

    /// <summary>
    /// DeepSeek-V3's attn_impl "naive": q = [q_nope; q_pe], k = [W_UK c ; k_pe] per head, v = W_UV c, for ordinary
    /// softmax attention with scale (Dn + Dr)^-1/2, which is softmax's default K^-1/2 for K = Dn + Dr.
    /// </summary>
    private static (Tensor Q, Tensor K, Tensor V) Expanded(MlaCase c, MlaCase.MlaInputs x)
    {
        var k = Tensor.Zeros(c.B, c.Sk, c.H, c.Dn + c.Dr);
        var v = Tensor.Zeros(c.B, c.Sk, c.H, c.Dv);
        for (int b = 0; b < c.B; b++)
        {
            for (int j = 0; j < c.Sk; j++)
            {
                for (int h = 0; h < c.H; h++)
                {
                    for (int n = 0; n < c.Dn; n++)
                    {
                        k[b, j, h, n] = Enumerable.Range(0, c.Dc).Sum(d => x.WUk[h, n, d] * x.CKv[b, j, d]);
                    }
                    for (int r = 0; r < c.Dr; r++)
                    {
                        k[b, j, h, c.Dn + r] = x.KPe[b, j, r];
                    }
                    for (int n = 0; n < c.Dv; n++)
                    {
                        v[b, j, h, n] = Enumerable.Range(0, c.Dc).Sum(d => x.WUv[h, n, d] * x.CKv[b, j, d]);
                    }
                }
            }
        }
        var q = Tensor.Zeros(c.B, c.Tq, c.H, c.Dn + c.Dr);
        for (int b = 0; b < c.B; b++)
        {
            for (int i = 0; i < c.Tq; i++)
            {
                for (int h = 0; h < c.H; h++)
                {
                    for (int d = 0; d < c.Dn + c.Dr; d++)
                    {
                        q[b, i, h, d] = d < c.Dn ? x.QNope[b, i, h, d] : x.QPe[b, i, h, d - c.Dn];
                    }
                }
            }
        }
        return (q, k, v);
    }
}
