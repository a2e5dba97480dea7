using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Delta;

/// <summary>
/// The kernels of Forms/Delta/Rwkv7.cs, RWKV-7 as the delta rule with a diagonal-plus-low-rank transition:
/// <code>
///   S_t = Diag(exp(gk_t)) S_{t−1} + b_t (S_{t−1}ᵀ a_t)ᵀ + k_t v_tᵀ,   o_t = scale · S_tᵀ q_t          Recurrent
/// </code>
/// and its chunked form (Rwkv7.Chunked, fla's dplr_chunkwise), same symbols and steps; per chunk of n ≤ C steps
/// r = 0..n−1 of one (sequence, head) pair, from the state S:
/// <code>
///   1. Γ_r = gk_0 + … + gk_r, Γ⁻_r = Γ_r − gk_r; with them Ã_r = exp(Γ⁻_r) ⊙ a_r, q_r ⊙ exp(Γ_r),
///      exp(Γ_{n−1} − Γ_j) ⊙ k_j, exp(Γ_{n−1} − Γ_j) ⊙ b_j and exp(Γ_{n−1})
///   2. A_ab[r,j] = Σ_d a_r[d] b_j[d] exp(Γ⁻_r[d] − Γ_j[d]),  A_ak[r,j] = Σ_d a_r[d] k_j[d] exp(Γ⁻_r[d] − Γ_j[d])  (j &lt; r);
///      T = (I − A_ab)⁻¹ row by row: T_r = e_r + Σ_{j&lt;r} A_ab[r,j] T_j;  and A_ak V
///   3. W = T Ã                                  (U = T A_ak V is formed in step 4, column by column)
///   4. w = U + W S
///   5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [Σ_d q_r k_j e^{Γ_r−Γ_j}] v_j + [Σ_d q_r b_j e^{Γ_r−Γ_j}] w_j)
///   6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) (k_j v_jᵀ + b_j w_jᵀ)
/// </code>
/// Recurrent: one thread per (sequence, head, value column c): S_{t−1}ᵀ a_t is read column by column, so column c of the
/// state needs only itself; the thread owns it in the final_state buffer (any K) and streams over t.
/// Chunked: one group per pair walks the chunks in order; its threads share each step as WyChunkwiseKernels.Chunked's
/// do: step 1 over key channels, step 2 over the columns of T and of A_ak V with the scores A_ab[r,j], A_ak[r,j] of a
/// tile of j in shared memory (two per thread), step 3 over the entries of W, steps 4–6 over value columns c with step
/// 5's scores a tile at a time in shared memory. The workspace (DplrProblem's) grows with C, K and V, never with T.
/// </summary>
internal static class Rwkv7Kernels
{
    /// <summary>Rwkv7.Recurrent for column c of one pair's state, rows d = 0..K−1 in the CPU's order.</summary>
    public static void Recurrent<Real>(Index1D thread, DplrProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = x.ChannelOf(thread, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int t = 0; t < seq.Length; t++)
        {
            long row = x.Row(seq, t, h);
            Real sa = Real.Zero; // S_{t−1}ᵀ a_t, read before the state changes
            for (int d = 0; d < x.Dk; d++)
            {
                sa += x.A[x.Key(row, d)] * x.S[x.State(seq, h, d, c)];
            }
            Real vtc = x.V[x.Value(row, c)];
            Real o = Real.Zero;
            for (int d = 0; d < x.Dk; d++)
            {
                long dc = x.State(seq, h, d, c);
                // S_t[d, c] = exp(gk_td) S_{t−1}[d, c] + b_td (S_{t−1}ᵀ a_t)_c + k_td v_tc
                Real Sdc = GpuMath.Exp(x.Gk[x.Key(row, d)]) * x.S[dc];
                Sdc += x.B[x.Key(row, d)] * sa;
                Sdc += x.K[x.Key(row, d)] * vtc;
                x.S[dc] = Sdc;
                o += x.Q[x.Key(row, d)] * Sdc; // o_t = Σ_d q_td S_t[d, :]
            }
            x.O[x.Value(row, c)] = o * x.Scale;
        }
    }

