using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// The kernels of Forms/GatedLinear/Rwkv6.cs, all three variants, same symbols (c a key channel, d a value column):
/// <code>
///   o_t = scale · q_tᵀ (S_{t−1} + Diag(u) k_t v_tᵀ)          (read before the decay: token t enters only through u)
///   S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ
/// </code>
/// recurrent: one thread per (sequence, head, value column d), which owns column d of S (S_cd is decayed by w_tc and
/// grows by k_tc v_td) and streams over t (Recurrent).
/// chunked, chunks [s, e) of C steps, b_i = Σ_{r=s}^{s+i} w_r (b_{−1} = 0):
/// <code>
///   0. b                                                                                         LocalDecaySums
///   1. inter-chunk: o_i += scale · (q_i ⊙ exp(b_{i−1}))ᵀ S_start                                StatePass
///   2. intra-chunk: o_i += scale · Σ_{j&lt;i} (Σ_c q_ic k_jc exp(b_{i−1,c} − b_{j,c})) v_j         IntraChunk
///   3. bonus:       o_i += scale · (Σ_c q_ic u_c k_ic) v_i                                      IntraChunk
///   4. state:       S ← Diag(exp(b_{n−1})) S + Σ_j Diag(exp(b_{n−1} − b_j)) k_j v_jᵀ              StatePass
/// </code>
/// Steps 1 and 4 are the only sequential part: one thread per (sequence, head, d), walking the chunks in order. Steps
/// 2 and 3 need no state: one group per (row, head), the scores of a tile of keys in shared memory (one key per
/// thread, the bonus as the score of j = i), then the tile's values added to o (one column per thread).
/// parallel, the unrolled sum with the decay accumulated backwards in log space (Parallel, ParallelState):
/// <code>
///   o_t = scale · (Σ_c q_tc u_c k_tc) v_t + scale · Σ_{j=t−1..0} (Σ_c q_tc k_jc exp(d_c)) v_j + scale · Σ_c q_tc exp(d_c) S_{−1}[c,:]
///         d_c = Σ_{r=j+1}^{t−1} w_rc while j runs down, Σ_{r=0}^{t−1} w_rc at the end
///   final_state = Σ_{j=T−1..0} Diag(exp(Σ_{r=j+1}^{T−1} w_r)) k_j v_jᵀ + Diag(exp(Σ_r w_r)) S_{−1}
/// </code>
/// Every exponent is a sum of log decays (≤ 0) or a difference inside one chunk: log decays of −20 per step stay exact.
/// </summary>
internal static class Rwkv6Kernels
{
    /// <summary>Rwkv6.Recurrent for column d of one pair's state: read, then decay and update, key channels c = 0..K−1.</summary>
    public static void Recurrent<Real>(Index1D thread, Rwkv6Problem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, d) = Rwkv6Problem<Real>.ChannelOf(thread, x.H, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int t = 0; t < seq.Length; t++)
        {
            long row = x.Row(seq, t, h);
            Real vtd = x.V[x.Value(row, d)];
            // o_t = scale · q_tᵀ (S_{t−1} + Diag(u) k_t v_tᵀ)
            Real otd = Real.Zero;
            for (int c = 0; c < x.Dk; c++)
            {
                Real qtc = x.Q[x.Key(row, c)];
                otd += x.Scale * qtc * x.S[x.State(seq, h, c, d)];
                otd += x.Scale * qtc * x.U[x.Bonus(h, c)] * x.K[x.Key(row, c)] * vtd;
            }
            x.O[x.Value(row, d)] = otd;
            // S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ
            for (int c = 0; c < x.Dk; c++)
            {
                long cd = x.State(seq, h, c, d);
                x.S[cd] = GpuMath.Exp(x.W[x.Key(row, c)]) * x.S[cd] + x.K[x.Key(row, c)] * vtd;
            }
        }
    }

    /// <summary>Step 0: b_i = b_{i−1} + w_{s+i} within each chunk, one thread per (sequence, head, key channel c).</summary>
    public static void LocalDecaySums<Real>(Index1D thread, Rwkv6Problem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = Rwkv6Problem<Real>.ChannelOf(thread, x.H, x.Dk);
        SequenceSlice seq = x.Sequences[n];
        Real b = Real.Zero;
        for (int t = 0; t < seq.Length; t++)
        {
            long i = x.Key(x.Row(seq, t, h), c);
            b = t % x.C == 0 ? x.W[i] : x.W[i] + b;
            x.LocalDecay[i] = b;
        }
    }

    /// <summary>Steps 1 and 4 for column d of one pair's state, chunk after chunk.</summary>
    public static void StatePass<Real>(Index1D thread, Rwkv6Problem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, d) = Rwkv6Problem<Real>.ChannelOf(thread, x.H, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int s = 0; s < seq.Length; s += x.C)
        {
            int e = Math.Min(s + x.C, seq.Length);
            // 1. inter-chunk: scale · (q_i ⊙ exp(b_{i−1}))ᵀ S_start
            for (int i = s; i < e; i++)
            {
                long row = x.Row(seq, i, h);
                Real oid = Real.Zero;
                for (int c = 0; c < x.Dk; c++)
                {
                    Real before = i == s ? Real.Zero : x.LocalDecay[x.Key(x.Row(seq, i - 1, h), c)];
                    oid += x.Scale * x.Q[x.Key(row, c)] * GpuMath.Exp(before) * x.S[x.State(seq, h, c, d)];
                }
                x.O[x.Value(row, d)] = oid;
            }
            // 4. state: S ← Diag(exp(b_{n−1})) S + Σ_j Diag(exp(b_{n−1} − b_j)) k_j v_jᵀ
            long last = x.Row(seq, e - 1, h);
            for (int c = 0; c < x.Dk; c++)
            {
                Real bLast = x.LocalDecay[x.Key(last, c)];
                long cd = x.State(seq, h, c, d);
                Real Scd = GpuMath.Exp(bLast) * x.S[cd];
                for (int j = s; j < e; j++)
                {
                    long rj = x.Row(seq, j, h);
                    Scd += x.K[x.Key(rj, c)] * GpuMath.Exp(bLast - x.LocalDecay[x.Key(rj, c)]) * x.V[x.Value(rj, d)];
                }
                x.S[cd] = Scd;
            }
        }
    }

    /// <summary>
    /// Steps 2 and 3 for one output row i and head h (one group; shared memory: one score per thread), after step 1:
    /// o_id += scale · A_ij v_jd in the order j = s..i, A_ij the decayed score for j &lt; i and the bonus for j = i.
    /// </summary>
    public static void IntraChunk<Real>(Rwkv6Problem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.H; // the group's row b·T + i of the time axis, and its head
        int h = Grid.IdxX % x.H;
        int n = x.RowSequence[bt];
        if (n < 0)
        {
            return; // a row no sequence covers: o stays 0
        }
        SequenceSlice seq = x.Sequences[n];
        int i = (int)(bt % x.T) - seq.Start, s = i / x.C * x.C;
        long row = x.Row(seq, i, h);
        ArrayView<Real> A = SharedMemory.GetDynamic<Real>(); // A_ij for the tile j0 ≤ j < j0 + group size
        for (int j0 = s; j0 <= i; j0 += Group.DimX)
        {
            int j = j0 + Group.IdxX;
            if (j < i)
            {
                A[Group.IdxX] = DecayedScore(x, row, x.Row(seq, i - 1, h), x.Row(seq, j, h));
            }
            else if (j == i)
            {
                A[Group.IdxX] = BonusScore(x, row, h);
            }
            Group.Barrier();
            int tile = Math.Min(Group.DimX, i - j0 + 1);
            for (int d = Group.IdxX; d < x.Dv; d += Group.DimX)
            {
                Real oid = x.O[x.Value(row, d)];
                for (int jj = 0; jj < tile; jj++)
                {
                    oid += x.Scale * A[jj] * x.V[x.Value(x.Row(seq, j0 + jj, h), d)];
                }
                x.O[x.Value(row, d)] = oid;
            }
            Group.Barrier();
        }
    }

    /// <summary>
    /// Rwkv6.Parallel's outputs for one row t and head h (one group): the bonus; the past tokens j = t−1 down to 0,
    /// a tile of J keys at a time, each key channel c walking the tile with its running log decay d_c (shared memory:
    /// the tile's products q_tc k_jc exp(d_c) [J×K], its scores [J], d [K]), the scores summed over c in order, the
    /// values added in the order j = t−1..0; then the initial state, decayed by d = Σ_{r=0}^{t−1} w_r.
    /// </summary>
    public static void Parallel<Real>(Rwkv6Problem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.H;
        int h = Grid.IdxX % x.H;
        int n = x.RowSequence[bt];
        if (n < 0)
        {
            return;
        }
        SequenceSlice seq = x.Sequences[n];
        int t = (int)(bt % x.T) - seq.Start;
        long row = x.Row(seq, t, h);
        ArrayView<Real> shared = SharedMemory.GetDynamic<Real>();
        ArrayView<Real> P = shared.SubView(0, (long)x.J * x.Dk), A = shared.SubView((long)x.J * x.Dk, x.J), D = shared.SubView((long)x.J * (x.Dk + 1), x.Dk);
        for (int c = Group.IdxX; c < x.Dk; c += Group.DimX)
        {
            D[c] = Real.Zero;
        }
        // The bonus: scale · (Σ_c q_tc u_c k_tc) v_t
        Real bonus = BonusScore(x, row, h);
        for (int d = Group.IdxX; d < x.Dv; d += Group.DimX)
        {
            x.O[x.Value(row, d)] = x.Scale * bonus * x.V[x.Value(row, d)];
        }
        Group.Barrier();
        // Past tokens, decayed: scale · Σ_{j<t} (Σ_c q_tc k_jc exp(d_c)) v_j, a tile j0, j0 − 1, …, j0 − tile + 1 at a time.
        for (int j0 = t - 1; j0 >= 0; j0 -= x.J)
        {
            int tile = Math.Min(x.J, j0 + 1);
            for (int c = Group.IdxX; c < x.Dk; c += Group.DimX)
            {
                Real dc = D[c], qtc = x.Q[x.Key(row, c)];
                for (int jj = 0; jj < tile; jj++)
                {
                    long rj = x.Row(seq, j0 - jj, h);
                    P[(long)jj * x.Dk + c] = qtc * x.K[x.Key(rj, c)] * GpuMath.Exp(dc);
                    dc += x.W[x.Key(rj, c)]; // d now reaches back to step j, ready for j − 1
                }
                D[c] = dc;
            }
            Group.Barrier();
            for (int jj = Group.IdxX; jj < tile; jj += Group.DimX)
            {
                Real a = Real.Zero;
                for (int c = 0; c < x.Dk; c++)
                {
                    a += P[(long)jj * x.Dk + c];
                }
                A[jj] = a;
            }
            Group.Barrier();
            for (int d = Group.IdxX; d < x.Dv; d += Group.DimX)
            {
                Real otd = x.O[x.Value(row, d)];
                for (int jj = 0; jj < tile; jj++)
                {
                    otd += x.Scale * A[jj] * x.V[x.Value(x.Row(seq, j0 - jj, h), d)];
                }
                x.O[x.Value(row, d)] = otd;
            }
            Group.Barrier();
        }
        // The initial state, decayed by d = Σ_{r=0}^{t−1} w_r up to the read at t.
        for (int d = Group.IdxX; d < x.Dv; d += Group.DimX)
        {
            Real otd = x.O[x.Value(row, d)];
            for (int c = 0; c < x.Dk; c++)
            {
                otd += x.Scale * x.Q[x.Key(row, c)] * GpuMath.Exp(D[c]) * x.S0[x.State(seq, h, c, d)];
            }
            x.O[x.Value(row, d)] = otd;
        }
    }

    /// <summary>
    /// Rwkv6.Parallel's final state, row c of one pair's S (one thread per (sequence, head, key channel c)):
    /// S_c = Σ_{j=T−1..0} k_jc exp(d_c) v_j + exp(d_c) S0_c, with d_c = Σ_{r=j+1}^{T−1} w_rc accumulated backwards.
    /// </summary>
    public static void ParallelState<Real>(Index1D thread, Rwkv6Problem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = Rwkv6Problem<Real>.ChannelOf(thread, x.H, x.Dk);
        SequenceSlice seq = x.Sequences[n];
        Real dc = Real.Zero;
        for (int j = seq.Length - 1; j >= 0; j--)
        {
            long rj = x.Row(seq, j, h);
            Real kDecayed = x.K[x.Key(rj, c)] * GpuMath.Exp(dc);
            for (int d = 0; d < x.Dv; d++)
            {
                x.S[x.State(seq, h, c, d)] += kDecayed * x.V[x.Value(rj, d)];
            }
            dc += x.W[x.Key(rj, c)];
        }
        Real decay = GpuMath.Exp(dc);
        for (int d = 0; d < x.Dv; d++)
        {
            x.S[x.State(seq, h, c, d)] += decay * x.S0[x.State(seq, h, c, d)];
        }
    }

    /// <summary>A_ij = Σ_c q_ic k_jc exp(b_{i−1,c} − b_jc) of row i (whose predecessor is rowBefore) and row j &lt; i of one chunk.</summary>
    private static Real DecayedScore<Real>(Rwkv6Problem<Real> x, long rowI, long rowBefore, long rowJ) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real a = Real.Zero;
        for (int c = 0; c < x.Dk; c++)
        {
            a += x.Q[x.Key(rowI, c)] * x.K[x.Key(rowJ, c)] * GpuMath.Exp(x.LocalDecay[x.Key(rowBefore, c)] - x.LocalDecay[x.Key(rowJ, c)]);
        }
        return a;
    }

    /// <summary>The bonus Σ_c q_ic u_c k_ic of row i, head h.</summary>
    private static Real BonusScore<Real>(Rwkv6Problem<Real> x, long row, int h) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real bonus = Real.Zero;
        for (int c = 0; c < x.Dk; c++)
        {
            bonus += x.Q[x.Key(row, c)] * x.U[x.Bonus(h, c)] * x.K[x.Key(row, c)];
        }
        return bonus;
    }
}
