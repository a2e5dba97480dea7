using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// The backward pass of the DPLR chunkwise form (rwkv7's <c>chunked</c> variant), as fla's chunk_dplr_bwd computes it: the
/// states are recomputed chunk by chunk, then each chunk's gradients follow DplrChunkwise.cs's numbered steps in reverse.
/// Symbols as in DplrChunkwise.cs (Γ, Γ⁻, A_ab, A_ak, T, Ã, U, W, w; n the chunk's length, S the state entering it).
/// <code>
/// Pass 1, forward over the chunks (fla: chunk_dplr_fwd_h): steps 1–4 and 6 give the state entering every chunk and the
///   values w the low-rank term writes (fla's v_new); the states are kept per chunk, not per step.
/// Pass 2, the chunks in reverse, dS = dfinal_state entering the last one (fla: chunk_dplr_bwd_dhu carries dh back):
///   recompute steps 1–3 from the chunk's entering state (fla: recompute of w, u), then
///   6'. S_next = Diag(exp Γ_{n−1}) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) (k_j v_jᵀ + b_j w_jᵀ),  dS = dS_next,
///       k̄_j, b̄_j = exp(Γ_{n−1} − Γ_j) ⊙ k_j, b_j:
///         dv_j += dSᵀ k̄_j,   dw_j = dSᵀ b̄_j,   dk_j += exp(Γ_{n−1} − Γ_j) ⊙ (dS v_j),   db_j += exp(Γ_{n−1} − Γ_j) ⊙ (dS w_j),
///         then dS ← Diag(exp Γ_{n−1}) dS
///   5'. o_r = scale · ((exp Γ_r ⊙ q_r)ᵀ S + Σ_{j≤r} Pk_rj v_j + Pb_rj w_j),  Pk_rj, Pb_rj = Σ_d q_r[d] (k_j, b_j)[d] E_rj[d],
///       E_rj = exp(Γ_r − Γ_j):
///         dS += scale · (exp Γ_r ⊙ q_r) do_rᵀ,   dq_r += scale · exp Γ_r ⊙ (S do_r),
///         dPk_rj = scale · do_r·v_j,  dPb_rj = scale · do_r·w_j,   dv_j += scale · Pk_rj do_r,   dw_j += scale · Pb_rj do_r,
///         dq_r += (dPk_rj k_j + dPb_rj b_j) ⊙ E_rj,   dk_j += dPk_rj q_r ⊙ E_rj,   db_j += dPb_rj q_r ⊙ E_rj
///   4'. w = U + W S:   dU = dw,   dW_r = S dw_r,   dS += Wᵀ dw                    (dS is now dS entering the chunk)
///   3'. U = T (A_ak V), W = T Ã:   dT_rj = dU_r·(A_ak V)_j + dW_r·Ã_j (j ≤ r),   d(A_ak V)_j = Σ_{r≥j} T_rj dU_r,
///         dÃ_j = Σ_{r≥j} T_rj dW_r,   da_j += exp Γ⁻_j ⊙ dÃ_j;
///       (A_ak V)_r = Σ_{j&lt;r} A_ak[r,j] v_j:   dA_ak[r,j] = d(A_ak V)_r·v_j,   dv_j += A_ak[r,j] d(A_ak V)_r
///   2'. T = (I − A_ab)⁻¹:   dA_ab = Tᵀ dT Tᵀ on the strictly lower triangle;
///       then through A_ab[r,j], A_ak[r,j] = Σ_d a_r[d] (b_j, k_j)[d] E'_rj[d] (j &lt; r), E'_rj = exp(Γ⁻_r − Γ_j):
///         da_r += (dA_ab[r,j] b_j + dA_ak[r,j] k_j) ⊙ E'_rj,   db_j += dA_ab[r,j] a_r ⊙ E'_rj,   dk_j += dA_ak[r,j] a_r ⊙ E'_rj
///   1'. Γ_r = gk_0 + … + gk_r, Γ⁻_r = Γ_{r−1} (Γ⁻_0 = 0):   dgk_t = Σ_{r ≥ t in t's chunk} dΓ_r, where dΓ collects, as each
///       step above meets them, the terms of every exp(±Γ) and exp(Γ⁻) factor:
///         6': dΓ_{n−1} += exp Γ_{n−1} ⊙ rowsum(S ∘ dS_next);   t = k_j ⊙ (dk_j's term) + b_j ⊙ (db_j's term):
///             dΓ_{n−1} += t, dΓ_j −= t  (j &lt; n−1)
///         5': dΓ_r += q_r ⊙ (scale · exp Γ_r ⊙ (S do_r));   t = q_r ⊙ (dq_r's term from P_rj):  dΓ_r += t, dΓ_j −= t  (j &lt; r)
///         3': dΓ⁻_j += Ã_j ⊙ dÃ_j;   2': t = a_r ⊙ (da_r's term from A_rj):  dΓ⁻_r += t, dΓ_j −= t  (j &lt; r − 1)
///       and dΓ⁻_r is added to dΓ_{r−1}. The terms whose decay is exp(0) (j = r in P, j = r − 1 in A, j = n − 1 in
///       step 6) have none: they are never added (summed as q ⊙ dq − k ⊙ dk − …, they would cancel only to rounding, of the
///       size of the undecayed scores, which under strong gates outweighs dgk itself).
/// </code>
/// </summary>
internal static partial class DplrChunkwise
{
    /// <summary>Step 5 is not run by the backward pass: its outputs go nowhere.</summary>
    private static readonly RowBlock s_noOutputs = RowBlock.Zeros(0, 0);

