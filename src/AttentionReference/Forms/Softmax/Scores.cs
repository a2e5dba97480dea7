using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// The scores of one (sequence, query head) pair, written once for the softmax family (the math is Softmax.cs's):
/// <code>
///   s_ij = scale · q_i · k_j                   then c · tanh(s_ij / c) (softcap c &gt; 0), − slope · |d_i − j| (ALiBi),
///                                              + mask_ij (an additive mask, or 0 / −∞ for a bool one)
///   A_i  = the keys of the window around d_i (<see cref="Window"/>), less those the mask removes (−∞) and those a
///          sparse pattern does not allow
/// </code>
/// Softmax's naive, tiled, split and decode variants, sparse's patterns and forgetting's bias all read their scores here.
/// </summary>
public sealed class Scores(RowBlock q, KeyValues keys, double scale, Window window)
{
    /// <summary>q_i, row i.</summary>
    public RowBlock Q { get; } = q;

    /// <summary>k_j and v_j.</summary>
    public KeyValues Keys { get; } = keys;

    /// <summary>The number of keys Tk of the pair's sequence.</summary>
    public int Tk => Keys.Count;

    /// <summary>The score scale.</summary>
    public double Scale => scale;

    /// <summary>c of the softcap c · tanh(s / c); 0: none.</summary>
    public double Softcap { get; init; }

    /// <summary>The head's ALiBi slope; null: none.</summary>
    public double? Slope { get; init; }

    /// <summary>The pair's rows of the mask; null: none.</summary>
    public MaskRows? Mask { get; init; }

    /// <summary>A sparse pattern: whether query i may read key j at all; null: every key.</summary>
    public Func<int, int, bool>? Pattern { get; init; }

    /// <summary>The window of query i: keys [First, End), empty as (0, 0). The mask may still remove keys inside it.</summary>
    public (int First, int End) Window(int i) => window.Keys(i, Tk);

    /// <summary>Whether key j is in A_i.</summary>
    public bool IsAllowed(int i, int j)
    {
        var (first, end) = Window(i);
        return j >= first && j < end && Kept(i, j);
    }

    /// <summary>A_i in increasing order.</summary>
    public IEnumerable<int> AllowedKeys(int i)
    {
        var (first, end) = Window(i);
        for (int j = first; j < end; j++)
        {
            if (Kept(i, j))
            {
                yield return j;
            }
        }
    }

    /// <summary>s_ij: the scaled dot product, softcapped, then the ALiBi bias and the additive mask.</summary>
    public double Score(int i, int j) => ScoreOf(i, j, scale * VectorKernels.Dot(Q[i], Keys.Key(j)));

    /// <summary>s_ij from r_ij = scale · q_i · k_j: softcapped, then the ALiBi bias and the additive mask.</summary>
    public double ScoreOf(int i, int j, double r)
    {
        double s = r;
        if (Softcap > 0)
        {
            s = Softcap * Math.Tanh(s / Softcap);
        }
        if (Slope is { } slope)
        {
            s -= slope * Math.Abs((long)i + window.Offset - j);
        }
        return s + MaskBias(i, j);
    }

    /// <summary>∂s_ij/∂r_ij for r_ij = scale · q_i · k_j: 1 − tanh²(r_ij / c) under the softcap c, else 1.</summary>
    public double SoftcapDerivative(double r)
    {
        if (!(Softcap > 0))
        {
            return 1;
        }
        double t = Math.Tanh(r / Softcap);
        return 1 - t * t;
    }

    /// <summary>∂s_ij/∂slope = −|d_i − j|, the ALiBi bias per unit of slope (d_i = i + Offset, the diagonal key).</summary>
    public double SlopeDerivative(int i, int j) => -Math.Abs((long)i + window.Offset - j);

    private bool Kept(int i, int j) => (Pattern is null || Pattern(i, j)) && !double.IsNegativeInfinity(MaskBias(i, j));

    private double MaskBias(int i, int j) => Mask is { } mask ? mask.Bias(i, j) : 0;
}

/// <summary>
/// The keys query i may read: those of the window [d_i − Left, d_i + Right] around its diagonal key d_i = i + Offset,
/// cut to the sequence's Tk keys, −1 meaning unbounded on that side (flash-attn's window_size); causal is Right = 0.
/// Offset is Tk − Tq, flash-attn's bottom-right alignment (the last query sees the last key), or 0, top-left (PyTorch
/// SDPA's is_causal).
/// </summary>
public readonly record struct Window(int Left, int Right, int Offset)
{
    /// <summary>Every key.</summary>
    public static Window Full { get; } = new(-1, -1, 0);

    /// <summary>Causal, bottom-right: keys j ≤ i + Tk − Tq.</summary>
    public static Window Causal(int tq, int tk) => new(-1, 0, tk - tq);

    /// <summary>Keys [First, End) of query i among <paramref name="tk"/> keys; empty as (0, 0).</summary>
    public (int First, int End) Keys(int i, int tk)
    {
        long diagonal = (long)i + Offset;
        long first = Left < 0 ? 0 : Math.Max(0, diagonal - Left);
        long end = Right < 0 ? tk : Math.Min(tk, diagonal + Right + 1);
        return first >= end ? (0, 0) : ((int)first, (int)end);
    }
}

