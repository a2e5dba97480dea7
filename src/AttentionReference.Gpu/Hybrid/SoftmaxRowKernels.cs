using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// The kernel of Forms/Hybrid/SoftmaxRow.cs: softmax attention of one query over a given set of keys J_t, exact, the
/// window branch of based and the softmax branch of nats_l (SoftmaxRowProblem's rules). Same symbols:
/// <code>
///   o_t += Σ_{j∈J_t} exp(s q_t·k_j − m_t) v_j / Σ_{j∈J_t} exp(s q_t·k_j − m_t),   m_t = max_{j∈J_t} s q_t·k_j
/// </code>
/// One group per (row, head): the scores of a tile of keys go to shared memory (one key per thread; −∞ for a key not in
/// J_t), and the row streams through the tiles with the running max m, the sum l and the numerators (one value column
/// per thread), each rescaled by exp(m_old − m_new) when the max grows: the same sums as the CPU's single max-shifted
/// row, up to rounding. J_t holds t itself under both rules, so l ≥ 1.
/// </summary>
internal static class SoftmaxRowKernels
{
    /// <summary>SoftmaxRow.Add for one row t and head h (one group; shared memory: one score per thread).</summary>
    public static void Add<Real>(SoftmaxRowProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.H; // the group's row b·T + t of the time axis, and its head
        int h = Grid.IdxX % x.H;
        int n = x.RowSequence[bt];
        if (n < 0)
        {
            return; // a row no sequence covers: o stays as it is
        }
        SequenceSlice seq = x.Sequences[n];
        int t = (int)(bt % x.T) - seq.Start;
        long row = x.Row(seq, t, h);
        ArrayView<Real> p = SharedMemory.GetDynamic<Real>(); // s q_t·k_j, then exp(s q_t·k_j − m), for the tile j0 ≤ j < j0 + group size
        Real m = Real.NegativeInfinity, l = Real.Zero;      // every thread keeps the same m and l
        for (int j0 = x.FirstKey(t); j0 <= t; j0 += Group.DimX)
        {
            int j = j0 + Group.IdxX, tile = Math.Min(Group.DimX, t - j0 + 1);
            if (j <= t)
            {
                p[Group.IdxX] = x.Sees(seq, h, t, j) ? x.Score(row, x.Row(seq, j, h)) : Real.NegativeInfinity;
            }
            Group.Barrier();
            Real mNew = m;
            for (int u = 0; u < tile; u++)
            {
                mNew = p[u] > mNew ? p[u] : mNew;
            }
            Group.Barrier(); // every thread has read the scores
            if (mNew != Real.NegativeInfinity)
            {
                if (Group.IdxX < tile)
                {
                    p[Group.IdxX] = GpuMath.Exp(p[Group.IdxX] - mNew); // 0 for a key not in J_t
                }
                Group.Barrier();
                Real rescale = GpuMath.Exp(m - mNew); // 0 while no key was seen (m = −∞)
                Real sum = Real.Zero;
                for (int u = 0; u < tile; u++)
                {
                    sum += p[u];
                }
                l = l * rescale + sum;
                for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                {
                    Real weighted = Real.Zero;
                    for (int u = 0; u < tile; u++)
                    {
                        weighted += p[u] * x.V[x.Value(x.Row(seq, j0 + u, h), c)];
                    }
                    x.Weighted[x.Value(row, c)] = x.Weighted[x.Value(row, c)] * rescale + weighted;
                }
                m = mNew;
                Group.Barrier(); // the tile's weights are read before the next tile's scores overwrite them
            }
        }
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            x.O[x.Value(row, c)] += x.Weighted[x.Value(row, c)] / l;
        }
    }
}
