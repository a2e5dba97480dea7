using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Delta;

/// <summary>
/// The kernel of Forms/Delta/WyChunkwise.cs, the chunkwise delta rule in the WY / UT-transform representation: the
/// chunked variant of delta_rule (no decay), gated_delta_rule (γ_t = g_t on every key channel) and kda (γ_t = gk_t).
/// Same symbols and steps; per chunk of n ≤ C steps r = 0..n−1 of one (sequence, value head) pair, from the state S:
/// <code>
///   1. Γ_r = γ_0 + … + γ_r; with it K̃_r = exp(Γ_r) ⊙ k_r, q_r ⊙ exp(Γ_r), exp(Γ_{n−1} − Γ_j) ⊙ k_j and exp(Γ_{n−1})
///   2. T = (I + A)⁻¹ diag(β) row by row: T_r = β_r e_r − Σ_{j&lt;r} A_rj T_j,
///         A_rj = β_r Σ_d k_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])
///   3. W = T K̃                        (U = T V is formed in step 4, column by column)
///   4. u = U − W S
///   5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [Σ_d q_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])] u_j)
///   6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) k_j u_jᵀ
/// </code>
/// Per-value β (β_t ∈ R^V): value column c is its own delta rule with β_t[c], so steps 2 and 3 run once per β column (T
/// and W per column) and steps 4–6 read column c's.
/// How the work is split: one group per pair walks the chunks in order (each needs the state the one before left); its
/// threads share each step: step 1 over key channels d; step 2 over the columns of T (each thread owns columns of every
/// row), with the scores A_rj of a tile of j computed one per thread into shared memory; step 3 over the entries of W;
/// steps 4–6 over value columns c (a thread owns column c of S, u and o), step 5's scores again a tile at a time in
/// shared memory. The workspace (DeltaProblem's) grows with C, K and V, never with T. Every exponent is a difference of
/// log sums within a chunk, as in the reference.
/// </summary>
internal static class WyChunkwiseKernels
{
    /// <summary>Steps 1–6, chunk after chunk, for one pair (one group; shared memory: one score per thread).</summary>
    public static void Chunked<Real>(DeltaProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int pair = Grid.IdxX;
        var (n, hv) = x.PairOf(pair);
        SequenceSlice seq = x.Sequences[n];
        ArrayView<Real> score = SharedMemory.GetDynamic<Real>(); // one score per thread: a tile of j
        for (int start = 0; start < seq.Length; start += x.C)
        {
            int m = Math.Min(x.C, seq.Length - start); // the chunk's n

            // 1. Γ_r = γ_0 + … + γ_r relative to the chunk start, and the decayed rows, channel d by channel.
            for (int d = Group.IdxX; d < x.Dk; d += Group.DimX)
            {
                Real Γ = Real.Zero;
                for (int r = 0; r < m; r++)
                {
                    if (x.HasDecay)
                    {
                        Real γ = x.G[x.Gate(x.ValueRow(seq, start + r, hv), d)];
                        Γ = r == 0 ? γ : γ + Γ;
                    }
                    x.Γ[x.ChunkKey(pair, r, d)] = Γ;
                    long kRow = x.KeyRow(seq, start + r, hv);
                    Real decay = Decay(x, Γ);
                    x.KDecayed[x.ChunkKey(pair, r, d)] = decay * x.K[x.Key(kRow, d)];
                    x.QDecayed[x.ChunkKey(pair, r, d)] = decay * x.Q[x.Key(kRow, d)];
                }
                x.EndDecay[x.EndKey(pair, d)] = Decay(x, Γ);
                for (int j = 0; j < m; j++)
                {
                    x.KToEnd[x.ChunkKey(pair, j, d)] = Decay(x, Γ - x.Γ[x.ChunkKey(pair, j, d)]) * x.K[x.Key(x.KeyRow(seq, start + j, hv), d)];
                }
            }
            Group.Barrier();

            // 2. T = (I + A)⁻¹ diag(β) row by row; thread e owns column cT of β column e / n in every row (cT ≤ r).
            for (int r = 0; r < m; r++)
            {
                long vRow = x.ValueRow(seq, start + r, hv);
                for (int e = Group.IdxX; e < x.BetaWidth * m; e += Group.DimX)
                {
                    int column = e / m, cT = e % m;
                    if (cT <= r)
                    {
                        x.Tm[x.TAt(pair, column, r, cT)] = cT == r ? x.Beta[x.BetaAt(vRow, column)] : Real.Zero; // β_r e_r
                    }
                }
                for (int j0 = 0; j0 < r; j0 += Group.DimX)
                {
                    int j = j0 + Group.IdxX;
                    if (j < r)
                    {
                        score[Group.IdxX] = DecayedDot(x, pair, seq, x.K, start, r, j, hv); // A_rj / β_r
                    }
                    Group.Barrier();
                    int tile = Math.Min(Group.DimX, r - j0);
                    for (int e = Group.IdxX; e < x.BetaWidth * m; e += Group.DimX)
                    {
                        int column = e / m, cT = e % m;
                        if (cT <= r)
                        {
                            Real βr = x.Beta[x.BetaAt(vRow, column)];
                            Real Trc = x.Tm[x.TAt(pair, column, r, cT)];
                            for (int i = Math.Max(0, cT - j0); i < tile; i++) // T_jc = 0 for j < c
                            {
                                Trc -= βr * score[i] * x.Tm[x.TAt(pair, column, j0 + i, cT)]; // T_r −= A_rj T_j
                            }
                            x.Tm[x.TAt(pair, column, r, cT)] = Trc;
                        }
                    }
                    Group.Barrier();
                }
            }
            Group.Barrier();

            // 3. W_r = Σ_{j≤r} T_rj K̃_j.
            for (long e = Group.IdxX; e < (long)x.BetaWidth * m * x.Dk; e += Group.DimX)
            {
                int column = (int)(e / ((long)m * x.Dk)), r = (int)(e / x.Dk % m), d = (int)(e % x.Dk);
                Real Wrd = Real.Zero;
                for (int j = 0; j <= r; j++)
                {
                    Wrd += x.Tm[x.TAt(pair, column, r, j)] * x.KDecayed[x.ChunkKey(pair, j, d)];
                }
                x.W[x.WAt(pair, column, r, d)] = Wrd;
            }
            Group.Barrier();

            // 4. u_r = U_r − W_r S with U_r = Σ_{j≤r} T_rj v_j; and step 5's inter-chunk part (q_r ⊙ exp(Γ_r))ᵀ S into o.
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                int column = x.BetaWidth == 1 ? 0 : c;
                for (int r = 0; r < m; r++)
                {
                    Real u = Real.Zero;
                    for (int j = 0; j <= r; j++)
                    {
                        u += x.Tm[x.TAt(pair, column, r, j)] * x.V[x.Value(x.ValueRow(seq, start + j, hv), c)];
                    }
                    for (int d = 0; d < x.Dk; d++)
                    {
                        u -= x.W[x.WAt(pair, column, r, d)] * x.S[x.State(seq, hv, d, c)];
                    }
                    x.Uc[x.UAt(pair, r, c)] = u;
                    Real o = Real.Zero;
                    for (int d = 0; d < x.Dk; d++)
                    {
                        o += x.QDecayed[x.ChunkKey(pair, r, d)] * x.S[x.State(seq, hv, d, c)];
                    }
                    x.O[x.Value(x.ValueRow(seq, start + r, hv), c)] = o;
                }
            }

            // 5. o_r += Σ_{j≤r} [Σ_d q_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])] u_j, the scores a tile of j at a time; o_r *= scale.
            for (int r = 0; r < m; r++)
            {
                long oRow = x.ValueRow(seq, start + r, hv);
                for (int j0 = 0; j0 <= r; j0 += Group.DimX)
                {
                    int j = j0 + Group.IdxX;
                    if (j <= r)
                    {
                        score[Group.IdxX] = DecayedDot(x, pair, seq, x.Q, start, r, j, hv);
                    }
                    Group.Barrier();
                    int tile = Math.Min(Group.DimX, r - j0 + 1);
                    for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                    {
                        Real o = x.O[x.Value(oRow, c)];
                        for (int i = 0; i < tile; i++)
                        {
                            o += score[i] * x.Uc[x.UAt(pair, j0 + i, c)];
                        }
                        x.O[x.Value(oRow, c)] = o;
                    }
                    Group.Barrier();
                }
                for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                {
                    x.O[x.Value(oRow, c)] *= x.Scale;
                }
            }

            // 6. S_d ← exp(Γ_{n−1}[d]) S_d, then S_d += (exp(Γ_{n−1}[d] − Γ_j[d]) k_j[d]) u_j for j = 0..n−1 in order.
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                for (int d = 0; d < x.Dk; d++)
                {
                    long dc = x.State(seq, hv, d, c);
                    Real Sdc = x.S[dc] * x.EndDecay[x.EndKey(pair, d)];
                    for (int j = 0; j < m; j++)
                    {
                        Sdc += x.KToEnd[x.ChunkKey(pair, j, d)] * x.Uc[x.UAt(pair, j, c)];
                    }
                    x.S[dc] = Sdc;
                }
            }
            Group.Barrier(); // the next chunk's step 1 rewrites the workspace
        }
    }

    /// <summary>
    /// Σ_d rows_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d]) of chunk rows r (of q or k) and j (of k); one exponent of a difference of
    /// log sums, once per pair of steps where the decay is the head's one (gated_delta_rule), none without decay.
    /// </summary>
    private static Real DecayedDot<Real>(DeltaProblem<Real> x, int pair, SequenceSlice seq, ArrayView<Real> rows, int start, int r, int j, int hv)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long rowR = x.KeyRow(seq, start + r, hv), rowJ = x.KeyRow(seq, start + j, hv);
        Real sum = Real.Zero, decay = Real.One;
        for (int d = 0; d < x.Dk; d++)
        {
            if (x.GateWidth > 1 || x.GateWidth == 1 && d == 0)
            {
                decay = GpuMath.Exp(x.Γ[x.ChunkKey(pair, r, d)] - x.Γ[x.ChunkKey(pair, j, d)]);
            }
            sum += rows[x.Key(rowR, d)] * (decay * x.K[x.Key(rowJ, d)]);
        }
        return sum;
    }

    /// <summary>exp(exponent), or exactly 1 without decay (the reference's exp(0)).</summary>
    private static Real Decay<Real>(DeltaProblem<Real> x, Real exponent) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        x.HasDecay ? GpuMath.Exp(exponent) : Real.One;
}