/// <summary>
/// The keys and values one pair reads: key j is row j of <paramref name="K"/> and <paramref name="V"/>, or row
/// <paramref name="Map"/>[j] of a KV cache (decode: a paged cache's slots, or a batch entry's valid prefix).
/// </summary>
public sealed record KeyValues(RowBlock K, RowBlock V, int Count, int[]? Map = null)
{
    /// <summary>The pair's k and v rows.</summary>
    public static KeyValues Of(Head head)
    {
        RowBlock k = head.Rows("k");
        return new(k, head.Rows("v"), k.Count);
    }

    /// <summary>The gradients dk and dv of a pair's k and v rows (a group's own copies, summed by the runner).</summary>
    public static KeyValues GradientsOf(Head head)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock dk = head.Rows("dk");
        return new(dk, head.Rows("dv"), dk.Count);
    }

    /// <summary>Zero rows for the gradients of <paramref name="count"/> keys of width <paramref name="dk"/> and values of width <paramref name="dv"/>.</summary>
    public static KeyValues Zeros(int count, int dk, int dv) => new(RowBlock.Zeros(count, dk), RowBlock.Zeros(count, dv), count);

    /// <summary>k_j.</summary>
    public Span<double> Key(int j) => K[Map is null ? j : Map[j]];

    /// <summary>v_j.</summary>
    public Span<double> Value(int j) => V[Map is null ? j : Map[j]];
}

/// <summary>The stable softmax of one query row, the step every variant of the family ends with.</summary>
public static class SoftmaxRow
{
    /// <summary>
    /// o = Σ_n p_n v_{keys[n]} with p = softmax(s) taken with its running max: m = max_n s_n, s_n ← exp(s_n − m),
    /// l = Σ_n s_n, o = Σ_n s_n v_{keys[n]} / l; returns lse = m + ln l. No key (or every score −∞): o stays 0, lse = −∞.
    /// </summary>
    public static double Attend(Span<double> s, ReadOnlySpan<int> keys, KeyValues values, Span<double> o)
    {
        double m = VectorKernels.Max(s); // −∞ for an empty row
        double l = double.IsNegativeInfinity(m) ? 0 : VectorKernels.ExpShiftedInPlace(s, m);
        for (int n = 0; n < keys.Length && l != 0; n++)
        {
            VectorKernels.Axpy(s[n], values.Value(keys[n]), o);
        }
        return Normalise(o, o, m, l);
    }

    /// <summary>
    /// The backward of <see cref="Attend"/> for one query row, from the row's lse and D = do · o − dlse (o its output, do
    /// and dlse their cotangents): with P_n = exp(s_n − lse), the row's attention weights,
    /// <code>
    ///   dv_{keys[n]} += P_n do          o = Σ_n P_n v_{keys[n]}
    ///   dP_n          = do · v_{keys[n]}
    ///   dS_n          = P_n (dP_n − D)   softmax's Jacobian: Σ_m P_m dP_m = do · o; and ∂lse/∂s_n = P_n brings + P_n dlse
    /// </code>
    /// dS is written over <paramref name="s"/>. An empty <paramref name="dO"/> is a zero cotangent. A row whose lse is −∞
    /// (no key, or every score −∞) has no weights: dS = 0 and nothing is added, never NaN.
    /// </summary>
    public static void Backward(Span<double> s, ReadOnlySpan<int> keys, KeyValues values, double lse, double d, ReadOnlySpan<double> dO,
        KeyValues gradients)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(gradients);
        if (double.IsNegativeInfinity(lse))
        {
            s.Clear();
            return;
        }
        for (int n = 0; n < keys.Length; n++)
        {
            double p = Math.Exp(s[n] - lse), dP = 0;
            if (!dO.IsEmpty)
            {
                VectorKernels.Axpy(p, dO, gradients.Value(keys[n]));
                dP = VectorKernels.Dot(dO, values.Value(keys[n]));
            }
            s[n] = p * (dP - d);
        }
    }

    /// <summary>
    /// o = acc / l and lse = m + ln l of an accumulated row (acc = Σ_j exp(s_j − m) v_j, l = Σ_j exp(s_j − m)); a row
    /// that read no key (l = 0) leaves o at 0 and gets lse = −∞.
    /// </summary>
    public static double Normalise(ReadOnlySpan<double> acc, Span<double> o, double m, double l)
    {
        if (l == 0)
        {
            return double.NegativeInfinity;
        }
        acc.CopyTo(o);
        VectorKernels.Scale(1 / l, o);
        return m + Math.Log(l);
    }

    /// <summary>
    /// The log-sum-exp merge of one row's partial results over disjoint key sets (split-KV, ring attention):
    /// lse = M + ln Σ_p exp(lse_p − M) with M = max_p lse_p, o = Σ_p exp(lse_p − lse) o_p (o_p is row p of
    /// <paramref name="os"/>). Rows empty in every part leave o at 0 and get lse = −∞.
    /// </summary>
    public static double Merge(ReadOnlySpan<double> lses, RowBlock os, Span<double> o)
    {
        double max = double.NegativeInfinity;
        foreach (double lse in lses)
        {
            max = Math.Max(max, lse); // Math.Max propagates NaN
        }
        if (double.IsNegativeInfinity(max))
        {
            return double.NegativeInfinity;
        }
        double sum = 0;
        foreach (double lse in lses)
        {
            sum += Math.Exp(lse - max);
        }
        double merged = max + Math.Log(sum);
        for (int p = 0; p < lses.Length; p++)
        {
            VectorKernels.Axpy(Math.Exp(lses[p] - merged), os[p], o);
        }
        return merged;
    }
}

