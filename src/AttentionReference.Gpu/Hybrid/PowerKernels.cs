using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// The kernels of Forms/Hybrid/Power.cs, power attention with the symmetric power feature map φ (D = C(K+p−1, p)
/// entries, each formed from the CPU map's table where it is used; no buffer holds φ of a row). Same symbols:
/// <code>
///   w_ij = (s q_i·k_j)^p · γ(i, j),   γ(i, j) = exp(g_{j+1} + … + g_i)
///   recurrent   S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ,  z_t = exp(g_t) z_{t−1} + φ(k_t);
///               o_t = φ(s q_t)ᵀ S_t / (φ(s q_t)·z_t + eps)   (the numerator alone when not normalised)   StatePass, Finish
///   chunked     per chunk [s, e), b_t = g_s + … + g_t:                                                 ChunkGates
///                 1. inter-chunk part:  exp(b_t) (φ(s q_t)ᵀ S, φ(s q_t)·z)                                StatePass
///                 2. intra-chunk part:  w_tj = (s q_t·k_j)^p exp(b_t − b_j) for s ≤ j ≤ t                 IntraChunk
///                 3. S ← exp(b_last) S + Σ_j exp(b_last − b_j) φ(k_j) v_jᵀ, z likewise                   StatePass
///   quadratic   n_i = γ(i, −1) φ(s q_i)ᵀ S0 + Σ_{j≤i} w_ij v_j,  d_i likewise with z0 and 1            Quadratic
///               final_state, final_normalizer by the recurrence, every step entering S and z           StatePass
/// </code>
/// How the work is split: the state pass is the only sequential part, one thread per (sequence, head, value column c),
/// which owns column c of S (the thread of column c = V owns z: the denominator is computed as the numerator is, with a
/// column of ones for the values) in the final_state buffer, D entries of any size, and streams over t, forming each
/// φ_α(k_t) and φ_α(s q_t) from the table (p products). Step 2 and the quadratic form need no state but the initial
/// one: one group per (row, head), which computes the weights of a tile of keys into shared memory (one key per
/// thread) and then adds the tile's values to o (one column per thread) and its weights to the denominator.
/// </summary>
internal static class PowerKernels
{
    /// <summary>
    /// Power.Recurrent (StepByStep), the chunked form's steps 1 and 3 (ChunkByChunk) or the quadratic form's final state
    /// (StateOnly) for column c of one pair's S (z for c = V): each o_t's numerator (den_t for c = V), and S (z) after
    /// the last step.
    /// </summary>
    public static void StatePass<Real>(Index1D thread, PowerProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = x.ChannelOf(thread, x.Dv + 1);
        SequenceSlice seq = x.Sequences[n];
        if (x.Order == PowerProblem<Real>.ChunkByChunk)
        {
            for (int s = 0, e; s < seq.Length; s = e)
            {
                e = s + Math.Min(x.C, seq.Length - s); // the chunk [s, e), in int however large C is
                // 1. inter-chunk part: the state entering the chunk, read by each of its queries, decayed by exp(b_t).
                for (int t = s; t < e; t++)
                {
                    long row = x.Row(seq, t, h);
                    x.OutputOf(c)[x.Output(row, c)] = GpuMath.Exp(x.B[row]) * Read(x, seq, h, c, row);
                }
                // 3. S ← exp(b_last) S + Σ_j φ(k_j) (exp(b_last − b_j) v_j)ᵀ, z alike: the state handed to the next chunk.
                Real entry = GpuMath.Exp(x.B[x.Row(seq, e - 1, h)]);
                ArrayView<Real> S = x.StateOf(c);
                for (int α = 0; α < x.D; α++)
                {
                    long αc = x.State(seq, h, α, c);
                    Real Sαc = entry * S[αc];
                    for (int j = s; j < e; j++)
                    {
                        long rj = x.Row(seq, j, h);
                        Sαc += x.Feature(x.K, rj, α, Real.One) * (x.ValueOrOne(rj, c) * x.ToEnd[rj]);
                    }
                    S[αc] = Sαc;
                }
            }
            return;
        }
        for (int t = 0; t < seq.Length; t++)
        {
            // S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ,   z_t = exp(g_t) z_{t−1} + φ(k_t)
            long row = x.Row(seq, t, h);
            Real decay = GpuMath.Exp(x.Gate(row)), vtc = x.ValueOrOne(row, c);
            ArrayView<Real> S = x.StateOf(c);
            for (int α = 0; α < x.D; α++)
            {
                long αc = x.State(seq, h, α, c);
                S[αc] = decay * S[αc] + x.Feature(x.K, row, α, Real.One) * vtc;
            }
            if (x.Order == PowerProblem<Real>.StepByStep)
            {
                // o_t = φ(s q_t)ᵀ S_t,   den_t = φ(s q_t)·z_t   (divided by Finish)
                x.OutputOf(c)[x.Output(row, c)] = Read(x, seq, h, c, row);
            }
        }
    }