    /// <summary>
    /// The backward pass of one (sequence, head) pair: dq, dk, dv, da, db, dgk written, dS (dfinal_state in) left as
    /// dinitial_state.
    /// </summary>
    public static void ChunkedBackward(Head head, double scale, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(head);
        int length = head.T, width = head["K"], values = head["V"];
        var x = new Pair(head.Rows("q"), head.Rows("k"), head.Rows("v"), head.Rows("a"), head.Rows("b"), head.Rows("gk"), head.InitialState(),
            s_noOutputs, scale);
        var g = new PairGradients(head.OptionalRows("do") ?? RowBlock.Zeros(length, values), head.StateGradient(), head.Rows("dq"),
            head.Rows("dk"), head.Rows("dv"), head.Rows("da"), head.Rows("db"), RowBlock.Zeros(length, width));
        var work = new Workspace(Math.Min(chunkSize, Math.Max(length, 1)), width, values);
        var back = new BackwardWorkspace(work.C, width, values, length);
        var chunks = Chunks.Of(length, work.C).ToArray();
        for (int i = 0; i < chunks.Length; i++)
        {
            var (start, end) = chunks[i];
            Copy(x.S, back.States[i]);
            var chunk = new Chunk(x, work, start, end - start);
            chunk.WyRepresentation();
            chunk.NewValues();
            work.WNew.AsSpan(0, chunk.N * values).CopyTo(back.WNew.AsSpan(start * values, chunk.N * values));
            chunk.NextState();
        }
        for (int i = chunks.Length - 1; i >= 0; i--)
        {
            var (start, end) = chunks[i];
            var chunk = new Chunk(x with { S = back.States[i] }, work, start, end - start);
            chunk.WyRepresentation();             // steps 1–3 again
            chunk.NextStateBackward(g, back);     // 6'
            chunk.OutputsBackward(g, back);       // 5'
            chunk.NewValuesBackward(g, back);     // 4'
            chunk.WyRepresentationBackward(g, back); // 3', 2'
        }
        // 1'. dgk_t = Σ_{r ≥ t in t's chunk} dΓ_r.
        RowBlock dgk = head.Rows("dgk");
        var dγ = new double[width];
        foreach (var (start, end) in chunks)
        {
            Array.Clear(dγ);
            for (int t = end - 1; t >= start; t--)
            {
                VectorKernels.AddTo(g.DΓ[t], dγ);
                dγ.CopyTo(dgk[t]);
            }
        }
    }

    /// <summary>
    /// The gradients of one pair: do in; dS (dS_T in, dS_0 out); dq, dk, dv, da, db accumulated (from zero); dΓ of the
    /// cumulative log decays, chunk by chunk.
    /// </summary>
    private sealed record PairGradients(RowBlock DO, RowBlock DS, RowBlock DQ, RowBlock DK, RowBlock DV, RowBlock DA, RowBlock DB, RowBlock DΓ);

