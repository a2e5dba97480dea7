using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// The kernels of Forms/GatedLinear/GlaChunkwise.cs, GLA's chunkwise algorithm (Yang et al. 2023, Sec. 4.1–4.3): the
/// parallel and chunked variants of gla and, through their reductions, simple_gla, retention and hgrn2. Same symbols
/// and steps; per chunk [s, e) of C steps of one (sequence, head) pair, with S the state entering the chunk:
/// <code>
///   0. Γ_t = Σ_{r=s..t} gk_r,  Ψ_t = Σ_{r=s..t} gv_r                                        GateSums
///   1. inter-chunk part:  o_tc  = Σ_a q_ta exp(Γ_ta) S_ac exp(Ψ_tc)                          StatePass
///   2. intra-chunk part:  o_tc += Σ_{s≤j≤t} A_tj exp(Ψ_tc − Ψ_jc) v_jc,  then o_tc *= scale   IntraChunk
///         A_tj = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja)
///   3. state to the next chunk:                                                               StatePass
///         S_ac ← exp(Γ_{e−1,a}) S_ac exp(Ψ_{e−1,c}) + Σ_{s≤j&lt;e} k_ja exp(Γ_{e−1,a} − Γ_ja) v_jc exp(Ψ_{e−1,c} − Ψ_jc)
/// </code>
/// How the work is split: step 0 is one thread per (sequence, head, channel); steps 1 and 3 are the only sequential
/// part (each chunk needs the state the one before left), one thread per (sequence, head, value column c), which owns
/// column c of S as in GlaKernels.Recurrent and walks the chunks in order; step 2 needs no state, so every output row
/// of every chunk runs at once: one group per (row, head), which computes the scores A_tj for a tile of keys j into
/// shared memory (one j per thread) and then adds the tile's values to o (one column c per thread). Launched in the
/// order 0, 1+3, 2: step 2 adds to the o that step 1 wrote, and scales it.
/// Every exponent is a difference of log gates summed over j ≤ t, as in the reference: nothing is factorised as
/// exp(Γ_t)·exp(−Γ_j), so log gates of −20 per step stay exact.
/// </summary>
internal static class GlaChunkwiseKernels
{
    /// <summary>Step 0 for the key gate: Γ_ta = Σ_{r=s..t} gk_ra, one thread per (sequence, head, key-gate channel).</summary>
    public static void KeyGateSums<Real>(Index1D thread, DecayProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, a) = DecayProblem<Real>.ChannelOf(thread, x.H, x.GateWidth);
        SequenceSlice seq = x.Sequences[n];
        ChunkSums(x, seq, x.Gk, x.Γ, x.KeyGate(x.Row(seq, 0, h), a), (long)x.H * x.GateWidth);
    }

    /// <summary>Step 0 for the value gate: Ψ_tc = Σ_{r=s..t} gv_rc, one thread per (sequence, head, value column).</summary>
    public static void ValueGateSums<Real>(Index1D thread, DecayProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = DecayProblem<Real>.ChannelOf(thread, x.H, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        ChunkSums(x, seq, x.Gv, x.Ψ, x.Value(x.Row(seq, 0, h), c), (long)x.H * x.Dv);
    }

    /// <summary>Steps 1 and 3 for column c of one pair's state, chunk after chunk.</summary>
    public static void StatePass<Real>(Index1D thread, DecayProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = DecayProblem<Real>.ChannelOf(thread, x.H, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int s = 0; s < seq.Length; s += x.C)
        {
            int e = Math.Min(s + x.C, seq.Length);
            // 1. inter-chunk part: the state entering the chunk, decayed to step t.
            for (int t = s; t < e; t++)
            {
                long row = x.Row(seq, t, h);
                Real fromState = Real.Zero;
                for (int a = 0; a < x.Dk; a++)
                {
                    fromState += x.Q[x.Key(row, a)] * GpuMath.Exp(x.Γ[x.KeyGate(row, a)]) * x.S[x.State(seq, h, a, c)];
                }
                x.O[x.Value(row, c)] = x.HasGv ? fromState * GpuMath.Exp(x.Ψ[x.Value(row, c)]) : fromState;
            }
            // 3. the state handed to the next chunk.
            long last = x.Row(seq, e - 1, h);
            Real ΨEnd = x.HasGv ? x.Ψ[x.Value(last, c)] : Real.Zero;
            for (int a = 0; a < x.Dk; a++)
            {
                Real ΓEnd = x.Γ[x.KeyGate(last, a)];
                long ac = x.State(seq, h, a, c);
                Real Sac = GpuMath.Exp(ΓEnd) * x.S[ac];
                if (x.HasGv)
                {
                    Sac *= GpuMath.Exp(ΨEnd);
                }
                for (int j = s; j < e; j++)
                {
                    long rj = x.Row(seq, j, h);
                    Real kDecayed = GpuMath.Exp(ΓEnd - x.Γ[x.KeyGate(rj, a)]) * x.K[x.Key(rj, a)];
                    Sac += kDecayed * DecayedValue(x, rj, c, ΨEnd);
                }
                x.S[ac] = Sac;
            }
        }
    }

    /// <summary>
    /// Step 2 for one output row t and head h (one group; shared memory: one score per thread), after step 1:
    /// o_tc += Σ_{s≤j≤t} A_tj exp(Ψ_tc − Ψ_jc) v_jc in the order j = s..t, then o_tc *= scale.
    /// </summary>
    public static void IntraChunk<Real>(DecayProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.H; // the group's row b·T + t of the time axis, and its head
        int h = Grid.IdxX % x.H;
        int n = x.RowSequence[bt];
        if (n < 0)
        {
            return; // a row no sequence covers: o stays 0
        }
        SequenceSlice seq = x.Sequences[n];
        int t = (int)(bt % x.T) - seq.Start, s = t / x.C * x.C;
        long row = x.Row(seq, t, h);
        ArrayView<Real> A = SharedMemory.GetDynamic<Real>(); // A_tj for the tile j0 ≤ j < j0 + group size
        for (int j0 = s; j0 <= t; j0 += Group.DimX)
        {
            int j = j0 + Group.IdxX;
            if (j <= t)
            {
                A[Group.IdxX] = DecayedScore(x, row, x.Row(seq, j, h));
            }
            Group.Barrier();
            int tile = Math.Min(Group.DimX, t - j0 + 1);
            Real Ψt = Real.Zero;
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                Real otc = x.O[x.Value(row, c)];
                if (x.HasGv)
                {
                    Ψt = x.Ψ[x.Value(row, c)];
                }
                for (int i = 0; i < tile; i++)
                {
                    otc += A[i] * DecayedValue(x, x.Row(seq, j0 + i, h), c, Ψt);
                }
                x.O[x.Value(row, c)] = otc;
            }
            Group.Barrier();
        }
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            x.O[x.Value(row, c)] *= x.Scale;
        }
    }

    /// <summary>
    /// Step 0 for one channel of one pair, whose gate at step t is g[first + t·stride]: sum_t = Σ_{r=s..t} g_r within each
    /// chunk [s, e) of the sequence, added in the CPU's order.
    /// </summary>
    private static void ChunkSums<Real>(DecayProblem<Real> x, SequenceSlice seq, ArrayView<Real> g, ArrayView<Real> sum, long first, long stride)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real running = Real.Zero;
        for (int t = 0; t < seq.Length; t++)
        {
            long i = first + t * stride;
            running = t % x.C == 0 ? g[i] : g[i] + running;
            sum[i] = running;
        }
    }

    /// <summary>A_tj = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja) of rows t and j of one chunk.</summary>
    private static Real DecayedScore<Real>(DecayProblem<Real> x, long rowT, long rowJ) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real A = Real.Zero;
        for (int a = 0; a < x.Dk; a++)
        {
            A += x.Q[x.Key(rowT, a)] * x.K[x.Key(rowJ, a)] * GpuMath.Exp(x.Γ[x.KeyGate(rowT, a)] - x.Γ[x.KeyGate(rowJ, a)]);
        }
        return A;
    }

    /// <summary>exp(Ψ_c − Ψ_jc) · v_jc of row j, with Ψ_c the value gate sum it decays to (v_jc itself without gv).</summary>
    private static Real DecayedValue<Real>(DecayProblem<Real> x, long rowJ, int c, Real Ψ) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real v = x.V[x.Value(rowJ, c)];
        return x.HasGv ? GpuMath.Exp(Ψ - x.Ψ[x.Value(rowJ, c)]) * v : v;
    }
}
