using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The kernels of Forms/Softmax/Softmax.cs's naive, split and decode variants (and of sparse's patterns, which run
/// naive with a pattern on A_i), with the score rules of Scores.cs (<see cref="ScoreRules{Real}"/>):
/// <code>
///   naive   per query i: m_i = max_{j∈A_i} s_ij,  l_i = Σ_{j∈A_i} exp(s_ij − m_i),  o_i = Σ_{j∈A_i} exp(s_ij − m_i) v_j / l_i,
///           lse_i = m_i + ln l_i;  A_i = ∅: o_i = 0, lse_i = −∞                                            Rows
///   split   the keys cut into P parts of ⌈Tk/P⌉; part p's (o_p, lse_p) over A_i ∩ part p by the naive method    Rows
///           merged:  lse = M + ln Σ_p exp(lse_p − M) (M = max_p lse_p),  o = Σ_p exp(lse_p − lse) o_p          Merge
///   decode  split over each batch entry's valid cache keys (key j at its cache row)                           Rows, Merge
/// </code>
/// How the work is split: one group per (query row, head, part). Its threads take the keys of A_i ∩ part a tile of
/// one key per thread at a time; the first pass finds m_i (each thread's max, then the group's), the second computes
/// each tile's exp(s_ij − m_i) into shared memory, which every thread sums into l_i in key order (so all hold the same
/// l_i) and multiplies into the value columns it owns (c = thread, thread + G, ...), accumulated in o_i. Scores are
/// computed twice rather than kept: nothing grows with Tk. A key outside A_i is never read, so a NaN in its k or v
/// reaches nothing; an allowed key whose weight underflows to 0 (or whose score is −∞) still multiplies its v, as in
/// the reference.
/// </summary>
internal static class SoftmaxKernels
{
    /// <summary>The naive method on one query row, head and part (one group; shared memory: one real per thread).</summary>
    public static void Rows<Real>(AttentionProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long rows = x.Rows, item = Grid.IdxX;
        int part = (int)(item / rows);
        long row = item % rows, bt = row / x.Hq;
        int h = (int)(row % x.Hq), n = x.RowSequence[bt];
        if (n < 0)
        {
            return; // a row no sequence covers: o and lse stay 0, as the reference leaves them
        }
        KeySequence seq = x.Sequences[n];
        int i = (int)(bt % x.Tq) - seq.QueryStart, hk = x.KvHead(h), t = Group.IdxX, threads = Group.DimX;
        ArrayView<Real> o = x.OutputRow(part, row), shared = SharedMemory.GetDynamic<Real>();
        ArrayView<Real> lse = x.LseOf();
        long lseAt = x.LseIndex(part, row);

        // The keys of the window in this part; the mask and pattern are tested key by key.
        var (first, end) = x.Scores.Window(seq, i);
        var (partFirst, partEnd) = x.PartKeys(seq.Tk, part);
        (first, end) = (Math.Max(first, partFirst), Math.Min(end, partEnd));
        if (first >= end)
        {
            if (t == 0)
            {
                lse[lseAt] = Real.NegativeInfinity; // no key here (an empty window, or a part past it): o = 0, lse = −∞
            }
            return;
        }
        Real slope = x.Scores.Slope(seq, h), diagonal = ScoreRules<Real>.Whole(i + seq.Offset), step = ScoreRules<Real>.Whole(threads);
        long q = x.QueryRow(seq, i, h) * x.Dk;

        // m_i = max_{j∈A_i} s_ij: each thread over its keys, then the group (NaN wins, as the reference's max).
        Real m = Real.NegativeInfinity, position = ScoreRules<Real>.Whole(first + t);
        for (int j = first + t; j < end; j += threads, position += step)
        {
            var (s, allowed) = Score(x, seq, h, i, j, q, hk, slope, diagonal, position);
            if (allowed)
            {
                m = MaxPropagatingNaN(m, s);
            }
        }
        shared[t] = m;
        Group.Barrier();
        m = Real.NegativeInfinity;
        for (int u = 0; u < threads; u++)
        {
            m = MaxPropagatingNaN(m, shared[u]);
        }
        if (Real.IsNegativeInfinity(m))
        {
            if (t == 0)
            {
                lse[lseAt] = Real.NegativeInfinity; // A_i = ∅: o_i = 0, lse_i = −∞
            }
            return;
        }

        // l_i and o_i = Σ_j exp(s_ij − m_i) v_j, a tile of keys at a time; −∞ marks a key outside A_i.
        Real l = Real.Zero;
        position = ScoreRules<Real>.Whole(first + t);
        for (int j0 = first; j0 < end; j0 += threads, position += step)
        {
            Group.Barrier(); // the previous tile is read
            int j = j0 + t;
            var (s, allowed) = j < end ? Score(x, seq, h, i, j, q, hk, slope, diagonal, position) : (Real.Zero, false);
            shared[t] = allowed ? GpuMath.Exp(s - m) : Real.NegativeInfinity;
            Group.Barrier();
            int keys = Math.Min(threads, end - j0);
            for (int u = 0; u < keys; u++)
            {
                Real p = shared[u];
                if (!Real.IsNegativeInfinity(p))
                {
                    l += p;
                }
            }
            for (int c = t; c < x.Dv; c += threads)
            {
                Real oc = o[c];
                for (int u = 0; u < keys; u++)
                {
                    Real p = shared[u];
                    if (!Real.IsNegativeInfinity(p))
                    {
                        oc += p * x.V[x.KeyRow(seq, j0 + u, hk) * x.Dv + c];
                    }
                }
                o[c] = oc;
            }
        }

        // o_i = o_i / l_i (as the reference: times 1 / l_i), lse_i = m_i + ln l_i.
        Real inverse = Real.One / l;
        for (int c = t; c < x.Dv; c += threads)
        {
            o[c] *= inverse;
        }
        if (t == 0)
        {
            lse[lseAt] = m + GpuMath.Log(l);
        }
    }