    /// <summary>The backward pass's scratch: the state entering every chunk, w of every step, and the per-chunk gradients.</summary>
    private sealed class BackwardWorkspace(int chunk, int dk, int dv, int length)
    {
        public RowBlock[] States { get; } = Enumerable.Range(0, (length + chunk - 1) / chunk).Select(_ => RowBlock.AlignedZeros(dk, dv)).ToArray();
        public double[] WNew { get; } = new double[length * dv];   // w of every step
        public RowBlock DWNew { get; } = RowBlock.AlignedZeros(chunk, dv); // dw, then dU
        public RowBlock DW { get; } = RowBlock.AlignedZeros(chunk, dk);
        public RowBlock DAkv { get; } = RowBlock.AlignedZeros(chunk, dv);
        public RowBlock ATilde { get; } = RowBlock.AlignedZeros(chunk, dk); // Ã
        public double[] DT { get; } = new double[chunk * chunk];
        public double[] Y { get; } = new double[chunk * chunk];    // Tᵀ dT
        public double[] DAab { get; } = new double[chunk * chunk];
        public double[] DAak { get; } = new double[chunk * chunk];
        public double[] E { get; } = new double[dk];               // decay factors of one row
        public double[] Y1 { get; } = new double[dk];
        public double[] Z { get; } = new double[dk];
    }

    private static void Copy(RowBlock from, RowBlock to)
    {
        for (int a = 0; a < from.Count; a++)
        {
            from[a].CopyTo(to[a]);
        }
    }

