using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using Sm = AttentionReference.Forms.Softmax.Softmax;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>Which mask a case carries and in which broadcast shape.</summary>
public enum MaskChoice { None, Bool, Additive }

/// <summary>
/// A random softmax problem with every option: shapes covering T = 1, Tq ≠ Tk, GQA/MQA, head dims 1, 3, 17; causal
/// in both alignments; windows that empty some rows; softcap; ALiBi; bool or additive masks of every broadcast shape
/// (some rows all masked); block sizes that do not divide T; more splits than keys.
/// </summary>
public sealed record SoftmaxOptionsCase(
    int B, int Tq, int Tk, int Hkv, int Group, int K, int V,
    bool Causal, bool TopLeft, int WindowLeft, int WindowRight, double Softcap, bool Alibi,
    MaskChoice Mask, int MaskShape, int BlockQ, int BlockK, int NumSplits, int Seed)
{
    public int Hq => Hkv * Group;

    /// <summary>The mask's shape: one of the shapes SDPA broadcasts to [B,Hq,Tq,Tk].</summary>
    public int[] MaskDims => MaskShape switch
    {
        0 => [Tq, Tk],
        1 => [B, 1, Tq, Tk],
        2 => [1, Hq, Tq, Tk],
        3 => [Hq, 1, Tk],
        _ => [B, Hq, Tq, Tk],
    };

    public SoftmaxInputs Inputs(double scale = 1)
    {
        var random = new Random(Seed);
        var q = TestTensors.Normal(random, scale, B, Tq, Hq, K);
        var k = TestTensors.Normal(random, scale, B, Tk, Hkv, K);
        var v = TestTensors.Normal(random, 1, B, Tk, Hkv, V);
        Tensor? slopes = Alibi ? new Tensor([Hq], Enumerable.Range(0, Hq).Select(_ => random.NextDouble()).ToArray()) : null;
        Tensor? mask = null;
        if (Mask != MaskChoice.None)
        {
            int[] dims = MaskDims;
            var data = new double[Tensor.ElementCount(dims)];
            int rowLength = dims[^1];
            for (int n = 0; n < data.Length; n++)
            {
                bool keep = random.NextDouble() < 0.7;
                data[n] = Mask == MaskChoice.Bool ? (keep ? 1 : 0) : keep ? random.NextDouble() * 2 - 1 : double.NegativeInfinity;
            }
            if (data.Length >= rowLength && rowLength > 0 && random.Next(2) == 0)
            {
                // One row masked entirely: an empty row even where the window is not.
                int row = random.Next(data.Length / rowLength);
                Array.Fill(data, Mask == MaskChoice.Bool ? 0 : double.NegativeInfinity, row * rowLength, rowLength);
            }
            mask = new Tensor(dims, data);
        }
        var options = new SoftmaxOptions
        {
            Causal = Causal,
            Alignment = TopLeft ? CausalAlignment.TopLeft : CausalAlignment.BottomRight,
            WindowLeft = WindowLeft,
            WindowRight = WindowRight,
            Softcap = Softcap,
            AlibiSlopes = slopes,
            Mask = mask,
            MaskKind = Mask == MaskChoice.Bool ? MaskKind.Boolean : null,
        };
        return new SoftmaxInputs(q, k, v, options);
    }

    /// <summary>Every variant on the same inputs (decode reads k, v as an unpaged cache; it takes no mask).</summary>
    public IEnumerable<(string Name, SoftmaxResult Result)> AllVariants(SoftmaxInputs x)
    {
        yield return ("naive", Sm.Naive(x.Q, x.K, x.V, x.Options));
        yield return ("tiled", Sm.Tiled(x.Q, x.K, x.V, x.Options, BlockQ, BlockK));
        yield return ("split", Sm.Split(x.Q, x.K, x.V, x.Options, NumSplits));
        if (x.Options.Mask is null)
        {
            yield return ("decode", Sm.Decode(x.Q, new KvCache(x.K, x.V), x.Options, NumSplits));
        }
    }

    public static Gen<SoftmaxOptionsCase> Generator { get; } =
        from b in Gen.Choose(1, 2)
        from tq in Gen.Choose(1, 9)
        from tk in Gen.Choose(1, 9)
        from hkv in Gen.Choose(1, 2)
        from g in Gen.Choose(1, 3)
        from k in Gen.Elements(1, 3, 8, 17)
        from v in Gen.Elements(1, 4, 5)
        from causal in Gen.Elements(false, true)
        from topLeft in Gen.Elements(false, false, true)
        from wl in Gen.Elements(-1, -1, 0, 1, 3)
        from wr in Gen.Elements(-1, -1, 0, 2)
        from softcap in Gen.Elements(0.0, 0.0, 0.5, 5.0)
        from alibi in Gen.Elements(false, true)
        from mask in Gen.Elements(MaskChoice.None, MaskChoice.Bool, MaskChoice.Additive)
        from maskShape in Gen.Choose(0, 4)
        from bq in Gen.Choose(1, 5)
        from bk in Gen.Choose(1, 5)
        from splits in Gen.Choose(1, 12)
        from seed in Gen.Choose(0, int.MaxValue)
        select new SoftmaxOptionsCase(b, tq, tk, hkv, g, k, v, causal, topLeft, wl, wr, softcap, alibi, mask, maskShape, bq, bk, splits, seed);

    public static Arbitrary<SoftmaxOptionsCase> Arbitrary { get; } = Generator.ToArbitrary();
}