    /// <summary>
    /// split and decode: the log-sum-exp merge of the P partial results of one query row (one thread), in the
    /// reference's order (SoftmaxRow.Merge); a row empty in every part keeps o = 0 and gets lse = −∞.
    /// </summary>
    public static void Merge<Real>(Index1D row, AttentionProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        if (x.RowSequence[row / x.Hq] < 0)
        {
            return;
        }
        Real max = Real.NegativeInfinity;
        for (int p = 0; p < x.Parts; p++)
        {
            max = MaxPropagatingNaN(max, x.LseParts[p * x.Rows + row]);
        }
        if (Real.IsNegativeInfinity(max))
        {
            x.Lse[row] = Real.NegativeInfinity;
            return;
        }
        Real sum = Real.Zero;
        for (int p = 0; p < x.Parts; p++)
        {
            sum += GpuMath.Exp(x.LseParts[p * x.Rows + row] - max);
        }
        Real merged = max + GpuMath.Log(sum);
        for (int c = 0; c < x.Dv; c++)
        {
            Real oc = Real.Zero;
            for (int p = 0; p < x.Parts; p++)
            {
                oc += GpuMath.Exp(x.LseParts[p * x.Rows + row] - merged) * x.OParts[(p * x.Rows + row) * x.Dv + c];
            }
            x.O[row * x.Dv + c] = oc;
        }
        x.Lse[row] = merged;
    }

    /// <summary>max(a, b) where a NaN in either wins, as Math.Max (PTX's max.f64 would drop it).</summary>
    internal static Real MaxPropagatingNaN<Real>(Real a, Real b) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        Real.IsNaN(b) || b > a ? b : a;

    /// <summary>s_ij of key j of the window, and whether j is in A_i (not outside the pattern, not masked by −∞); position is j as a real.</summary>
    private static (Real S, bool Allowed) Score<Real>(AttentionProblem<Real> x, KeySequence seq, int h, int i, int j, long q, int hk, Real slope, Real diagonal, Real position)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real bias = x.Scores.Bias(seq, h, i, j);
        if (Real.IsNegativeInfinity(bias) || !x.Scores.Allows(seq, h, i, j))
        {
            return (Real.NegativeInfinity, false);
        }
        long k = x.KeyRow(seq, j, hk) * x.Dk;
        Real dot = Real.Zero;
        for (int d = 0; d < x.Dk; d++)
        {
            dot += x.Q[q + d] * x.K[k + d];
        }
        return (x.Scores.Score(dot, slope, Real.Abs(diagonal - position), bias), true);
    }
}
