using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Linear;

/// <summary>
/// The kernels of Forms/Linear/Linear.cs, on the features φ(q), φ(k) (FeatureMapKernels.cs). Same symbols:
/// <code>
///   S_t = S_{t−1} + φ(k_t) v_tᵀ,   z_t = z_{t−1} + φ(k_t)
///   o_t = scale · S_tᵀ φ(q_t)   or, normalised,   scale · S_tᵀ φ(q_t) / (scale · φ(q_t)·z_t + eps)
///   not causal: every o_t reads S and z after the sequence's last step.
/// </code>
/// The three orders of the CPU form (LinearProblem's Order):
/// <code>
///   recurrent, causal       S, z += step t, then o_t reads them                        StatePass, Finish
///   not causal              S, z += every step, then every o_t reads them              StatePass, Finish
///   chunked (causal)        per chunk [s, e):                                          StatePass, IntraChunk
///     1. inter-chunk part:  Φq S, Φq z for the chunk's queries
///     2. intra-chunk part:  Σ_{s≤j≤t} A_tj v_j and Σ_{s≤j≤t} A_tj,  A_tj = φ(q_t)·φ(k_j)
///     3. S += Φkᵀ V, z += Φkᵀ 1 over the chunk's keys, handed to the next chunk
///   parallel                the chunked kernels with one chunk per sequence: the initial state's part, then the
///                           scores of every key j ≤ t (every key when not causal); the final state by step 3.
/// </code>
/// How the work is split: the state pass is the only sequential part, one thread per (sequence, head, value column c),
/// which owns column c of S (and the thread of column c = V owns z: the denominator is computed as the numerator is,
/// with a column of ones for the values) and streams over t. Step 2 needs no state: one group per (row, head), which
/// computes the scores of a tile of keys into shared memory (one key per thread), then adds the tile's values to o (one
/// column per thread) and its scores to the denominator, and finishes o.
/// </summary>
internal static class LinearKernels
{
    /// <summary>
    /// The state pass for column c of one pair's S (z for c = V), in the call's order: each o_t's numerator Σ_a φ(q_t)_a S_ac
    /// (den_t = Σ_a φ(q_t)_a z_a for c = V), before the scale, and S (z) after the last step.
    /// </summary>
    public static void StatePass<Real>(Index1D thread, LinearProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = LinearProblem<Real>.ChannelOf(thread, x.H, x.Dv + 1);
        SequenceSlice seq = x.Sequences[n];
        if (x.Order == LinearProblem<Real>.StepByStep)
        {
            for (int t = 0; t < seq.Length; t++)
            {
                Advance(x, seq, h, c, t, t + 1); // S_t = S_{t−1} + φ(k_t) v_tᵀ,   z_t = z_{t−1} + φ(k_t)
                Read(x, seq, h, c, t);            // o_t = S_tᵀ φ(q_t),   den_t = φ(q_t)·z_t
            }
        }
        else if (x.Order == LinearProblem<Real>.FinalState)
        {
            Advance(x, seq, h, c, 0, seq.Length);
            for (int t = 0; t < seq.Length; t++)
            {
                Read(x, seq, h, c, t);
            }
        }
        else
        {
            for (int s = 0; s < seq.Length; s += x.C)
            {
                int e = Math.Min(s + x.C, seq.Length);
                // 1. inter-chunk part: the state entering the chunk, read by each of its queries.
                for (int t = s; t < e; t++)
                {
                    Read(x, seq, h, c, t);
                }
                // 3. the state handed to the next chunk.
                Advance(x, seq, h, c, s, e);
            }
        }
    }

    /// <summary>LinearOptions.Output for o_tc of the orders that read S and z whole (recurrent, not causal): one thread per (row, head, c).</summary>
    public static void Finish<Real>(Index1D thread, LinearProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long row = thread / x.Dv;
        if (x.RowSequence[row / x.H] >= 0)
        {
            x.O[thread] = x.Finish(x.O[thread], x.Den[row]);
        }
    }