    /// <summary>Steps 1–6, chunk after chunk, for one pair (one group; shared memory: two scores per thread).</summary>
    public static void Chunked<Real>(DplrProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int pair = Grid.IdxX, n = pair / x.H, h = pair % x.H;
        SequenceSlice seq = x.Sequences[n];
        ArrayView<Real> scores = SharedMemory.GetDynamic<Real>(); // a tile of j: two scores per thread, [i] and [DimX + i]
        int tileWidth = Group.DimX;
        for (int start = 0; start < seq.Length; start += x.C)
        {
            int m = Math.Min(x.C, seq.Length - start); // the chunk's n

            // 1. Γ_r (inclusive) and Γ⁻_r (exclusive) relative to the chunk start, and the decayed rows, channel d by channel.
            for (int d = Group.IdxX; d < x.Dk; d += Group.DimX)
            {
                Real Γ = Real.Zero;
                for (int r = 0; r < m; r++)
                {
                    long row = x.Row(seq, start + r, h), rd = x.ChunkKey(pair, r, d);
                    Real before = Γ;
                    Γ = before + x.Gk[x.Key(row, d)];
                    x.ΓBefore[rd] = before;
                    x.Γ[rd] = Γ;
                    x.ADecayed[rd] = GpuMath.Exp(before) * x.A[x.Key(row, d)];
                    x.QDecayed[rd] = x.Q[x.Key(row, d)] * GpuMath.Exp(Γ);
                }
                x.EndDecay[x.EndKey(pair, d)] = GpuMath.Exp(Γ);
                for (int j = 0; j < m; j++)
                {
                    long row = x.Row(seq, start + j, h), jd = x.ChunkKey(pair, j, d);
                    Real toEnd = GpuMath.Exp(Γ - x.Γ[jd]);
                    x.KToEnd[jd] = toEnd * x.K[x.Key(row, d)];
                    x.BToEnd[jd] = toEnd * x.B[x.Key(row, d)];
                }
            }
            Group.Barrier();

            // 2. T = (I − A_ab)⁻¹ and A_ak V, row by row: thread owns column cT of T (cT ≤ r) and column c of A_ak V.
            for (int r = 0; r < m; r++)
            {
                for (int cT = Group.IdxX; cT <= r; cT += Group.DimX)
                {
                    x.Tm[x.TAt(pair, r, cT)] = cT == r ? Real.One : Real.Zero; // e_r
                }
                for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                {
                    x.AkV[x.ChunkValue(pair, r, c)] = Real.Zero;
                }
                for (int j0 = 0; j0 < r; j0 += tileWidth)
                {
                    int j = j0 + Group.IdxX;
                    if (j < r)
                    {
                        var (ab, ak) = LowRankScores(x, pair, seq, start, r, j, h);
                        scores[Group.IdxX] = ab;
                        scores[tileWidth + Group.IdxX] = ak;
                    }
                    Group.Barrier();
                    int tile = Math.Min(tileWidth, r - j0);
                    for (int cT = Group.IdxX; cT <= r; cT += Group.DimX)
                    {
                        Real Trc = x.Tm[x.TAt(pair, r, cT)];
                        for (int i = Math.Max(0, cT - j0); i < tile; i++) // T_jc = 0 for j < c
                        {
                            Trc += scores[i] * x.Tm[x.TAt(pair, j0 + i, cT)]; // T_r += A_ab[r,j] T_j
                        }
                        x.Tm[x.TAt(pair, r, cT)] = Trc;
                    }
                    for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                    {
                        Real akv = x.AkV[x.ChunkValue(pair, r, c)];
                        for (int i = 0; i < tile; i++)
                        {
                            akv += scores[tileWidth + i] * x.V[x.Value(x.Row(seq, start + j0 + i, h), c)]; // Σ_{j<r} A_ak[r,j] v_j
                        }
                        x.AkV[x.ChunkValue(pair, r, c)] = akv;
                    }
                    Group.Barrier();
                }
            }
            Group.Barrier();

            // 3. W_r = Σ_{j≤r} T_rj Ã_j.
            for (long e = Group.IdxX; e < (long)m * x.Dk; e += Group.DimX)
            {
                int r = (int)(e / x.Dk), d = (int)(e % x.Dk);
                Real Wrd = Real.Zero;
                for (int j = 0; j <= r; j++)
                {
                    Wrd += x.Tm[x.TAt(pair, r, j)] * x.ADecayed[x.ChunkKey(pair, j, d)];
                }
                x.W[x.ChunkKey(pair, r, d)] = Wrd;
            }
            Group.Barrier();

            // 4. w_r = U_r + W_r S with U_r = Σ_{j≤r} T_rj (A_ak V)_j; and step 5's inter-chunk part (q_r ⊙ exp(Γ_r))ᵀ S into o.
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                for (int r = 0; r < m; r++)
                {
                    Real w = Real.Zero;
                    for (int j = 0; j <= r; j++)
                    {
                        w += x.Tm[x.TAt(pair, r, j)] * x.AkV[x.ChunkValue(pair, j, c)];
                    }
                    for (int d = 0; d < x.Dk; d++)
                    {
                        w += x.W[x.ChunkKey(pair, r, d)] * x.S[x.State(seq, h, d, c)];
                    }
                    x.WNew[x.ChunkValue(pair, r, c)] = w;
                    Real o = Real.Zero;
                    for (int d = 0; d < x.Dk; d++)
                    {
                        o += x.QDecayed[x.ChunkKey(pair, r, d)] * x.S[x.State(seq, h, d, c)];
                    }
                    x.O[x.Value(x.Row(seq, start + r, h), c)] = o;
                }
            }

            // 5. o_r += Σ_{j≤r} [q_r·k_j]_Γ v_j + [q_r·b_j]_Γ w_j, the scores a tile of j at a time; o_r *= scale.
            for (int r = 0; r < m; r++)
            {
                long oRow = x.Row(seq, start + r, h);
                for (int j0 = 0; j0 <= r; j0 += tileWidth)
                {
                    int j = j0 + Group.IdxX;
                    if (j <= r)
                    {
                        var (qk, qb) = OutputScores(x, pair, seq, start, r, j, h);
                        scores[Group.IdxX] = qk;
                        scores[tileWidth + Group.IdxX] = qb;
                    }
                    Group.Barrier();
                    int tile = Math.Min(tileWidth, r - j0 + 1);
                    for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
                    {
                        Real o = x.O[x.Value(oRow, c)];
                        for (int i = 0; i < tile; i++)
                        {
                            o += scores[i] * x.V[x.Value(x.Row(seq, start + j0 + i, h), c)] + scores[tileWidth + i] * x.WNew[x.ChunkValue(pair, j0 + i, c)];
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

            // 6. S_d ← exp(Γ_{n−1}[d]) S_d, then S_d += (e^{Γ_{n−1}[d] − Γ_j[d]} k_j[d]) v_j + (e^{Γ_{n−1}[d] − Γ_j[d]} b_j[d]) w_j.
            for (int c = Group.IdxX; c < x.Dv; c += Group.DimX)
            {
                for (int d = 0; d < x.Dk; d++)
                {
                    long dc = x.State(seq, h, d, c);
                    Real Sdc = x.S[dc] * x.EndDecay[x.EndKey(pair, d)];
                    for (int j = 0; j < m; j++)
                    {
                        long jd = x.ChunkKey(pair, j, d);
                        Sdc += x.KToEnd[jd] * x.V[x.Value(x.Row(seq, start + j, h), c)] + x.BToEnd[jd] * x.WNew[x.ChunkValue(pair, j, c)];
                    }
                    x.S[dc] = Sdc;
                }
            }
            Group.Barrier(); // the next chunk's step 1 rewrites the workspace
        }
    }

    /// <summary>A_ab[r,j] and A_ak[r,j]: Σ_d a_r[d] exp(Γ⁻_r[d] − Γ_j[d]) times b_j[d] and k_j[d].</summary>
    private static (Real Ab, Real Ak) LowRankScores<Real>(DplrProblem<Real> x, int pair, SequenceSlice seq, int start, int r, int j, int h)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long rowR = x.Row(seq, start + r, h), rowJ = x.Row(seq, start + j, h);
        Real ab = Real.Zero, ak = Real.Zero;
        for (int d = 0; d < x.Dk; d++)
        {
            Real ad = x.A[x.Key(rowR, d)] * GpuMath.Exp(x.ΓBefore[x.ChunkKey(pair, r, d)] - x.Γ[x.ChunkKey(pair, j, d)]);
            ab += ad * x.B[x.Key(rowJ, d)];
            ak += ad * x.K[x.Key(rowJ, d)];
        }
        return (ab, ak);
    }

    /// <summary>[q_r·k_j]_Γ and [q_r·b_j]_Γ: Σ_d q_r[d] exp(Γ_r[d] − Γ_j[d]) times k_j[d] and b_j[d].</summary>
    private static (Real Qk, Real Qb) OutputScores<Real>(DplrProblem<Real> x, int pair, SequenceSlice seq, int start, int r, int j, int h)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long rowR = x.Row(seq, start + r, h), rowJ = x.Row(seq, start + j, h);
        Real qk = Real.Zero, qb = Real.Zero;
        for (int d = 0; d < x.Dk; d++)
        {
            Real qd = x.Q[x.Key(rowR, d)] * GpuMath.Exp(x.Γ[x.ChunkKey(pair, r, d)] - x.Γ[x.ChunkKey(pair, j, d)]);
            qk += qd * x.K[x.Key(rowJ, d)];
            qb += qd * x.B[x.Key(rowJ, d)];
        }
        return (qk, qb);
    }
}
