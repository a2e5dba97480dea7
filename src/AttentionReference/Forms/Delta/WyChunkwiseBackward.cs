using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// The backward pass of the chunkwise delta rule (the <c>chunked</c> variants of <see cref="DeltaRule"/>,
/// <see cref="GatedDeltaRule"/> and <see cref="Kda"/>), as fla's chunk_gated_delta_rule_bwd / chunk_kda_bwd compute it:
/// the states are recomputed chunk by chunk, then each chunk's gradients follow WyChunkwise.cs's numbered steps in
/// reverse. Symbols as in WyChunkwise.cs (Γ, A, T, K̃, W, U, u; n the chunk's length, S the state entering it).
/// <code>
/// Pass 1, forward over the chunks (fla: chunk_gated_delta_rule_fwd_h): steps 1–4 and 6 give the state entering every
///   chunk and the new values u (fla's v_new); the states are kept per chunk, not per step.
/// Pass 2, the chunks in reverse, dS = dfinal_state entering the last one (fla: chunk_*_bwd_dhu carries dh back):
///   recompute steps 1–3 from the chunk's entering state (fla: recompute_w_u_fwd), then
///   6'. S_next = Diag(exp Γ_{n−1}) S + Σ_j k̄_j u_jᵀ,  k̄_j = exp(Γ_{n−1} − Γ_j) ⊙ k_j,  dS = dS_next:
///         du_j = dSᵀ k̄_j,   dk_j += exp(Γ_{n−1} − Γ_j) ⊙ (dS u_j),   then dS ← Diag(exp Γ_{n−1}) dS
///   5'. o_r = scale · ((exp Γ_r ⊙ q_r)ᵀ S + Σ_{j≤r} P_rj u_j),   P_rj = Σ_d q_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d]):
///         dS += scale · (exp Γ_r ⊙ q_r) do_rᵀ,   dq_r += scale · exp Γ_r ⊙ (S do_r),
///         dP_rj = scale · do_r·u_j,   du_j += scale · Σ_{r≥j} P_rj do_r          (fla: chunk_bwd_dv_local)
///   4'. u = U − W S:   dU = du,   dW_r = −S du_r,   dS −= Wᵀ du                 (dS is now dS entering the chunk)
///   3'. W = T K̃, U = T V:   dT_rj = dW_r·K̃_j + dU_r·v_j (j ≤ r),   dv_j = Σ_{r≥j} T_rj dU_r,
///         dk_j += exp Γ_j ⊙ Σ_{r≥j} T_rj dW_r                                   (through K̃_j = exp Γ_j ⊙ k_j)
///   2'. T = (I + A)⁻¹ diag(β):   X = (I + A)⁻ᵀ dT by back substitution (X_r = dT_r − Σ_{i&gt;r} A_ir X_i),
///         dβ_j += X_jj,   dA = −X Tᵀ on the strictly lower triangle
///         (fla's prepare_wy_repr_bwd: dA = −M⁻ᵀ dM⁻¹ M⁻ᵀ with M = I + A and dM⁻¹ = dT diag(β), the same matrix);
///       then through A_rj = β_r Σ_d k_r[d] k_j[d] E_rj (j &lt; r) and P_rj (j ≤ r), E_rj = exp(Γ_r − Γ_j):
///         dβ_r += dA_rj Σ_d k_r[d] k_j[d] E_rj[d],   dk_r += β_r dA_rj (k_j ⊙ E_rj),   dq_r += dP_rj (k_j ⊙ E_rj),
///         dk_j += (β_r dA_rj k_r + dP_rj q_r) ⊙ E_rj                                (fla: chunk_bwd_dqkwg)
///   1'. Γ_r = γ_0 + … + γ_r:   dγ_t = Σ_{r ≥ t in t's chunk} dΓ_r. Every q_r, k_r of the chunk enters multiplied by
///       exp(+Γ_r) (q_r, K̃_r, A's row r) or exp(−Γ_r) (A's and P's column r, k̄_r), and S by exp(Γ_{n−1}), so dΓ collects,
///       as each step above meets them:
///         6': dΓ_{n−1} += exp Γ_{n−1} ⊙ rowsum(S ∘ dS_next);   t = k_j ⊙ exp(Γ_{n−1} − Γ_j) ⊙ (dS_next u_j):
///             dΓ_{n−1} += t, dΓ_j −= t  (j &lt; n−1)
///         5': dΓ_r += q_r ⊙ (scale · exp Γ_r ⊙ (S do_r));   3': dΓ_j += K̃_j ⊙ dK̃_j
///         2': t = (β_r dA_rj k_r + dP_rj q_r) ⊙ k_j ⊙ E_rj:   dΓ_r += t, dΓ_j −= t  (j &lt; r)
///       fla sums the same terms as dg = q ⊙ dq − k ⊙ dk (then a reverse cumulative sum within the chunk), which also
///       counts the terms at j = r (and j = n−1 in step 6), whose decay exp(Γ_r − Γ_r) = 1 has no gradient: they cancel
///       in exact arithmetic, but each is of the size of the undecayed scores, so under strong gates (exp(−20) per step)
///       their rounding outweighs dγ itself. Here they are never added.
/// </code>
/// Per-value β: as in the forward, each value column runs on its own, and dq, dk and dΓ are summed over the columns.
/// </summary>
internal static partial class WyChunkwise
{
    /// <summary>Step 5 is not run by the backward pass: its outputs go nowhere.</summary>
    private static readonly RowBlock s_noOutputs = RowBlock.Zeros(0, 0);