    /// <summary>PowerOptions.Output for o_tc of the recurrent variant: one thread per (row, head, c).</summary>
    public static void Finish<Real>(Index1D thread, PowerProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long row = thread / x.Dv;
        if (x.RowSequence[row / x.H] >= 0)
        {
            x.O[thread] = x.Finish(x.O[thread], x.Den[row]);
        }
    }

    /// <summary>
    /// The chunked form's b_t = g_s + … + g_t from each chunk's start s (Power.ChunkLogDecay) and exp(b_last − b_t), b_last
    /// that of the chunk's last step: one thread per (sequence, head).
    /// </summary>
    public static void ChunkGates<Real>(Index1D thread, PowerProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, _) = x.ChannelOf(thread, 1);
        SequenceSlice seq = x.Sequences[n];
        for (int s = 0, e; s < seq.Length; s = e)
        {
            e = s + Math.Min(x.C, seq.Length - s); // the chunk [s, e), in int however large C is
            Real b = Real.Zero;
            for (int t = s; t < e; t++)
            {
                long row = x.Row(seq, t, h);
                b += x.Gate(row);
                x.B[row] = b;
            }
            for (int t = s; t < e; t++)
            {
                long row = x.Row(seq, t, h);
                x.ToEnd[row] = GpuMath.Exp(b - x.B[row]);
            }
        }
    }

    /// <summary>
    /// Step 2 for one output row t and head h (one group; shared memory: one weight per thread), after step 1:
    /// o_tc += Σ_j w_tj v_jc and den_t += Σ_j w_tj over the chunk's keys s ≤ j ≤ t, w_tj = (s q_t·k_j)^p exp(b_t − b_j);
    /// then PowerOptions.Output.
    /// </summary>
    public static void IntraChunk<Real>(PowerProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
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
        ArrayView<Real> w = SharedMemory.GetDynamic<Real>(); // w_tj for the tile j0 ≤ j < j0 + group size
        Real denominator = x.Den[row]; // every thread sums the same weights in the same order
        for (int j0 = s; j0 <= t; j0 += Group.DimX)
        {
            int j = j0 + Group.IdxX;
            if (j <= t)
            {
                long rj = x.Row(seq, j, h);
                w[Group.IdxX] = x.Weight(row, rj, GpuMath.Exp(x.B[row] - x.B[rj]));
            }
            Group.Barrier();
            int tile = Math.Min(Group.DimX, t - j0 + 1);
            AddTile(x, seq, h, row, j0, 1, tile, w);
            for (int i = 0; i < tile; i++)
            {
                denominator += w[i];
            }
            Group.Barrier();
        }
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            x.O[x.Value(row, c)] = x.Finish(x.O[x.Value(row, c)], denominator);
        }
    }

    /// <summary>
    /// The quadratic form for one output row i and head h (one group; shared memory: a weight and a gate per thread).
    /// Keys j = i, i−1, …, 0 in tiles from the diagonal down, the log decay log γ(i, j) = log γ(i, j+1) + g_{j+1} summed key
    /// by key as the CPU form sums it (every thread repeats the same sums); then the initial state's part
    /// γ(i, −1) (φ(s q_i)ᵀ S0, φ(s q_i)·z0), γ(i, −1) = exp(log γ(i, 0) + g_0), φ(s q_i) a tile of entries at a time in
    /// shared memory; then PowerOptions.Output.
    /// </summary>
    public static void Quadratic<Real>(PowerProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.H;
        int h = Grid.IdxX % x.H;
        int n = x.RowSequence[bt];
        if (n < 0)
        {
            return;
        }
        SequenceSlice seq = x.Sequences[n];
        int i = (int)(bt % x.T) - seq.Start;
        long row = x.Row(seq, i, h);
        ArrayView<Real> shared = SharedMemory.GetDynamic<Real>();
        ArrayView<Real> w = shared.SubView(0, Group.DimX);            // w_ij of the tile, the highest key first
        ArrayView<Real> gates = shared.SubView(Group.DimX, Group.DimX); // g_m of the tile, m = j1 − 1, j1 − 2, …, j0
        Real top = Real.Zero, denominator = Real.Zero; // top = log γ(i, j1 − 1), the tile's highest key's (γ(i, i) = 1)
        for (int j1 = i + 1; j1 > 0; j1 -= Group.DimX)
        {
            int j0 = Math.Max(0, j1 - Group.DimX), tile = j1 - j0;
            if (Group.IdxX < tile)
            {
                gates[Group.IdxX] = x.Gate(x.Row(seq, j1 - 1 - Group.IdxX, h));
            }
            Group.Barrier();
            if (Group.IdxX < tile)
            {
                // log γ(i, j) for j = j1 − 1 − IdxX: the tile's top, plus g_m for m = j1 − 1 down to j + 1.
                Real logDecay = top;
                for (int u = 0; u < Group.IdxX; u++)
                {
                    logDecay += gates[u];
                }
                w[Group.IdxX] = x.Weight(row, x.Row(seq, j1 - 1 - Group.IdxX, h), GpuMath.Exp(logDecay));
            }
            Group.Barrier();
            AddTile(x, seq, h, row, j1 - 1, -1, tile, w);
            for (int u = 0; u < tile; u++)
            {
                denominator += w[u];
                top += gates[u]; // log γ(i, j0 − 1) = log γ(i, j0) + g_{j0}: the next tile's top
            }
            Group.Barrier();
        }
        if (x.HasInitialState != 0)
        {
            // top is now log γ(i, −1): the initial state decays by every gate up to i.
            Real γ0 = GpuMath.Exp(top);
            for (int α0 = 0; α0 < x.D; α0 += Group.DimX)
            {
                int tile = Math.Min(Group.DimX, x.D - α0);
                if (Group.IdxX < tile)
                {
                    w[Group.IdxX] = γ0 * x.Feature(x.Q, row, α0 + Group.IdxX, x.Scale);
                }
                Group.Barrier();
                for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                {
                    Real otc = x.O[x.Value(row, c)];
                    for (int u = 0; u < tile; u++)
                    {
                        otc += w[u] * x.S[x.State(seq, h, α0 + u, c)];
                    }
                    x.O[x.Value(row, c)] = otc;
                }
                for (int u = 0; u < tile; u++)
                {
                    denominator += w[u] * x.Z[x.State(seq, h, α0 + u, x.Dv)];
                }
                Group.Barrier();
            }
        }
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            x.O[x.Value(row, c)] = x.Finish(x.O[x.Value(row, c)], denominator);
        }
    }

    /// <summary>o_tc += Σ_u w_u v_jc over a tile of keys j = first + u·step, u &lt; tile: one column c per thread.</summary>
    private static void AddTile<Real>(PowerProblem<Real> x, SequenceSlice seq, int h, long row, int first, int step, int tile, ArrayView<Real> w)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            Real otc = x.O[x.Value(row, c)];
            for (int u = 0; u < tile; u++)
            {
                otc += w[u] * x.V[x.Value(x.Row(seq, first + u * step, h), c)];
            }
            x.O[x.Value(row, c)] = otc;
        }
    }

    /// <summary>Σ_α φ_α(s q_t) S_αc of query row <paramref name="row"/> (Σ_α φ_α(s q_t) z_α for c = V).</summary>
    private static Real Read<Real>(PowerProblem<Real> x, SequenceSlice seq, int h, int c, long row) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        ArrayView<Real> S = x.StateOf(c);
        Real sum = Real.Zero;
        for (int α = 0; α < x.D; α++)
        {
            sum += x.Feature(x.Q, row, α, x.Scale) * S[x.State(seq, h, α, c)];
        }
        return sum;
    }
}
