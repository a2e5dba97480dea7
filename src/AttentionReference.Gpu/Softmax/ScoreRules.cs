using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The score rules of Forms/Softmax/Scores.cs on the device, for one call: the same symbols and the same order.
/// <code>
///   s_ij = scale · q_i · k_j                   then c · tanh(s_ij / c) (softcap c &gt; 0), − slope_h · |d_i − j| (ALiBi),
///                                              + mask_ij (the additive bias; a bool mask arrives as 0 / −∞)
///   A_i  = the keys of the window [d_i − wl, d_i + wr] around d_i = i + Offset (−1: unbounded), less those the mask
///          removes (−∞) and those a sparse pattern does not allow
/// </code>
/// Patterns (sparse.cs): <see cref="PatternBlock"/> M[h, ⌊i/Bq⌋, ⌊j/Bk⌋] ≠ 0; <see cref="PatternLongformer"/>
/// |j − d_i| ≤ w ∨ d_i ∈ G ∨ j ∈ G; <see cref="PatternBigBird"/> |⌊i/B⌋ − ⌊j/B⌋| ≤ w_b ∨ i ∈ G ∨ j ∈ G ∨ R[h, ⌊i/B⌋, ⌊j/B⌋] ≠ 0.
/// </summary>
internal struct ScoreRules<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    /// <summary>No pattern: every key of the window.</summary>
    public const int PatternNone = 0;

    /// <summary>sparse's block layout.</summary>
    public const int PatternBlock = 1;

    /// <summary>sparse's longformer: window plus global tokens.</summary>
    public const int PatternLongformer = 2;

    /// <summary>sparse's bigbird: block window, global tokens and random blocks.</summary>
    public const int PatternBigBird = 3;

    /// <summary>scale, and c of the softcap (0: none).</summary>
    public Real Scale, Softcap;

    /// <summary>wl and wr around the diagonal, −1 unbounded (wr = 0 when causal).</summary>
    public int WindowLeft, WindowRight;

    /// <summary>ALiBi slopes, [Hq] or [B,Hq] (then SlopeBatchStride = Hq, else 0); empty: none.</summary>
    public ArrayView<Real> Slopes;

    /// <inheritdoc cref="Slopes"/>
    public int SlopeBatchStride;

    /// <summary>The mask as the additive bias (a bool mask as 0 / −∞), with its element strides over (b, h, t, u), 0 on a broadcast axis; empty: none.</summary>
    public ArrayView<Real> Mask;

    /// <inheritdoc cref="Mask"/>
    public long MaskB, MaskH, MaskT, MaskU;

    /// <summary>The sparse pattern (<see cref="PatternNone"/> unless sparse).</summary>
    public int Pattern;

    /// <summary>The layout M or R [LayoutHeads, Nq, Nk] (0/1), and the global tokens as a 0/1 table over the key positions.</summary>
    public ArrayView<int> Layout, Global;

    /// <summary>The layout's extents and block sizes Bq, Bk; w (longformer, keys) or w_b (bigbird, blocks).</summary>
    public int LayoutHeads, LayoutRows, LayoutColumns, BlockQ, BlockK, PatternWindow;

    /// <summary>Whether ALiBi slopes are given.</summary>
    public readonly bool HasSlopes => Slopes.Length > 0;

    /// <summary>Whether a mask is given.</summary>
    public readonly bool HasMask => Mask.Length > 0;

    /// <summary>The keys [First, End) of query i's window (Window.Keys), empty as (0, 0); the mask and pattern may remove more.</summary>
    public readonly (int First, int End) Window(KeySequence seq, int i) => Reach(seq, i, i);

    /// <summary>
    /// The keys [First, End) that the windows of queries <paramref name="first"/> to <paramref name="last"/> reach
    /// together: windows slide right with i, so from the first query's first key to the last query's last.
    /// </summary>
    public readonly (int First, int End) Reach(KeySequence seq, int first, int last)
    {
        long from = WindowLeft < 0 ? 0 : Math.Max(0, (long)first + seq.Offset - WindowLeft);
        long end = WindowRight < 0 ? seq.Tk : Math.Min(seq.Tk, (long)last + seq.Offset + WindowRight + 1);
        return from >= end ? (0, 0) : ((int)from, (int)end);
    }

    /// <summary>Whether key j (inside the sequence's keys) is in query i's window.</summary>
    public readonly bool InWindow(KeySequence seq, int i, int j)
    {
        long diagonal = (long)i + seq.Offset;
        return (WindowLeft < 0 || j >= diagonal - WindowLeft) && (WindowRight < 0 || j <= diagonal + WindowRight);
    }

    /// <summary>mask_ij as the bias of query i and key j of head h (0 without a mask), by packed positions.</summary>
    public readonly Real Bias(KeySequence seq, int h, int i, int j) => HasMask
        ? Mask[seq.Batch * MaskB + h * MaskH + (seq.QueryStart + (long)i) * MaskT + (seq.KeyStart + (long)j) * MaskU]
        : Real.Zero;

    /// <summary>Whether the sparse pattern lets query i of head h read key j (always without one).</summary>
    public readonly bool Allows(KeySequence seq, int h, int i, int j)
    {
        switch (Pattern)
        {
            case PatternBlock:
                return Layout[LayoutCell(h, i / BlockQ, j / BlockK)] != 0;
            case PatternLongformer:
                int d = i + seq.Offset;
                return Math.Abs(j - d) <= PatternWindow || (d >= 0 && Global[d] != 0) || Global[j] != 0;
            case PatternBigBird:
                int qb = i / BlockQ, kb = j / BlockK;
                return Math.Abs(qb - kb) <= PatternWindow || Global[i] != 0 || Global[j] != 0 || Layout[LayoutCell(h, qb, kb)] != 0;
            default:
                return true;
        }
    }

    /// <summary>The slope of head h of batch entry b (0 without ALiBi).</summary>
    public readonly Real Slope(KeySequence seq, int h) => HasSlopes ? Slopes[(long)seq.Batch * SlopeBatchStride + h] : Real.Zero;

    /// <summary>
    /// s_ij from the dot product q_i · k_j: scale, the softcap, the ALiBi bias −slope·|d_i − j| (<paramref name="distance"/>
    /// = |d_i − j| as a real), then the mask's bias, in Scores.Score's order.
    /// </summary>
    public readonly Real Score(Real dot, Real slope, Real distance, Real bias)
    {
        Real s = Scale * dot;
        if (Softcap > Real.Zero)
        {
            s = Softcap * GpuMath.Tanh(s / Softcap);
        }
        if (HasSlopes)
        {
            s -= slope * distance;
        }
        return s + bias;
    }

    /// <summary><paramref name="n"/> as a real, exactly (|n| &lt; 2^24 in float): a position for the ALiBi distance.</summary>
    public static Real Whole(int n)
    {
        // CoreLib's generic conversions box their argument, which ILGPU cannot compile: the binary digits' powers of two.
        Real value = Real.Zero, power = Real.One;
        for (long m = Math.Abs((long)n); m > 0; m >>= 1)
        {
            if ((m & 1) != 0)
            {
                value += power;
            }
            power += power;
        }
        return n < 0 ? -value : value;
    }

    private readonly long LayoutCell(int h, int qb, int kb) => ((long)(LayoutHeads == 1 ? 0 : h) * LayoutRows + qb) * LayoutColumns + kb;
}