/// <summary>
/// A mask broadcast to [B,Hq,Tq,Tk] as PyTorch SDPA's attn_mask (the contract has checked its shape): a bool mask keeps
/// a key where it is nonzero (True = keep, as SDPA) and gives the bias −∞ elsewhere; an additive mask is the bias
/// itself. With varlen it is indexed by packed positions.
/// </summary>
public sealed class SoftmaxMask
{
    private SoftmaxMask(double[] data, int[] strides, bool isBool) => (Data, Strides, IsBool) = (data, strides, isBool);

    /// <summary>The mask's values.</summary>
    public double[] Data { get; }

    /// <summary>Element strides over (b, h, t, u); 0 on a broadcast axis.</summary>
    public int[] Strides { get; }

    /// <summary>Whether the values are bool (nonzero = keep) rather than additive.</summary>
    public bool IsBool { get; }

    /// <summary>
    /// The mask of a bound call (null when none), read by <paramref name="maskType"/>: auto (integer or bool: a bool
    /// mask, float: additive), additive (floats only), or bool (integers, or floats holding only 0 and 1).
    /// </summary>
    public static SoftmaxMask? Read(Problem problem, string maskType)
    {
        if (problem.Optional("mask") is not { } mask)
        {
            return null;
        }
        int[] shape = mask.ShapeArray(), own = mask.Strides();
        var strides = new int[4];
        for (int axis = 0; axis < 4; axis++)
        {
            int mine = axis - (4 - shape.Length); // right-aligned, as broadcasting aligns
            strides[axis] = mine < 0 || shape[mine] == 1 ? 0 : own[mine];
        }
        bool integer = mask.DType is DType.I32 or DType.I64 or DType.Bool;
        bool isBool = maskType switch
        {
            "bool" => true,
            "additive" when integer => throw new InputException("an integer mask is a bool mask (nonzero = keep); an additive mask must be float", tensor: "mask"),
            "additive" => false,
            _ => integer,
        };
        if (isBool && !integer && mask.Data.Any(x => x is not (0 or 1)))
        {
            throw new InputException("a float bool mask must hold only 0 (drop) and 1 (keep); an additive mask is mask_type=additive", tensor: "mask");
        }
        return new SoftmaxMask(mask.Data, strides, isBool);
    }

    /// <summary>The bias of key u for query t (packed positions) in batch b, head h.</summary>
    public double Bias(int b, int h, int t, int u)
    {
        double value = Data[b * Strides[0] + h * Strides[1] + t * Strides[2] + u * Strides[3]];
        return !IsBool ? value : value != 0 ? 0 : double.NegativeInfinity;
    }

    /// <summary>The rows of one (sequence, query head) pair: query i and key j of its sequence.</summary>
    public MaskRows Rows(Head head) =>
        new(this, head.Sequence.Batch, head.Index, head.Sequence.Steps("Tq").Start, head.Sequence.Steps("Tk").Start);
}

/// <summary>One pair's view of a <see cref="SoftmaxMask"/>: bias(i, j) of its query i and key j.</summary>
public readonly record struct MaskRows(SoftmaxMask Mask, int Batch, int Head, int QueryStart, int KeyStart)
{
    /// <summary>mask_ij as a bias.</summary>
    public double Bias(int i, int j) => Mask.Bias(Batch, Head, QueryStart + i, KeyStart + j);
}
