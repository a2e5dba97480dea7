using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// The chunkwise delta rule with the WY / UT-transform representation (Yang et al. 2024, "Parallelizing Linear
/// Transformers with the Delta Rule over Sequence Length", arXiv 2406.06484, §3), with per-key-channel decay (Gated
/// DeltaNet, arXiv 2412.06464, §3.3; KDA, Kimi Linear 2025), shared by the <c>chunked</c> variants of
/// <see cref="DeltaRule"/> (no decay), <see cref="GatedDeltaRule"/> (the decay g_t on every key channel) and
/// <see cref="Kda"/> (the decay gk_t ∈ R^K): the three differ only in how γ_t is filled (<see cref="LogDecay"/>).
/// <code>
/// The recurrence (one head; S is K x V; D_t = Diag(exp(γ_t)), γ_t ∈ R^K the log decay of step t):
///   S_t = (I − β_t k_t k_tᵀ) D_t S_{t−1} + β_t k_t v_tᵀ          o_t = scale · S_tᵀ q_t
/// Write it with the "new value" u_t (fla's v_new):
///   u_t = β_t (v_t − (D_t S_{t−1})ᵀ k_t),     S_t = D_t S_{t−1} + k_t u_tᵀ
///
/// Legend, inside one chunk of n ≤ C steps r = 0..n−1 that starts from the state S (the state before step 0);
/// code name → symbol:
///   Γ        Γ_r      = γ_0 + … + γ_r            cumulative log decay from the chunk start, inclusive   (K-vector)
///            Γ_r − Γ_j = γ_{j+1} + … + γ_r ≤ 0    decay from step j to step r: computed as a difference of log sums,
///                                                never as a quotient of products, so strong gates only underflow to 0
///   A        [n x n]  A_rj = β_r Σ_d k_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])   for j &lt; r, 0 on and above the diagonal
///   T        [n x n]  T = (I + A)⁻¹ diag(β)                                 (the UT transform)
///   kDecayed [K]      K̃_r = exp(Γ_r) ⊙ k_r                                 k decayed from the chunk start (one row)
///   W, U     W = T K̃ [n x K],  U = T V [n x V]                             (the WY representation)
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
///
/// Arithmetic: every product is written as sums of contiguous rows weighted by scalars (Axpy) or as dot products of
/// contiguous rows, each in a fixed order.
/// </summary>
internal static partial class WyChunkwise
{
    /// <summary>
    /// One (sequence, value head) pair, chunk by chunk: the state S entering the sequence is left final, o is written.
    /// <paramref name="decay"/> fills γ_t (null: no decay, the delta rule itself).
    /// </summary>
    public static void Chunked(Head head, DeltaOptions options, LogDecay? decay)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), β = head.Rows("beta"), o = head.Rows("o");
        RowBlock S = head.State();
        int length = head.T, dk = head["K"], dv = head["V"];
        int chunk = Math.Min(options.ChunkSize, Math.Max(length, 1));
        if (β.Width == 1)
        {
            Columns(new Pair(q, k, v, β, S, o, options.Scale), decay, new Workspace(chunk, dk, dv));
            return;
        }
        // Per-value β: each value column c is its own delta rule with β[:, c].
        var work = new Workspace(chunk, dk, 1);
        RowBlock vColumn = RowBlock.Zeros(length, 1), βColumn = RowBlock.Zeros(length, 1), oColumn = RowBlock.Zeros(length, 1);
        RowBlock sColumn = RowBlock.Zeros(dk, 1);
        var column = new Pair(q, k, vColumn, βColumn, sColumn, oColumn, options.Scale);
        for (int c = 0; c < dv; c++)
        {
            for (int t = 0; t < length; t++)
            {
                vColumn[t][0] = v[t][c];
                βColumn[t][0] = β[t][c];
            }
            for (int d = 0; d < dk; d++)
            {
                sColumn[d][0] = S[d][c];
            }
            Columns(column, decay, work);
            for (int t = 0; t < length; t++)
            {
                o[t][c] = oColumn[t][0];
            }
            for (int d = 0; d < dk; d++)
            {
                S[d][c] = sColumn[d][0];
            }
        }
    }

    /// <summary>
    /// The rows the steps read: q, k [L x K], v [L x V'], one β per step [L x 1], the state S [K x V'] (initial in,
    /// final out) and o [L x V'] (written), V' = V or one value column.
    /// </summary>
    private sealed record Pair(RowBlock Q, RowBlock K, RowBlock V, RowBlock Beta, RowBlock S, RowBlock O, double Scale);

    /// <summary>The per-pair scratch, reused by every chunk (and every value column): Γ, A, T, W, U and two K-rows.</summary>
    private sealed class Workspace(int chunk, int dk, int dv)
    {
        public int C { get; } = chunk;
        public RowBlock Γ { get; } = RowBlock.Zeros(chunk, dk);
        public double[] A { get; } = new double[chunk * chunk];
        public double[] T { get; } = new double[chunk * chunk];
        public RowBlock W { get; } = RowBlock.Zeros(chunk, dk);
        public RowBlock U { get; } = RowBlock.Zeros(chunk, dv); // U, then u
        public double[] KDecayed { get; } = new double[dk];     // K̃_j or q_r ⊙ exp(Γ_r) (one row at a time)
        public double[] Scratch { get; } = new double[dk];
    }

    /// <summary>The numbered steps, chunk after chunk, on value columns sharing one β per step.</summary>
    private static void Columns(Pair x, LogDecay? decay, Workspace work)
    {
        foreach (var (start, end) in Chunks.Of(x.Q.Count, work.C))
        {
            var chunk = new Chunk(x, work, decay, start, end - start);
            chunk.WyRepresentation(); // steps 1–3
            chunk.NewValues();        // step 4
            chunk.Outputs();          // step 5
            chunk.NextState();        // step 6
        }
    }

    /// <summary>
    /// One chunk of <paramref name="N"/> steps from <paramref name="Start"/>, its rows r = 0..N−1, and the numbered steps
    /// on it (the backward pass runs steps 1–4 and 6 to recompute the states, and steps 1–3 again in reverse order).
    /// </summary>
    private readonly partial record struct Chunk(Pair X, Workspace Work, LogDecay? Decay, int Start, int N)
    {
        public Span<double> Q(int r) => X.Q[Start + r];
        public Span<double> K(int r) => X.K[Start + r];
        public double β(int r) => X.Beta[Start + r][0];
        public Span<double> Tr(int r) => Work.T.AsSpan(r * Work.C, N);
        public bool NoDecay => Decay is null;

        /// <summary>Σ_d x[d] y[d] exp(Γ_r[d] − Γ_j[d]) for rows x, y at chunk positions r, j.</summary>
        public double DecayedDot(Span<double> x, Span<double> y, int r, int j) =>
            NoDecay ? VectorKernels.Dot(x, y) : VectorKernels.DecayedDot(x, y, Work.Γ[r], Work.Γ[j], Work.Scratch);

        /// <summary>Steps 1–3: Γ, A, T = (I + A)⁻¹ diag(β), then W = T K̃ and U = T V.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void WyRepresentation()
        {
            int n = N, C = Work.C;
            double[] a = Work.A, tMatrix = Work.T, kDecayed = Work.KDecayed;
            RowBlock Γ = Work.Γ, W = Work.W, U = Work.U;

            // 1. Γ_r = γ_0 + … + γ_r, relative to the chunk start.
            for (int r = 0; r < n; r++)
            {
                if (Decay is null)
                {
                    Γ[r].Clear();
                }
                else
                {
                    Decay(Start + r, Γ[r]);
                    if (r > 0)
                    {
                        VectorKernels.Axpy(1, Γ[r - 1], Γ[r]);
                    }
                }
            }

            // 2. A_rj = β_r Σ_d k_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d]) for j < r; T = (I + A)⁻¹ diag(β) row by row:
            //    T_r = β_r e_r − Σ_{j<r} A_rj T_j (rows of T, j in increasing order).
            for (int r = 0; r < n; r++)
            {
                for (int j = 0; j < r; j++)
                {
                    a[r * C + j] = β(r) * DecayedDot(K(r), K(j), r, j);
                }
            }
            for (int r = 0; r < n; r++)
            {
                Span<double> tr = Tr(r);
                tr.Clear();
                tr[r] = β(r);
                for (int j = 0; j < r; j++)
                {
                    VectorKernels.Axpy(-a[r * C + j], Tr(j), tr);
                }
            }

            // 3. W = T K̃ with K̃_j = exp(Γ_j) ⊙ k_j, and U = T V: W_r = Σ_{j≤r} T_rj K̃_j, U_r = Σ_{j≤r} T_rj v_j.
            W.Contiguous().Clear();
            U.Contiguous().Clear();
            for (int j = 0; j < n; j++)
            {
                VectorKernels.Exp(Γ[j], kDecayed);
                VectorKernels.Multiply(kDecayed, K(j), kDecayed);
                for (int r = j; r < n; r++)
                {
                    double trj = tMatrix[r * C + j];
                    VectorKernels.Axpy(trj, kDecayed, W[r]);
                    VectorKernels.Axpy(trj, X.V[Start + j], U[r]);
                }
            }
        }

        /// <summary>4. u = U − W S: u_r −= Σ_d W_rd S_d (rows of S).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NewValues()
        {
            RowBlock W = Work.W, U = Work.U, S = X.S;
            for (int r = 0; r < N; r++)
            {
                Span<double> Wr = W[r];
                for (int d = 0; d < S.Count; d++)
                {
                    VectorKernels.Axpy(-Wr[d], S[d], U[r]);
                }
            }
        }

        /// <summary>5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [Σ_d q_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d])] u_j).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Outputs()
        {
            double[] kDecayed = Work.KDecayed;
            RowBlock Γ = Work.Γ, U = Work.U, S = X.S;
            for (int r = 0; r < N; r++)
            {
                Span<double> oRow = X.O[Start + r];
                oRow.Clear();
                VectorKernels.Exp(Γ[r], kDecayed);
                VectorKernels.Multiply(kDecayed, Q(r), kDecayed);
                for (int d = 0; d < S.Count; d++)
                {
                    VectorKernels.Axpy(kDecayed[d], S[d], oRow);
                }
                for (int j = 0; j <= r; j++)
                {
                    double score = DecayedDot(Q(r), K(j), r, j);
                    VectorKernels.Axpy(score, U[j], oRow);
                }
                VectorKernels.Scale(X.Scale, oRow);
            }
        }

        /// <summary>
        /// 6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) k_j u_jᵀ: rows S_d scaled, then
        ///    S_d += (exp(Γ_{n−1}[d] − Γ_j[d]) k_j[d]) u_j for j = 0..n−1 in order.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NextState()
        {
            double[] kDecayed = Work.KDecayed;
            RowBlock Γ = Work.Γ, U = Work.U, S = X.S;
            Span<double> Γlast = Γ[N - 1];
            VectorKernels.Exp(Γlast, kDecayed);
            for (int d = 0; d < S.Count; d++)
            {
                VectorKernels.Scale(kDecayed[d], S[d]);
            }
            for (int j = 0; j < N; j++)
            {
                VectorKernels.ExpDifference(Γlast, Γ[j], kDecayed);
                VectorKernels.Multiply(kDecayed, K(j), kDecayed);
                for (int d = 0; d < S.Count; d++)
                {
                    VectorKernels.Axpy(kDecayed[d], U[j], S[d]);
                }
            }
        }
    }
}