/// <summary>q, k, v and the options of one case.</summary>
public sealed record SoftmaxInputs(Tensor Q, Tensor K, Tensor V, SoftmaxOptions Options);

/// <summary>
/// The definition written out with none of the library's code: explicit loops over (b, h, i, j), the allowed-key
/// predicate spelled out, the scores materialised.
/// </summary>
internal static class Textbook
{
    /// <summary>Whether query i may read key j: the window around the diagonal and the mask.</summary>
    public static bool Allowed(SoftmaxOptionsCase c, SoftmaxInputs x, int b, int h, int i, int j)
    {
        int diagonal = c.TopLeft ? i : i + c.Tk - c.Tq;
        int right = c.Causal ? 0 : c.WindowRight;
        if ((c.WindowLeft >= 0 && j < diagonal - c.WindowLeft) || (right >= 0 && j > diagonal + right))
        {
            return false;
        }
        return MaskValue(c, x, b, h, i, j) is not double.NegativeInfinity;
    }

    /// <summary>s_ij, with −∞ for a key that is not allowed.</summary>
    public static double Score(SoftmaxOptionsCase c, SoftmaxInputs x, int b, int h, int i, int j)
    {
        if (!Allowed(c, x, b, h, i, j))
        {
            return double.NegativeInfinity;
        }
        double dot = 0;
        for (int d = 0; d < c.K; d++)
        {
            dot += x.Q[b, i, h, d] * x.K[b, j, h / c.Group, d];
        }
        double s = dot / Math.Sqrt(c.K);
        if (c.Softcap > 0)
        {
            s = c.Softcap * Math.Tanh(s / c.Softcap);
        }
        if (x.Options.AlibiSlopes is { } slopes)
        {
            int diagonal = c.TopLeft ? i : i + c.Tk - c.Tq;
            s -= slopes[h] * Math.Abs(diagonal - j);
        }
        return s + MaskValue(c, x, b, h, i, j);
    }

    /// <summary>o and lse: the max, then Σ exp(s − max), each term by Math.Exp.</summary>
    public static SoftmaxResult Attention(SoftmaxOptionsCase c, SoftmaxInputs x)
    {
        var o = Tensor.Zeros(c.B, c.Tq, c.Hq, c.V);
        var lse = Tensor.Zeros(c.B, c.Tq, c.Hq);
        for (int b = 0; b < c.B; b++)
        {
            for (int h = 0; h < c.Hq; h++)
            {
                for (int i = 0; i < c.Tq; i++)
                {
                    double[] s = Enumerable.Range(0, c.Tk).Select(j => Score(c, x, b, h, i, j)).ToArray();
                    double max = s.Max();
                    if (double.IsNegativeInfinity(max))
                    {
                        lse[b, i, h] = double.NegativeInfinity;
                        continue;
                    }
                    double total = s.Sum(e => Math.Exp(e - max));
                    lse[b, i, h] = max + Math.Log(total);
                    for (int d = 0; d < c.V; d++)
                    {
                        double sum = 0;
                        for (int j = 0; j < c.Tk; j++)
                        {
                            sum += s[j] is double.NegativeInfinity ? 0 : Math.Exp(s[j] - max) * x.V[b, j, h / c.Group, d];
                        }
                        o[b, i, h, d] = sum / total;
                    }
                }
            }
        }
        return new SoftmaxResult(o, lse);
    }

    /// <summary>The mask's value at (b, h, i, j) by broadcasting by hand; bool false reads as −∞, true as 0.</summary>
    public static double MaskValue(SoftmaxOptionsCase c, SoftmaxInputs x, int b, int h, int i, int j)
    {
        if (x.Options.Mask is not { } mask)
        {
            return 0;
        }
        int[] full = [b, h, i, j];
        int[] index = new int[mask.Rank];
        for (int axis = 0; axis < mask.Rank; axis++)
        {
            int fullAxis = axis + 4 - mask.Rank;
            index[axis] = mask.Dim(axis) == 1 ? 0 : full[fullAxis];
        }
        double value = mask[index];
        return c.Mask == MaskChoice.Bool ? (value == 1 ? 0 : double.NegativeInfinity) : value;
    }
}