    /// <summary>
    /// The backward pass of one (sequence, value head) pair: dq, dk, dv, dβ written, dS (dfinal_state in) left as
    /// dinitial_state, and dγ_t handed to <paramref name="decayGradient"/> (null with no decay).
    /// </summary>
    public static void ChunkedBackward(Head head, DeltaOptions options, LogDecay? decay, LogDecayGradient? decayGradient)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), β = head.Rows("beta");
        RowBlock dk = head.Rows("dk"), dv = head.Rows("dv"), dβ = head.Rows("dbeta");
        int length = head.T, width = head["K"], values = head["V"];
        RowBlock dO = head.OptionalRows("do") ?? RowBlock.Zeros(length, values);
        RowBlock S = head.InitialState(), dS = head.StateGradient(); // S is stepped by pass 1
        int chunk = Math.Min(options.ChunkSize, Math.Max(length, 1));
        var keys = new KeyGradients(head.Rows("dq"), dk, RowBlock.Zeros(length, width));
        if (β.Width == 1)
        {
            ColumnsBackward(new Pair(q, k, v, β, S, s_noOutputs, options.Scale), new ColumnGradients(dO, dS, dv, dβ), keys, decay,
                new Workspace(chunk, width, values), new BackwardWorkspace(chunk, width, values, length));
        }
        else
        {
            // Per-value β: each value column c is its own delta rule with β[:, c].
            var work = new Workspace(chunk, width, 1);
            var back = new BackwardWorkspace(chunk, width, 1, length);
            RowBlock vColumn = RowBlock.Zeros(length, 1), βColumn = RowBlock.Zeros(length, 1), doColumn = RowBlock.Zeros(length, 1);
            RowBlock dvColumn = RowBlock.Zeros(length, 1), dβColumn = RowBlock.Zeros(length, 1);
            RowBlock sColumn = RowBlock.Zeros(width, 1), dSColumn = RowBlock.Zeros(width, 1);
            var column = new Pair(q, k, vColumn, βColumn, sColumn, s_noOutputs, options.Scale);
            var gradients = new ColumnGradients(doColumn, dSColumn, dvColumn, dβColumn);
            for (int c = 0; c < values; c++)
            {
                for (int t = 0; t < length; t++)
                {
                    (vColumn[t][0], βColumn[t][0], doColumn[t][0], dvColumn[t][0], dβColumn[t][0]) = (v[t][c], β[t][c], dO[t][c], 0, 0);
                }
                for (int d = 0; d < width; d++)
                {
                    (sColumn[d][0], dSColumn[d][0]) = (S[d][c], dS[d][c]);
                }
                ColumnsBackward(column, gradients, keys, decay, work, back);
                for (int t = 0; t < length; t++)
                {
                    (dv[t][c], dβ[t][c]) = (dvColumn[t][0], dβColumn[t][0]);
                }
                for (int d = 0; d < width; d++)
                {
                    dS[d][c] = dSColumn[d][0];
                }
            }
        }
        if (decay is not null && decayGradient is not null)
        {
            DecayBackward(keys.DΓ, chunk, decayGradient);
        }
    }

    /// <summary>
    /// The gradients of one run over value columns: do [L x V'] in, dS [K x V'] (dS_T in, dS_0 out), dv [L x V'] and
    /// dβ [L x 1] written (both start at zero).
    /// </summary>
    private sealed record ColumnGradients(RowBlock DO, RowBlock DS, RowBlock DV, RowBlock DBeta);

    /// <summary>The gradients summed over the value columns: dq, dk and dΓ (of the cumulative log decays, chunk by chunk).</summary>
    private sealed record KeyGradients(RowBlock DQ, RowBlock DK, RowBlock DΓ);

    /// <summary>The backward pass's scratch: the state entering every chunk, u of every step, and the per-chunk gradients.</summary>
    private sealed class BackwardWorkspace(int chunk, int dk, int dv, int length)
    {
        public RowBlock[] States { get; } =
            Enumerable.Range(0, (length + chunk - 1) / chunk).Select(_ => RowBlock.AlignedZeros(dk, dv)).ToArray();
        public RowBlock NewValues { get; } = RowBlock.Zeros(length, dv); // u
        public RowBlock DU { get; } = RowBlock.AlignedZeros(chunk, dv);
        public RowBlock DW { get; } = RowBlock.AlignedZeros(chunk, dk);
        public RowBlock KDecayed { get; } = RowBlock.AlignedZeros(chunk, dk); // K̃
        public double[] DP { get; } = new double[chunk * chunk];
        public double[] DT { get; } = new double[chunk * chunk];
        public double[] X { get; } = new double[chunk * chunk];
        public double[] DA { get; } = new double[chunk * chunk];
        public double[] E { get; } = new double[dk]; // decay factors of one row
        public double[] Y { get; } = new double[dk];
        public double[] Z { get; } = new double[dk];
    }

    /// <summary>Pass 1 (the entering states and u), then pass 2 (the chunks in reverse), on value columns sharing one β per step.</summary>
    private static void ColumnsBackward(Pair x, ColumnGradients g, KeyGradients keys, LogDecay? decay, Workspace work, BackwardWorkspace back)
    {
        var chunks = Chunks.Of(x.Q.Count, work.C).ToArray();
        for (int i = 0; i < chunks.Length; i++)
        {
            var (start, end) = chunks[i];
            Copy(x.S, back.States[i]);
            var chunk = new Chunk(x, work, decay, start, end - start);
            chunk.WyRepresentation();
            chunk.NewValues();
            for (int r = 0; r < chunk.N; r++)
            {
                work.U[r].CopyTo(back.NewValues[start + r]);
            }
            chunk.NextState();
        }
        for (int i = chunks.Length - 1; i >= 0; i--)
        {
            var (start, end) = chunks[i];
            var chunk = new Chunk(x with { S = back.States[i] }, work, decay, start, end - start);
            chunk.WyRepresentation();                                // steps 1–3 again
            chunk.NextStateBackward(g, keys, back);                  // 6'
            chunk.OutputsBackward(g, keys, back);                    // 5'
            chunk.NewValuesBackward(g, back);                        // 4'
            chunk.WyRepresentationBackward(g, keys, back);           // 3', 2'
        }
    }

    private static void Copy(RowBlock from, RowBlock to)
    {
        for (int a = 0; a < from.Count; a++)
        {
            from[a].CopyTo(to[a]);
        }
    }

    /// <summary>1'. dγ_t = Σ_{r ≥ t in t's chunk} dΓ_r, handed to <paramref name="decayGradient"/> step by step.</summary>
    private static void DecayBackward(RowBlock dΓ, int chunk, LogDecayGradient decayGradient)
    {
        var dγ = new double[dΓ.Width];
        foreach (var (start, end) in Chunks.Of(dΓ.Count, chunk))
        {
            Array.Clear(dγ);
            for (int t = end - 1; t >= start; t--)
            {
                VectorKernels.AddTo(dΓ[t], dγ);
                decayGradient(t, dγ);
            }
        }
    }

    private readonly partial record struct Chunk
    {
        /// <summary>
        /// 6'. Through S_next = Diag(exp Γ_{n−1}) S + Σ_j k̄_j u_jᵀ: du_j = dSᵀ k̄_j, dk_j, dΓ, then dS ← Diag(exp Γ_{n−1}) dS.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NextStateBackward(ColumnGradients g, KeyGradients keys, BackwardWorkspace back)
        {
            RowBlock Γ = Work.Γ, S = X.S, dS = g.DS;
            Span<double> Γlast = Γ[N - 1], dΓlast = keys.DΓ[Start + N - 1], e = back.E;
            VectorKernels.Exp(Γlast, e);
            for (int d = 0; !NoDecay && d < dS.Count; d++)
            {
                dΓlast[d] += e[d] * VectorKernels.Dot(S[d], dS[d]);       // dΓ_{n−1} += exp Γ_{n−1} ⊙ rowsum(S ∘ dS)
            }
            for (int j = 0; j < N; j++)
            {
                VectorKernels.ExpDifference(Γlast, Γ[j], e);              // exp(Γ_{n−1} − Γ_j)
                Span<double> kj = K(j), uj = back.NewValues[Start + j], duj = back.DU[j], dkj = keys.DK[Start + j], dΓj = keys.DΓ[Start + j];
                duj.Clear();
                for (int d = 0; d < dS.Count; d++)
                {
                    VectorKernels.Axpy(e[d] * kj[d], dS[d], duj);          // du_j = dSᵀ k̄_j
                    double dkjd = e[d] * VectorKernels.Dot(dS[d], uj);     // dk_j += exp(Γ_{n−1} − Γ_j) ⊙ (dS u_j)
                    dkj[d] += dkjd;
                    if (!NoDecay && j < N - 1)
                    {
                        dΓlast[d] += kj[d] * dkjd;                         // t = k_j ⊙ …: dΓ_{n−1} += t, dΓ_j −= t
                        dΓj[d] -= kj[d] * dkjd;
                    }
                }
            }
            VectorKernels.Exp(Γlast, e);
            for (int d = 0; d < dS.Count; d++)
            {
                VectorKernels.Scale(e[d], dS[d]);                          // dS ← Diag(exp Γ_{n−1}) dS
            }
        }

        /// <summary>5'. Through o_r: dS and dq_r through the state read, dP_rj and du_j through the intra-chunk scores.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void OutputsBackward(ColumnGradients g, KeyGradients keys, BackwardWorkspace back)
        {
            RowBlock Γ = Work.Γ, S = X.S, dS = g.DS;
            Span<double> e = back.E;
            int C = Work.C;
            for (int r = 0; r < N; r++)
            {
                Span<double> dOr = g.DO[Start + r], qr = Q(r), dqr = keys.DQ[Start + r], dΓr = keys.DΓ[Start + r];
                VectorKernels.Exp(Γ[r], e);
                for (int d = 0; d < S.Count; d++)
                {
                    double scaled = X.Scale * e[d], dqrd = scaled * VectorKernels.Dot(S[d], dOr);
                    dqr[d] += dqrd;                                        // dq_r += scale exp Γ_r ⊙ (S do_r)
                    dΓr[d] += NoDecay ? 0 : qr[d] * dqrd;                  // dΓ_r += q_r ⊙ …
                    VectorKernels.Axpy(scaled * qr[d], dOr, dS[d]);        // dS += scale (exp Γ_r ⊙ q_r) do_rᵀ
                }
                for (int j = 0; j <= r; j++)
                {
                    back.DP[r * C + j] = X.Scale * VectorKernels.Dot(dOr, back.NewValues[Start + j]);   // dP_rj = scale do_r·u_j
                    VectorKernels.Axpy(X.Scale * DecayedDot(qr, K(j), r, j), dOr, back.DU[j]);         // du_j += scale P_rj do_r
                }
            }
        }

        /// <summary>4'. Through u = U − W S: dU = du, dW_r = −S du_r, dS −= Wᵀ du.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NewValuesBackward(ColumnGradients g, BackwardWorkspace back)
        {
            RowBlock W = Work.W, S = X.S, dS = g.DS;
            for (int r = 0; r < N; r++)
            {
                Span<double> dur = back.DU[r], Wr = W[r], dWr = back.DW[r];
                for (int d = 0; d < S.Count; d++)
                {
                    dWr[d] = -VectorKernels.Dot(S[d], dur);                // dW_r = −S du_r
                    VectorKernels.Axpy(-Wr[d], dur, dS[d]);                // dS −= W_r du_rᵀ
                }
            }
        }

        /// <summary>
        /// 3'. Through W = T K̃ and U = T V: dT, dv, dk and dΓ through K̃. 2'. Through T = (I + A)⁻¹ diag(β): X, dβ, dA;
        /// then through A and the scores P: dβ, dq, dk, dΓ.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void WyRepresentationBackward(ColumnGradients g, KeyGradients keys, BackwardWorkspace back)
        {
            int n = N, C = Work.C;
            RowBlock Γ = Work.Γ, kDecayed = back.KDecayed, dW = back.DW, dU = back.DU;
            double[] a = Work.A, tMatrix = Work.T, dT = back.DT, x = back.X, dA = back.DA, dP = back.DP;
            Span<double> e = back.E, y = back.Y, z = back.Z;

            // 3'. dT_rj = dW_r·K̃_j + dU_r·v_j (j ≤ r, zero above); dv_j = Σ_{r≥j} T_rj dU_r; dK̃_j = Σ_{r≥j} T_rj dW_r.
            for (int j = 0; j < n; j++)
            {
                VectorKernels.Exp(Γ[j], e);
                VectorKernels.Multiply(e, K(j), kDecayed[j]);
            }
            for (int r = 0; r < n; r++)
            {
                Span<double> dTr = dT.AsSpan(r * C, n);
                dTr.Clear();
                for (int j = 0; j <= r; j++)
                {
                    dTr[j] = VectorKernels.Dot(dW[r], kDecayed[j]) + VectorKernels.Dot(dU[r], X.V[Start + j]);
                }
            }
            for (int j = 0; j < n; j++)
            {
                y.Clear();
                for (int r = j; r < n; r++)
                {
                    double trj = tMatrix[r * C + j];
                    VectorKernels.Axpy(trj, dW[r], y);
                    VectorKernels.Axpy(trj, dU[r], g.DV[Start + j]);
                }
                if (!NoDecay)
                {
                    VectorKernels.Multiply(kDecayed[j], y, z);
                    VectorKernels.AddTo(z, keys.DΓ[Start + j]);             // dΓ_j += K̃_j ⊙ dK̃_j
                }
                VectorKernels.Exp(Γ[j], e);
                VectorKernels.Multiply(e, y, y);
                VectorKernels.AddTo(y, keys.DK[Start + j]);                 // dk_j += exp Γ_j ⊙ dK̃_j
            }

            // 2'. X = (I + A)⁻ᵀ dT, rows from the last: X_r = dT_r − Σ_{i>r} A_ir X_i; dβ_j += X_jj; dA_rj = −X_r·T_j (j < r).
            for (int r = n - 1; r >= 0; r--)
            {
                Span<double> xr = x.AsSpan(r * C, n);
                dT.AsSpan(r * C, n).CopyTo(xr);
                for (int i = r + 1; i < n; i++)
                {
                    VectorKernels.Axpy(-a[i * C + r], x.AsSpan(i * C, n), xr);
                }
            }
            for (int r = 0; r < n; r++)
            {
                g.DBeta[Start + r][0] += x[r * C + r];
                for (int j = 0; j < r; j++)
                {
                    dA[r * C + j] = -VectorKernels.Dot(x.AsSpan(r * C, j + 1), tMatrix.AsSpan(j * C, j + 1)); // T_j is zero past j
                }
            }

            // Through A_rj = β_r Σ_d k_r k_j E_rj (j < r) and P_rj = Σ_d q_r k_j E_rj (j ≤ r), E_rj = exp(Γ_r − Γ_j).
            for (int r = 0; r < n; r++)
            {
                Span<double> qr = Q(r), kr = K(r), dqr = keys.DQ[Start + r], dkr = keys.DK[Start + r], dΓr = keys.DΓ[Start + r];
                for (int j = 0; j <= r; j++)
                {
                    Span<double> kj = K(j);
                    if (!NoDecay)
                    {
                        VectorKernels.ExpDifference(Γ[r], Γ[j], e);
                        VectorKernels.Multiply(kj, e, z);
                    }
                    ReadOnlySpan<double> zj = NoDecay ? kj : z;         // k_j ⊙ E_rj
                    double dArj = j < r ? dA[r * C + j] : 0, α = β(r) * dArj, π = dP[r * C + j];
                    g.DBeta[Start + r][0] += dArj * VectorKernels.Dot(kr, zj); // dβ_r += dA_rj Σ_d k_r k_j E_rj
                    VectorKernels.Axpy(π, zj, dqr);                          // dq_r += dP_rj (k_j ⊙ E_rj)
                    VectorKernels.Axpy(α, zj, dkr);                          // dk_r += β_r dA_rj (k_j ⊙ E_rj)
                    VectorKernels.Multiply(kr, α, y);
                    VectorKernels.Axpy(π, qr, y);
                    if (!NoDecay)
                    {
                        VectorKernels.Multiply(y, e, y);
                    }
                    VectorKernels.AddTo(y, keys.DK[Start + j]);              // dk_j += (β_r dA_rj k_r + dP_rj q_r) ⊙ E_rj
                    if (!NoDecay && j < r)
                    {
                        VectorKernels.Multiply(y, kj, y);                    // t = (…) ⊙ k_j ⊙ E_rj: dΓ_r += t, dΓ_j −= t
                        VectorKernels.AddTo(y, dΓr);
                        VectorKernels.Axpy(-1, y, keys.DΓ[Start + j]);
                    }
                }
            }
        }
    }
}
