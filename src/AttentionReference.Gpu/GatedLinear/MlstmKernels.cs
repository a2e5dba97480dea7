using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// The kernels of Forms/GatedLinear/Mlstm.cs, all three variants, same symbols (a a key channel, d a value column,
/// qs = scale·q). The stabilised cell, C̃ = C·exp(−m), ñ = n·exp(−m):
/// <code>
///   m_t = max(log f_t + m_{t−1}, i_t)
///   C̃_t = exp(log f_t + m_{t−1} − m_t) C̃_{t−1} + exp(i_t − m_t) k_t v_tᵀ,   ñ_t alike with k_t
///   o_t = qsᵀ C̃_t / (max(|qsᵀ ñ_t|, exp(−m_t)) + eps)
/// </code>
/// m and the gates depend on i and f alone, and ñ is K values: one thread per (sequence, head) runs them, and one
/// thread per (sequence, head, value column d) the memory C̃, column d of which depends on column d alone.
/// recurrent: RecurrentGates (m_t, the two gates, ñ_t and the denominator of each row), then RecurrentState.
/// chunked, chunks [s, e) of C steps, b_r = Σ_{r'=s}^{s+r} log f_r':
/// <code>
///   1. ℓ_r* = m_start + b_r, ℓ_rj = i_j + b_r − b_j (j ≤ r), m_r = their max      LocalSums, RowMax, ChunkGates
///   2. o_r: the carried state's term (inter-chunk) and the j ≤ r terms (intra)     StatePass, IntraChunk
///   3. state: C̃ ← exp(ℓ_{n−1,*} − m_{n−1}) C̃ + Σ_j exp(ℓ_{n−1,j} − m_{n−1}) k_j v_jᵀ, ñ alike, m = m_{n−1}   ChunkGates (ñ, m), StatePass (C̃)
/// </code>
/// The max over j of ℓ_rj needs no state, so every row takes it at once (RowMax); the sequential pass then only takes
/// the max with ℓ_r* (a max is exact in any order). parallel is the chunked kernels with one chunk per sequence, as the
/// CPU form's parallel variant is its chunked form with one chunk spanning the sequence. Every exponent is ≤ 0 and a
/// difference of log gates inside one chunk.
/// </summary>
internal static class MlstmKernels
{
    /// <summary>
    /// Mlstm.Recurrent's scalar part for one pair, step by step: m_t, the gates exp(log f_t + m_{t−1} − m_t) and
    /// exp(i_t − m_t), ñ_t, and the denominator max(|qsᵀ ñ_t|, exp(−m_t)) + eps of each row.
    /// </summary>
    public static void RecurrentGates<Real>(Index1D thread, MlstmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, _) = MlstmProblem<Real>.ChannelOf(thread, x.H, 1);
        SequenceSlice seq = x.Sequences[n];
        Real m = x.Max[x.Pair(seq, h)];
        for (int t = 0; t < seq.Length; t++)
        {
            long row = x.Row(seq, t, h);
            // m_t = max(log f_t + m_{t−1}, i_t); the gates rescaled by exp(−m_t)
            Real logF = x.LogF[row], mt = Larger(logF + m, x.I[row]);
            Real forget = GpuMath.Exp(logF + m - mt), input = GpuMath.Exp(x.I[row] - mt);
            // ñ_t = forget·ñ_{t−1} + input·k_t, read by qs
            Real dot = Real.Zero;
            for (int a = 0; a < x.Dk; a++)
            {
                long na = x.NormalizerOf(seq, h, a);
                x.Normalizer[na] = x.Normalizer[na] * forget + input * x.K[x.Key(row, a)];
                dot += x.Q[x.Key(row, a)] * x.Scale * x.Normalizer[na];
            }
            m = mt;
            x.Forget[row] = forget;
            x.Input[row] = input;
            x.RowNormalizer[row] = Denominator(x, dot, mt);
        }
        x.Max[x.Pair(seq, h)] = m;
    }

    /// <summary>Mlstm.Recurrent for column d of one pair's memory: C̃_t = forget·C̃_{t−1} + input·k_t v_tᵀ, o_t = qsᵀ C̃_t / denominator.</summary>
    public static void RecurrentState<Real>(Index1D thread, MlstmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, d) = MlstmProblem<Real>.ChannelOf(thread, x.H, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int t = 0; t < seq.Length; t++)
        {
            long row = x.Row(seq, t, h);
            Real forget = x.Forget[row], input = x.Input[row], vtd = x.V[x.Value(row, d)];
            Real otd = Real.Zero;
            for (int a = 0; a < x.Dk; a++)
            {
                long ad = x.State(seq, h, a, d);
                x.Memory[ad] = x.Memory[ad] * forget + input * x.K[x.Key(row, a)] * vtd;
                otd += x.Q[x.Key(row, a)] * x.Scale * x.Memory[ad];
            }
            x.O[x.Value(row, d)] = otd * (Real.One / x.RowNormalizer[row]);
        }
    }

    /// <summary>b_r = b_{r−1} + log f_{s+r} within each chunk (b_{−1} = 0), one thread per (sequence, head).</summary>
    public static void LocalSums<Real>(Index1D thread, MlstmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, _) = MlstmProblem<Real>.ChannelOf(thread, x.H, 1);
        SequenceSlice seq = x.Sequences[n];
        Real b = Real.Zero;
        for (int r = 0; r < seq.Length; r++)
        {
            long row = x.Row(seq, r, h);
            b = (r % x.C == 0 ? Real.Zero : b) + x.LogF[row];
            x.Local[row] = b;
        }
    }

    /// <summary>Step 1, the part without state: max_{s≤j≤r} ℓ_rj of one row r, one thread per (row, head), into MRow.</summary>
    public static void RowMax<Real>(Index1D thread, MlstmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long row = thread; // (b·T + t)·H + h
        int n = x.RowSequence[row / x.H];
        if (n < 0)
        {
            return;
        }
        SequenceSlice seq = x.Sequences[n];
        int h = (int)(row % x.H), r = (int)(row / x.H % x.T) - seq.Start, s = r / x.C * x.C;
        Real max = x.LogGate(row, x.Row(seq, s, h));
        for (int j = s + 1; j <= r; j++)
        {
            max = Larger(max, x.LogGate(row, x.Row(seq, j, h)));
        }
        x.MRow[row] = max;
    }

    /// <summary>
    /// Steps 1 and 3 for one pair's scalars, chunk after chunk: m_r = max(ℓ_r*, max_j ℓ_rj), carried_r = exp(ℓ_r* − m_r)
    /// and the inter-chunk normaliser carried_r · qsᵀ ñ_start of each row; then ñ and m handed to the next chunk.
    /// </summary>
    public static void ChunkGates<Real>(Index1D thread, MlstmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, _) = MlstmProblem<Real>.ChannelOf(thread, x.H, 1);
        SequenceSlice seq = x.Sequences[n];
        Real m = x.Max[x.Pair(seq, h)];
        for (int s = 0; s < seq.Length; s += x.C)
        {
            int e = Math.Min(s + x.C, seq.Length);
            // 1. the log gates of each row and their max, with the carried state's ℓ_r* = m_start + b_r
            for (int r = s; r < e; r++)
            {
                long row = x.Row(seq, r, h);
                Real logCarried = m + x.Local[row], mRow = Larger(logCarried, x.MRow[row]);
                Real dot = Real.Zero;
                for (int a = 0; a < x.Dk; a++)
                {
                    dot += x.Q[x.Key(row, a)] * x.Scale * x.Normalizer[x.NormalizerOf(seq, h, a)];
                }
                Real carried = GpuMath.Exp(logCarried - mRow);
                x.MRow[row] = mRow;
                x.Carried[row] = carried;
                x.RowNormalizer[row] = carried * dot;
            }
            // 3. ñ at the chunk's end: row e − 1's gates on the keys
            long last = x.Row(seq, e - 1, h);
            Real carriedLast = x.Carried[last], mLast = x.MRow[last];
            for (int a = 0; a < x.Dk; a++)
            {
                x.Normalizer[x.NormalizerOf(seq, h, a)] *= carriedLast;
            }
            for (int j = s; j < e; j++)
            {
                long rj = x.Row(seq, j, h);
                Real gate = GpuMath.Exp(x.LogGate(last, rj) - mLast);
                for (int a = 0; a < x.Dk; a++)
                {
                    x.Normalizer[x.NormalizerOf(seq, h, a)] += gate * x.K[x.Key(rj, a)];
                }
            }
            m = mLast;
        }
        x.Max[x.Pair(seq, h)] = m;
    }

    /// <summary>
    /// Steps 2 (the carried state's term, o_rd = Σ_a carried_r qs_a C̃_ad) and 3 (C̃ at the chunk's end) for column d of
    /// one pair's memory, chunk after chunk.
    /// </summary>
    public static void StatePass<Real>(Index1D thread, MlstmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, d) = MlstmProblem<Real>.ChannelOf(thread, x.H, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int s = 0; s < seq.Length; s += x.C)
        {
            int e = Math.Min(s + x.C, seq.Length);
            // 2. inter-chunk: the carried state's term of each row
            for (int r = s; r < e; r++)
            {
                long row = x.Row(seq, r, h);
                Real carried = x.Carried[row], ord = Real.Zero;
                for (int a = 0; a < x.Dk; a++)
                {
                    ord += carried * (x.Q[x.Key(row, a)] * x.Scale) * x.Memory[x.State(seq, h, a, d)];
                }
                x.O[x.Value(row, d)] = ord;
            }
            // 3. C̃ at the chunk's end: row e − 1's gates on outer products
            long last = x.Row(seq, e - 1, h);
            Real carriedLast = x.Carried[last], mLast = x.MRow[last];
            for (int a = 0; a < x.Dk; a++)
            {
                x.Memory[x.State(seq, h, a, d)] *= carriedLast;
            }
            for (int j = s; j < e; j++)
            {
                long rj = x.Row(seq, j, h);
                Real gate = GpuMath.Exp(x.LogGate(last, rj) - mLast), vjd = x.V[x.Value(rj, d)];
                for (int a = 0; a < x.Dk; a++)
                {
                    x.Memory[x.State(seq, h, a, d)] += gate * x.K[x.Key(rj, a)] * vjd;
                }
            }
        }
    }

    /// <summary>
    /// Step 2's intra-chunk terms for one output row r and head h (one group; shared memory: one score per thread), after
    /// StatePass: score_j = exp(ℓ_rj − m_r) qs·k_j added to the normaliser and score_j v_j to o, j = s..r in order; then
    /// o_r divided by max(|normaliser|, exp(−m_r)) + eps.
    /// </summary>
    public static void IntraChunk<Real>(MlstmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.H; // the group's row b·T + r of the time axis, and its head
        int h = Grid.IdxX % x.H;
        int n = x.RowSequence[bt];
        if (n < 0)
        {
            return; // a row no sequence covers: o stays 0
        }
        SequenceSlice seq = x.Sequences[n];
        int r = (int)(bt % x.T) - seq.Start, s = r / x.C * x.C;
        long row = x.Row(seq, r, h);
        Real mRow = x.MRow[row], normaliser = x.RowNormalizer[row]; // every thread sums the same scores in the same order
        ArrayView<Real> A = SharedMemory.GetDynamic<Real>();      // score_j for the tile j0 ≤ j < j0 + group size
        for (int j0 = s; j0 <= r; j0 += Group.DimX)
        {
            int j = j0 + Group.IdxX;
            if (j <= r)
            {
                long rj = x.Row(seq, j, h);
                A[Group.IdxX] = GpuMath.Exp(x.LogGate(row, rj) - mRow) * x.ScaledDot(row, rj);
            }
            Group.Barrier();
            int tile = Math.Min(Group.DimX, r - j0 + 1);
            for (int d = Group.IdxX; d < x.Dv; d += Group.DimX)
            {
                Real ord = x.O[x.Value(row, d)];
                for (int jj = 0; jj < tile; jj++)
                {
                    ord += A[jj] * x.V[x.Value(x.Row(seq, j0 + jj, h), d)];
                }
                x.O[x.Value(row, d)] = ord;
            }
            for (int jj = 0; jj < tile; jj++)
            {
                normaliser += A[jj];
            }
            Group.Barrier();
        }
        Real scale = Real.One / Denominator(x, normaliser, mRow);
        for (int d = Group.IdxX; d < x.Dv; d += Group.DimX)
        {
            x.O[x.Value(row, d)] *= scale;
        }
    }

    /// <summary>MlstmOptions.Denominator: max(|normaliser|, exp(−m)) + eps, the stabilised form of max(|qᵀn|, 1).</summary>
    private static Real Denominator<Real>(MlstmProblem<Real> x, Real normaliser, Real m) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        Larger(normaliser < Real.Zero ? -normaliser : normaliser, GpuMath.Exp(-m)) + x.Eps;

    /// <summary>max(a, b), as Math.Max for the values met here (no NaN).</summary>
    private static Real Larger<Real>(Real a, Real b) where Real : unmanaged, IFloatingPointIeee754<Real> => a >= b ? a : b;
}