    private readonly partial record struct Chunk
    {
        private Span<double> Gamma(int r) => Work.Gamma.AsSpan(r * Work.Dk, Work.Dk);
        private Span<double> GammaBefore(int r) => Work.GammaBefore.AsSpan(r * Work.Dk, Work.Dk);
        private static Span<double> WNewRow(BackwardWorkspace back, int t, int dv) => back.WNew.AsSpan(t * dv, dv);

        /// <summary>6'. Through S_next: dv_j, dw_j, dk_j, db_j, dΓ; then dS ← Diag(exp Γ_{n−1}) dS.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NextStateBackward(PairGradients g, BackwardWorkspace back)
        {
            int last = N - 1;
            RowBlock S = X.S, dS = g.DS;
            Span<double> Γlast = Gamma(last), dΓlast = g.DΓ[Start + last], e = back.E;
            VectorKernels.Exp(Γlast, e);
            for (int d = 0; d < dS.Count; d++)
            {
                dΓlast[d] += e[d] * VectorKernels.Dot(S[d], dS[d]);       // dΓ_{n−1} += exp Γ_{n−1} ⊙ rowsum(S ∘ dS)
            }
            for (int j = 0; j < N; j++)
            {
                VectorKernels.ExpDifference(Γlast, Gamma(j), e);          // exp(Γ_{n−1} − Γ_j)
                Span<double> kj = X.K[Start + j], bj = X.B[Start + j], vj = X.V[Start + j], wj = WNewRow(back, Start + j, Work.Dv);
                Span<double> dwj = back.DWNew[j], dvj = g.DV[Start + j], dkj = g.DK[Start + j], dbj = g.DB[Start + j], dΓj = g.DΓ[Start + j];
                dwj.Clear();
                for (int d = 0; d < dS.Count; d++)
                {
                    VectorKernels.Axpy(e[d] * kj[d], dS[d], dvj);          // dv_j += dSᵀ k̄_j
                    VectorKernels.Axpy(e[d] * bj[d], dS[d], dwj);          // dw_j = dSᵀ b̄_j
                    double dkjd = e[d] * VectorKernels.Dot(dS[d], vj), dbjd = e[d] * VectorKernels.Dot(dS[d], wj);
                    dkj[d] += dkjd;                                        // dk_j += exp(Γ_{n−1} − Γ_j) ⊙ (dS v_j)
                    dbj[d] += dbjd;                                        // db_j += exp(Γ_{n−1} − Γ_j) ⊙ (dS w_j)
                    if (j < last)
                    {
                        double t = kj[d] * dkjd + bj[d] * dbjd;            // dΓ_{n−1} += t, dΓ_j −= t
                        dΓlast[d] += t;
                        dΓj[d] -= t;
                    }
                }
            }
            VectorKernels.Exp(Γlast, e);
            for (int d = 0; d < dS.Count; d++)
            {
                VectorKernels.Scale(e[d], dS[d]);                          // dS ← Diag(exp Γ_{n−1}) dS
            }
        }

        /// <summary>5'. Through o_r: dS and dq_r through the state read; dq, dk, db, dv, dw and dΓ through the scores Pk, Pb.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void OutputsBackward(PairGradients g, BackwardWorkspace back)
        {
            RowBlock S = X.S, dS = g.DS;
            Span<double> e = back.E, qE = back.Z, y = back.Y1;
            double scale = X.Scale;
            for (int r = 0; r < N; r++)
            {
                Span<double> qr = X.Q[Start + r], dOr = g.DO[Start + r], dqr = g.DQ[Start + r], dΓr = g.DΓ[Start + r], Γr = Gamma(r);
                VectorKernels.Exp(Γr, e);
                for (int d = 0; d < S.Count; d++)
                {
                    double dqrd = scale * e[d] * VectorKernels.Dot(S[d], dOr);
                    dqr[d] += dqrd;                                        // dq_r += scale exp Γ_r ⊙ (S do_r)
                    dΓr[d] += qr[d] * dqrd;                                // dΓ_r += q_r ⊙ …
                    VectorKernels.Axpy(scale * e[d] * qr[d], dOr, dS[d]);  // dS += scale (exp Γ_r ⊙ q_r) do_rᵀ
                }
                for (int j = 0; j <= r; j++)
                {
                    VectorKernels.ExpDifference(Γr, Gamma(j), e);
                    VectorKernels.Multiply(qr, e, qE);                     // q_r ⊙ E_rj
                    Span<double> kj = X.K[Start + j], bj = X.B[Start + j];
                    double pk = VectorKernels.Dot(qE, kj), pb = VectorKernels.Dot(qE, bj);
                    double dpk = scale * VectorKernels.Dot(dOr, X.V[Start + j]), dpb = scale * VectorKernels.Dot(dOr, WNewRow(back, Start + j, Work.Dv));
                    VectorKernels.Axpy(scale * pk, dOr, g.DV[Start + j]);  // dv_j += scale Pk_rj do_r
                    VectorKernels.Axpy(scale * pb, dOr, back.DWNew[j]);    // dw_j += scale Pb_rj do_r
                    VectorKernels.Axpy(dpk, qE, g.DK[Start + j]);          // dk_j += dPk_rj q_r ⊙ E_rj
                    VectorKernels.Axpy(dpb, qE, g.DB[Start + j]);          // db_j += dPb_rj q_r ⊙ E_rj
                    VectorKernels.Multiply(kj, dpk, y);
                    VectorKernels.Axpy(dpb, bj, y);
                    VectorKernels.Multiply(y, e, y);
                    VectorKernels.AddTo(y, dqr);                           // dq_r += (dPk_rj k_j + dPb_rj b_j) ⊙ E_rj
                    if (j < r)
                    {
                        VectorKernels.Multiply(y, qr, y);                  // t = q_r ⊙ …: dΓ_r += t, dΓ_j −= t
                        VectorKernels.AddTo(y, dΓr);
                        VectorKernels.Axpy(-1, y, g.DΓ[Start + j]);
                    }
                }
            }
        }

        /// <summary>4'. Through w = U + W S: dU = dw, dW_r = S dw_r, dS += Wᵀ dw.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NewValuesBackward(PairGradients g, BackwardWorkspace back)
        {
            RowBlock S = X.S, dS = g.DS;
            for (int r = 0; r < N; r++)
            {
                Span<double> dwr = back.DWNew[r], dWr = back.DW[r], Wr = Work.W.AsSpan(r * Work.Dk, Work.Dk);
                for (int d = 0; d < S.Count; d++)
                {
                    dWr[d] = VectorKernels.Dot(S[d], dwr);                 // dW_r = S dw_r
                    VectorKernels.Axpy(Wr[d], dwr, dS[d]);                 // dS += W_r dw_rᵀ
                }
            }
        }

        /// <summary>
        /// 3'. Through U = T (A_ak V) and W = T Ã: dT, d(A_ak V), da and dΓ through Ã, then dA_ak and dv. 2'. Through
        /// T = (I − A_ab)⁻¹: dA_ab; then through A_ab and A_ak: da, db, dk, dΓ.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void WyRepresentationBackward(PairGradients g, BackwardWorkspace back)
        {
            int n = N, C = Work.C, dv = Work.Dv;
            double[] tMatrix = Work.TMatrix, aak = Work.Aak, dT = back.DT, y = back.Y, dAab = back.DAab, dAak = back.DAak;
            RowBlock aTilde = back.ATilde, dU = back.DWNew, dW = back.DW, dAkv = back.DAkv;
            Span<double> e = back.E, y1 = back.Y1, z = back.Z;

            // 3'. dT_rj = dU_r·(A_ak V)_j + dW_r·Ã_j (j ≤ r, zero above); d(A_ak V)_j, dÃ_j = Σ_{r≥j} T_rj (dU_r, dW_r).
            for (int j = 0; j < n; j++)
            {
                VectorKernels.Exp(GammaBefore(j), e);
                VectorKernels.Multiply(e, X.A[Start + j], aTilde[j]);     // Ã_j = exp Γ⁻_j ⊙ a_j
            }
            for (int r = 0; r < n; r++)
            {
                Span<double> dTr = dT.AsSpan(r * C, n);
                dTr.Clear();
                for (int j = 0; j <= r; j++)
                {
                    dTr[j] = VectorKernels.Dot(dU[r], Work.Akv.AsSpan(j * dv, dv)) + VectorKernels.Dot(dW[r], aTilde[j]);
                }
            }
            for (int j = 0; j < n; j++)
            {
                dAkv[j].Clear();
                y1.Clear();
                for (int r = j; r < n; r++)
                {
                    double trj = tMatrix[r * C + j];
                    VectorKernels.Axpy(trj, dU[r], dAkv[j]);
                    VectorKernels.Axpy(trj, dW[r], y1);
                }
                if (j > 0)
                {
                    VectorKernels.Multiply(aTilde[j], y1, z);
                    VectorKernels.AddTo(z, g.DΓ[Start + j - 1]);           // dΓ⁻_j += Ã_j ⊙ dÃ_j, Γ⁻_j = Γ_{j−1}
                }
                VectorKernels.Exp(GammaBefore(j), e);
                VectorKernels.Multiply(e, y1, y1);
                VectorKernels.AddTo(y1, g.DA[Start + j]);                  // da_j += exp Γ⁻_j ⊙ dÃ_j
            }
            for (int r = 0; r < n; r++)
            {
                for (int j = 0; j < r; j++)
                {
                    dAak[r * C + j] = VectorKernels.Dot(dAkv[r], X.V[Start + j]);             // dA_ak[r,j] = d(A_ak V)_r·v_j
                    VectorKernels.Axpy(aak[r * C + j], dAkv[r], g.DV[Start + j]);            // dv_j += A_ak[r,j] d(A_ak V)_r
                }
            }

            // 2'. dA_ab = Tᵀ dT Tᵀ: Y_r = Σ_{i≥r} T_ir dT_i, then dA_ab[r,j] = Y_r·T_j (T_j is zero past j).
            for (int r = 0; r < n; r++)
            {
                Span<double> yr = y.AsSpan(r * C, n);
                yr.Clear();
                for (int i = r; i < n; i++)
                {
                    VectorKernels.Axpy(tMatrix[i * C + r], dT.AsSpan(i * C, n), yr);
                }
            }
            for (int r = 0; r < n; r++)
            {
                for (int j = 0; j < r; j++)
                {
                    dAab[r * C + j] = VectorKernels.Dot(y.AsSpan(r * C, j + 1), tMatrix.AsSpan(j * C, j + 1));
                }
            }

            // Through A_ab[r,j], A_ak[r,j] = Σ_d a_r (b_j, k_j) E'_rj (j < r), E'_rj = exp(Γ⁻_r − Γ_j).
            for (int r = 0; r < n; r++)
            {
                Span<double> ar = X.A[Start + r], dar = g.DA[Start + r];
                for (int j = 0; j < r; j++)
                {
                    double α = dAab[r * C + j], κ = dAak[r * C + j];
                    Span<double> bj = X.B[Start + j], kj = X.K[Start + j];
                    VectorKernels.ExpDifference(GammaBefore(r), Gamma(j), e);
                    VectorKernels.Multiply(ar, e, z);                      // a_r ⊙ E'_rj
                    VectorKernels.Axpy(α, z, g.DB[Start + j]);             // db_j += dA_ab[r,j] a_r ⊙ E'_rj
                    VectorKernels.Axpy(κ, z, g.DK[Start + j]);             // dk_j += dA_ak[r,j] a_r ⊙ E'_rj
                    VectorKernels.Multiply(bj, α, y1);
                    VectorKernels.Axpy(κ, kj, y1);
                    VectorKernels.Multiply(y1, e, y1);
                    VectorKernels.AddTo(y1, dar);                          // da_r += (dA_ab b_j + dA_ak k_j) ⊙ E'_rj
                    if (j < r - 1)
                    {
                        VectorKernels.Multiply(y1, ar, y1);                // t = a_r ⊙ …: dΓ⁻_r (= dΓ_{r−1}) += t, dΓ_j −= t
                        VectorKernels.AddTo(y1, g.DΓ[Start + r - 1]);
                        VectorKernels.Axpy(-1, y1, g.DΓ[Start + j]);
                    }
                }
            }
        }
    }
}
