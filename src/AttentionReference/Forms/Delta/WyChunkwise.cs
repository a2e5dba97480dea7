using System.Runtime.CompilerServices;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// The chunkwise delta rule with the WY / UT-transform representation (Yang et al. 2024, "Parallelizing Linear
/// Transformers with the Delta Rule over Sequence Length", arXiv 2406.06484, §3), with per-key-channel decay (Gated
/// DeltaNet, arXiv 2412.06464, §3.3; KDA, Kimi Linear 2025), shared by the <c>chunked</c> variants of
/// <see cref="DeltaRule"/> (no decay), <see cref="GatedDeltaRule"/> (the decay g_t broadcast over K) and
/// <see cref="Kda"/> (the decay gk_t ∈ R^K).
/// <code>
/// The recurrence (one head; S is K x V; D_t = Diag(exp(γ_t)), γ_t ∈ R^K the log decay of step t):
///   S_t = (I − β_t k_t k_tᵀ) D_t S_{t−1} + β_t k_t v_tᵀ          o_t = scale · S_tᵀ q_t
/// Write it with the "new value" u_t (fla's v_new):
///   u_t = β_t (v_t − (D_t S_{t−1})ᵀ k_t),     S_t = D_t S_{t−1} + k_t u_tᵀ
///
/// Legend, inside one chunk of n ≤ C steps r = 0..n−1 that starts from the state S (the state before step 0):
///   Γ_r      = γ_0 + … + γ_r            cumulative log decay from the chunk start, inclusive   (K-vector)
///   Γ_r − Γ_j = γ_{j+1} + … + γ_r ≤ 0    decay from step j to step r: computed as a difference of log sums,
///                                       never as a quotient of products, so strong gates only underflow to 0
///   A        [n x n]  A_rj = β_r Σ_d k_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])   for j &lt; r, 0 on and above the diagonal
///   T        [n x n]  T = (I + A)⁻¹ diag(β)                                 (the UT transform)
///   K̃        [n x K]  K̃_r = exp(Γ_r) ⊙ k_r                                 k decayed from the chunk start
///   W = T K̃  [n x K]  U = T V [n x V]                                       (the WY representation)
///
/// Unrolling S_r = exp(Γ_r) ⊙ S + Σ_{j≤r} Diag(exp(Γ_r − Γ_j)) k_j u_jᵀ inside u_r gives
///   u_r + Σ_{j&lt;r} A_rj u_j = β_r v_r − β_r S ᵀ K̃_r,   i.e.   (I + A) u = diag(β) (V − K̃ S),   u = U − W S.
///
/// Steps, per chunk:
///   1. Γ: cumulative log decay from the chunk start.
///   2. A, then T = (I + A)⁻¹ diag(β) by forward substitution: T_r = β_r e_r − Σ_{j&lt;r} A_rj T_j.
///   3. W = T K̃ and U = T V.
///   4. u = U − W S: the new values, now that the chunk's starting state is known.
///   5. Outputs: o_r = scale · ( (q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [Σ_d q_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])] u_j ).
///      (inter-chunk part through S, intra-chunk part through the masked decayed scores)
///   6. Next state: S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) k_j u_jᵀ.
/// </code>
/// With no decay (γ = 0) every exponential is exactly 1 and this is DeltaNet's chunkwise form (fla's
/// <c>delta_rule_chunkwise</c> in <c>fla/ops/delta_rule/naive.py</c>); with decay it is <c>naive_chunk_kda</c> of
/// <c>fla/ops/kda/naive.py</c>. Any chunk size C ≥ 1 works, and the last chunk may be shorter (C need not divide T).
///
/// Per-value β (β_t ∈ R^V, fla's <c>beta [B,T,HV,V]</c>): the update reads S_t = D_t S_{t−1} − k_t (β_t ⊙ ((D_t
/// S_{t−1})ᵀ k_t − v_t))ᵀ, so value column c of the state evolves on its own as a delta rule with the scalar β_t[c]:
/// S_t[:,c] = (I − β_t[c] k_t k_tᵀ) D_t S_{t−1}[:,c] + β_t[c] k_t v_t[c]. A, T, W and U then differ per column, so
/// the chunked form runs the steps above once per value column (V-wide work becomes V runs of width 1: exact, slower).
/// </summary>
internal static class WyChunkwise
{
    /// <summary>
    /// Runs one head chunk by chunk. <paramref name="logDecay"/> is γ as [L x K] (null: no decay).
    /// Returns o [L x V] (scaled) and the final state [K x V].
    /// </summary>
    public static (double[] O, double[] S) Run(DeltaHead head, double[]? logDecay, int chunkSize)
    {
        int length = head.Length, dk = head.Dk, dv = head.Dv;
        var o = new double[length * dv];
        var s = (double[])head.InitialState.Clone();
        if (!head.BetaPerValue)
        {
            RunColumns(length, dk, dv, head.Q, head.K, head.V, head.Beta, logDecay, s, o, head.Scale, chunkSize);
            return (o, s);
        }
        // Per-value β: each value column c is its own delta rule with β[:, c].
        var vColumn = new double[length];
        var betaColumn = new double[length];
        var sColumn = new double[dk];
        var oColumn = new double[length];
        for (int c = 0; c < dv; c++)
        {
            for (int t = 0; t < length; t++)
            {
                vColumn[t] = head.V[t * dv + c];
                betaColumn[t] = head.Beta[t * dv + c];
            }
            for (int d = 0; d < dk; d++)
            {
                sColumn[d] = s[d * dv + c];
            }
            RunColumns(length, dk, 1, head.Q, head.K, vColumn, betaColumn, logDecay, sColumn, oColumn, head.Scale, chunkSize);
            for (int t = 0; t < length; t++)
            {
                o[t * dv + c] = oColumn[t];
            }
            for (int d = 0; d < dk; d++)
            {
                s[d * dv + c] = sColumn[d];
            }
        }
        return (o, s);
    }