    /// <summary>
    /// Step 2 for one output row t and head h (one group; shared memory: one score per thread), after step 1:
    /// o_tc += Σ_j A_tj v_jc and den_t += Σ_j A_tj over the chunk's keys j ≤ t (every key of the chunk for the parallel
    /// variant, not causal), in the order j = s, s + 1, …; then LinearOptions.Output.
    /// </summary>
    public static void IntraChunk<Real>(LinearProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
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
        int last = x.AllKeys != 0 ? Math.Min(s + x.C, seq.Length) - 1 : t;
        long row = x.Row(seq, t, h);
        ArrayView<Real> A = SharedMemory.GetDynamic<Real>(); // A_tj for the tile j0 ≤ j < j0 + group size
        Real denominator = x.Den[row]; // every thread sums the same scores in the same order
        for (int j0 = s; j0 <= last; j0 += Group.DimX)
        {
            int j = j0 + Group.IdxX;
            if (j <= last)
            {
                A[Group.IdxX] = Score(x, row, x.Row(seq, j, h));
            }
            Group.Barrier();
            int tile = Math.Min(Group.DimX, last - j0 + 1);
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                Real otc = x.O[x.Value(row, c)];
                for (int i = 0; i < tile; i++)
                {
                    otc += A[i] * x.V[x.Value(x.Row(seq, j0 + i, h), c)];
                }
                x.O[x.Value(row, c)] = otc;
            }
            for (int i = 0; i < tile; i++)
            {
                denominator += A[i];
            }
            Group.Barrier();
        }
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            x.O[x.Value(row, c)] = x.Finish(x.O[x.Value(row, c)], denominator);
        }
    }

    /// <summary>Column c of S (z for c = V) advanced over steps [s, e): S_ac += φ(k_j)_a v_jc, j in order.</summary>
    private static void Advance<Real>(LinearProblem<Real> x, SequenceSlice seq, int h, int c, int s, int e)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        ArrayView<Real> S = x.StateOf(c);
        for (int a = 0; a < x.F; a++)
        {
            long ac = x.State(seq, h, a, c);
            Real Sac = S[ac];
            for (int j = s; j < e; j++)
            {
                long rj = x.Row(seq, j, h);
                Sac += x.Φ(x.Φk, rj, a) * x.ValueOrOne(rj, c);
            }
            S[ac] = Sac;
        }
    }

    /// <summary>o_tc = Σ_a φ(q_t)_a S_ac (den_t = Σ_a φ(q_t)_a z_a for c = V), before the scale.</summary>
    private static void Read<Real>(LinearProblem<Real> x, SequenceSlice seq, int h, int c, int t)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        ArrayView<Real> S = x.StateOf(c);
        long row = x.Row(seq, t, h);
        Real sum = Real.Zero;
        for (int a = 0; a < x.F; a++)
        {
            sum += x.Φ(x.Φq, row, a) * S[x.State(seq, h, a, c)];
        }
        x.OutputOf(c)[x.Output(row, c)] = sum;
    }

    /// <summary>
    /// A_tj = φ(q_t)·φ(k_j); for taylor2 1 + s + s²/2 of s = q̃_t·k̃_j, as the CPU form scores it
    /// (FeatureMaps.Taylor2Score): O(K) instead of a dot of 1 + K + K² features.
    /// </summary>
    private static Real Score<Real>(LinearProblem<Real> x, long rowT, long rowJ) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        if (x.ScoresByTaylor2)
        {
            Real s = x.ScaledDot(rowT, rowJ);
            return Real.One + s + s * s / (Real.One + Real.One);
        }
        Real A = Real.Zero;
        for (int a = 0; a < x.F; a++)
        {
            A += x.Φq[rowT * x.F + a] * x.Φk[rowJ * x.F + a];
        }
        return A;
    }
}
