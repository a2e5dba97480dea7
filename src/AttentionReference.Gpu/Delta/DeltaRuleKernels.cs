using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Delta;

/// <summary>
/// The kernels of Forms/Delta/DeltaRule.cs: the recurrence token by token (the recurrent variant of delta_rule and,
/// through their log decay γ_t, of gated_delta_rule and kda, as DeltaRule.Recurrent is) and delta_rule's parallel form.
/// <code>
///   S_t = (I − β_t k_t k_tᵀ) Diag(exp(γ_t)) S_{t−1} + β_t k_t v_tᵀ,   o_t = scale · S_tᵀ q_t
///   i.e. S' = Diag(exp(γ_t)) S_{t−1},  u_t = β_t ⊙ (v_t − S'ᵀ k_t),  S_t = S' + k_t u_tᵀ
/// parallel, over the whole sequence of L steps:
///   (I + tril(diag(β) K Kᵀ, −1)) U = diag(β) (V − K S_0)     by forward substitution       ParallelSolve
///   O = scale · (Q S_0 + tril(Q Kᵀ) U)                        (tril keeps the diagonal)     ParallelOutputs
///   S_T = S_0 + Kᵀ U                                                                         ParallelState
/// </code>
/// Recurrent: one thread per (sequence, value head, value column c). Column c of S depends on column c alone (u_t[c]
/// reads S[:, c] only, with β_t or β_t[c]), so the thread owns it, in the final_state buffer (any K), and streams over t.
/// Parallel: the solve is sequential in the rows r, one group per (sequence, value head) whose threads own value columns
/// c and compute the scores k_r · k_j of a tile of j (one j per thread, shared memory); the outputs need only U, one group
/// per (row, value head) as GlaChunkwiseKernels.IntraChunk; the state last, one thread per (sequence, head, a, c).
/// Nothing is stored T x T: the scores are computed a tile at a time where they are used.
/// </summary>
internal static class DeltaRuleKernels
{
    /// <summary>DeltaRule.Recurrent for column c of one pair's state: decay, predict, correct, read out, in the CPU's order.</summary>
    public static void Recurrent<Real>(Index1D thread, DeltaProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, hv, c) = x.ChannelOf(thread, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int t = 0; t < seq.Length; t++)
        {
            long kRow = x.KeyRow(seq, t, hv), vRow = x.ValueRow(seq, t, hv);
            Real headDecay = x.GateWidth == 1 ? GpuMath.Exp(x.G[vRow]) : Real.One; // exp(g_t), gated_delta_rule's one decay
            Real p = Real.Zero;                                                     // Sᵀ k_t: what the state recalls for k_t
            for (int a = 0; a < x.Dk; a++)
            {
                long ac = x.State(seq, hv, a, c);
                if (x.HasDecay)
                {
                    x.S[ac] *= x.GateWidth == 1 ? headDecay : GpuMath.Exp(x.G[x.Gate(vRow, a)]); // decay:   S ← Diag(exp(γ_t)) S
                }
                p += x.K[x.Key(kRow, a)] * x.S[ac];                                            // predict: p = Sᵀ k_t
            }
            Real u = x.Beta[x.BetaAt(vRow, c)] * (x.V[x.Value(vRow, c)] - p);                 // correct: u_t = β_t ⊙ (v_t − p)
            Real o = Real.Zero;
            for (int a = 0; a < x.Dk; a++)
            {
                long ac = x.State(seq, hv, a, c);
                x.S[ac] += x.K[x.Key(kRow, a)] * u;                                             //          S ← S + k_t u_tᵀ
                o += x.Q[x.Key(kRow, a)] * x.S[ac];                                             // read out: o_t = Sᵀ q_t
            }
            x.O[x.Value(vRow, c)] = o * x.Scale;                                                //          o_t ← scale · o_t
        }
    }

    /// <summary>
    /// (I + tril(diag(β) K Kᵀ, −1)) U = diag(β) (V − K S_0) for one pair (one group; shared memory: one score per thread),
    /// row after row r: U_rc = β_r (v_rc − Σ_d k_rd S_0[d, c]) − Σ_{j&lt;r} β_r (k_r · k_j) U_jc, j in increasing order.
    /// </summary>
    public static void ParallelSolve<Real>(DeltaProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, hv) = x.PairOf(Grid.IdxX);
        SequenceSlice seq = x.Sequences[n];
        ArrayView<Real> kk = SharedMemory.GetDynamic<Real>(); // k_r · k_j for the tile j0 ≤ j < j0 + group size
        for (int r = 0; r < seq.Length; r++)
        {
            long kRow = x.KeyRow(seq, r, hv), vRow = x.ValueRow(seq, r, hv);
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                Real ks0 = Real.Zero;
                for (int d = 0; d < x.Dk; d++)
                {
                    ks0 += x.K[x.Key(kRow, d)] * x.S[x.State(seq, hv, d, c)];
                }
                x.U[x.Value(vRow, c)] = x.Beta[x.BetaAt(vRow, c)] * (x.V[x.Value(vRow, c)] - ks0);
            }
            for (int j0 = 0; j0 < r; j0 += Group.DimX)
            {
                int j = j0 + Group.IdxX;
                if (j < r)
                {
                    kk[Group.IdxX] = Dot(x, x.K, kRow, x.KeyRow(seq, j, hv));
                }
                Group.Barrier();
                int tile = Math.Min(Group.DimX, r - j0);
                for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                {
                    Real βr = x.Beta[x.BetaAt(vRow, c)];
                    Real rhs = x.U[x.Value(vRow, c)];
                    for (int i = 0; i < tile; i++)
                    {
                        rhs -= βr * kk[i] * x.U[x.Value(x.ValueRow(seq, j0 + i, hv), c)];
                    }
                    x.U[x.Value(vRow, c)] = rhs;
                }
                Group.Barrier();
            }
        }
    }

    /// <summary>
    /// O_r = scale · (Q_r S_0 + Σ_{j≤r} (q_r · k_j) U_j) for one row r and value head (one group; shared memory: one score
    /// per thread), after ParallelSolve and before ParallelState (S still S_0).
    /// </summary>
    public static void ParallelOutputs<Real>(DeltaProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.HV; // the group's row b·T + t of the time axis, and its value head
        int hv = Grid.IdxX % x.HV;
        int n = x.RowSequence[bt];
        if (n < 0)
        {
            return; // a row no sequence covers: o stays 0
        }
        SequenceSlice seq = x.Sequences[n];
        int r = (int)(bt % x.T) - seq.Start;
        long qRow = x.KeyRow(seq, r, hv), vRow = x.ValueRow(seq, r, hv);
        ArrayView<Real> qk = SharedMemory.GetDynamic<Real>(); // q_r · k_j for the tile j0 ≤ j < j0 + group size
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            Real fromState = Real.Zero;
            for (int d = 0; d < x.Dk; d++)
            {
                fromState += x.Q[x.Key(qRow, d)] * x.S[x.State(seq, hv, d, c)];
            }
            x.O[x.Value(vRow, c)] = fromState;
        }
        for (int j0 = 0; j0 <= r; j0 += Group.DimX)
        {
            int j = j0 + Group.IdxX;
            if (j <= r)
            {
                qk[Group.IdxX] = Dot(x, x.Q, qRow, x.KeyRow(seq, j, hv));
            }
            Group.Barrier();
            int tile = Math.Min(Group.DimX, r - j0 + 1);
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                Real o = x.O[x.Value(vRow, c)];
                for (int i = 0; i < tile; i++)
                {
                    o += qk[i] * x.U[x.Value(x.ValueRow(seq, j0 + i, hv), c)];
                }
                x.O[x.Value(vRow, c)] = o;
            }
            Group.Barrier();
        }
        for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
        {
            x.O[x.Value(vRow, c)] *= x.Scale;
        }
    }

    /// <summary>S_T[a, c] = S_0[a, c] + Σ_j k_ja U_jc, j in increasing order: one thread per (sequence, value head, a, c).</summary>
    public static void ParallelState<Real>(Index1D thread, DeltaProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, hv, ac) = x.ChannelOf(thread, x.Dk * x.Dv);
        int a = ac / x.Dv, c = ac % x.Dv;
        SequenceSlice seq = x.Sequences[n];
        long state = x.State(seq, hv, a, c);
        Real s = x.S[state];
        for (int j = 0; j < seq.Length; j++)
        {
            s += x.K[x.Key(x.KeyRow(seq, j, hv), a)] * x.U[x.Value(x.ValueRow(seq, j, hv), c)];
        }
        x.S[state] = s;
    }

    /// <summary>Σ_d rows_rd k_jd of q/k row <paramref name="rowR"/> of <paramref name="rows"/> and k row <paramref name="rowJ"/>, d in order.</summary>
    private static Real Dot<Real>(DeltaProblem<Real> x, ArrayView<Real> rows, long rowR, long rowJ) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real sum = Real.Zero;
        for (int d = 0; d < x.Dk; d++)
        {
            sum += rows[x.Key(rowR, d)] * x.K[x.Key(rowJ, d)];
        }
        return sum;
    }
}