    /// <summary>
    /// The numbered steps on value columns sharing one β per step: q, k [L x K], v [L x V], β [L], γ [L x K] or null;
    /// s [K x V] is the initial state in and the final state out; o [L x V] receives the outputs. Every matrix is
    /// row-major and every product is written as sums of contiguous rows weighted by scalars (Axpy) or as dot
    /// products of contiguous rows, each in a fixed order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunColumns(int length, int dk, int dv, double[] q, double[] k, double[] v, double[] beta,
        double[]? logDecay, double[] s, double[] o, double scale, int chunkSize)
    {
        var gamma = new double[chunkSize * dk];     // Γ
        var a = new double[chunkSize * chunkSize];  // A
        var tMatrix = new double[chunkSize * chunkSize]; // T
        var w = new double[chunkSize * dk];         // W
        var u = new double[chunkSize * dv];         // U, then u
        var kDecayed = new double[dk];              // K̃_j or q_r ⊙ exp(Γ_r) (one row at a time)
        var scratch = new double[dk];

        for (int start = 0; start < length; start += chunkSize)
        {
            int n = Math.Min(chunkSize, length - start);
            Span<double> Q(int r) => q.AsSpan((start + r) * dk, dk);   // rows of this chunk, r = 0..n−1
            Span<double> K(int r) => k.AsSpan((start + r) * dk, dk);
            Span<double> Vr(int r) => v.AsSpan((start + r) * dv, dv);
            Span<double> Γ(int r) => gamma.AsSpan(r * dk, dk);
            Span<double> S(int d) => s.AsSpan(d * dv, dv);
            Span<double> Wr(int r) => w.AsSpan(r * dk, dk);
            Span<double> Ur(int r) => u.AsSpan(r * dv, dv);
            Span<double> Tr(int r) => tMatrix.AsSpan(r * chunkSize, n);

            // 1. Γ_r = γ_0 + … + γ_r, relative to the chunk start.
            for (int r = 0; r < n; r++)
            {
                if (logDecay is null)
                {
                    Γ(r).Clear();
                }
                else
                {
                    logDecay.AsSpan((start + r) * dk, dk).CopyTo(Γ(r));
                    if (r > 0)
                    {
                        VectorKernels.Axpy(1, Γ(r - 1), Γ(r));
                    }
                }
            }

            // 2. A_rj = β_r Σ_d k_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d]) for j < r; T = (I + A)⁻¹ diag(β) row by row:
            //    T_r = β_r e_r − Σ_{j<r} A_rj T_j (rows of T, j in increasing order).
            for (int r = 0; r < n; r++)
            {
                for (int j = 0; j < r; j++)
                {
                    a[r * chunkSize + j] = beta[start + r] * DecayedDot(K(r), K(j), Γ(r), Γ(j), logDecay is null, scratch);
                }
            }
            for (int r = 0; r < n; r++)
            {
                Span<double> tr = Tr(r);
                tr.Clear();
                tr[r] = beta[start + r];
                for (int j = 0; j < r; j++)
                {
                    VectorKernels.Axpy(-a[r * chunkSize + j], Tr(j), tr);
                }
            }

            // 3. W = T K̃ with K̃_j = exp(Γ_j) ⊙ k_j, and U = T V: W_r = Σ_{j≤r} T_rj K̃_j, U_r = Σ_{j≤r} T_rj v_j.
            Array.Clear(w);
            Array.Clear(u);
            for (int j = 0; j < n; j++)
            {
                VectorKernels.Exp(Γ(j), kDecayed);
                VectorKernels.Multiply(kDecayed, K(j), kDecayed);
                for (int r = j; r < n; r++)
                {
                    double trj = tMatrix[r * chunkSize + j];
                    VectorKernels.Axpy(trj, kDecayed, Wr(r));
                    VectorKernels.Axpy(trj, Vr(j), Ur(r));
                }
            }

            // 4. u = U − W S: u_r −= Σ_d W_rd S_d (rows of S).
            for (int r = 0; r < n; r++)
            {
                for (int d = 0; d < dk; d++)
                {
                    VectorKernels.Axpy(-w[r * dk + d], S(d), Ur(r));
                }
            }

            // 5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [Σ_d q_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])] u_j).
            for (int r = 0; r < n; r++)
            {
                Span<double> oRow = o.AsSpan((start + r) * dv, dv);
                oRow.Clear();
                VectorKernels.Exp(Γ(r), kDecayed);
                VectorKernels.Multiply(kDecayed, Q(r), kDecayed);
                for (int d = 0; d < dk; d++)
                {
                    VectorKernels.Axpy(kDecayed[d], S(d), oRow);
                }
                for (int j = 0; j <= r; j++)
                {
                    double score = DecayedDot(Q(r), K(j), Γ(r), Γ(j), logDecay is null, scratch);
                    VectorKernels.Axpy(score, Ur(j), oRow);
                }
                VectorKernels.Scale(scale, oRow);
            }

            // 6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) k_j u_jᵀ: rows S_d scaled, then
            //    S_d += (exp(Γ_{n−1}[d] − Γ_j[d]) k_j[d]) u_j for j = 0..n−1 in order.
            Span<double> Γlast = Γ(n - 1);
            VectorKernels.Exp(Γlast, kDecayed);
            for (int d = 0; d < dk; d++)
            {
                VectorKernels.Scale(kDecayed[d], S(d));
            }
            for (int j = 0; j < n; j++)
            {
                VectorKernels.ExpDifference(Γlast, Γ(j), kDecayed);
                VectorKernels.Multiply(kDecayed, K(j), kDecayed);
                for (int d = 0; d < dk; d++)
                {
                    VectorKernels.Axpy(kDecayed[d], Ur(j), S(d));
                }
            }
        }
    }

    /// <summary>Σ_d x[d] y[d] exp(Γ_r[d] − Γ_j[d]) for rows x, y at chunk positions with cumulative decays Γ_r, Γ_j.</summary>
    private static double DecayedDot(Span<double> x, Span<double> y, Span<double> Γr, Span<double> Γj, bool noDecay, double[] scratch) =>
        noDecay ? VectorKernels.Dot(x, y) : VectorKernels.DecayedDot(x, y, Γr, Γj, scratch);
}
