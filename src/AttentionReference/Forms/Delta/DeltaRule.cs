using System.Runtime.CompilerServices;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// DeltaNet: linear attention whose state is updated by the delta rule, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]  k [B,T,H,K]  v [B,T,HV,V]  beta [B,T,HV] or [B,T,HV,V]  initial_state [N,HV,K,V]
///   → o [B,T,HV,V]  final_state [N,HV,K,V]
///   HV = H in fla's delta rule; HV a multiple of H is accepted too (GVA, as fla's gated_delta_rule and kda):
///   value head hv reads q/k head hv / (HV/H). N = B, or the number of sequences with cu_seqlens (B = 1).
///
/// Per sequence and value head, S is K x V, S_0 = initial_state (zeros if absent):
///   q_t, k_t ← q_t / √(|q_t|² + 1e-6), k_t / √(|k_t|² + 1e-6)     only with use_qk_l2norm_in_kernel
///   S_t = (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ
///   o_t = scale · S_tᵀ q_t                                          scale = K^(-1/2) unless given
///   final_state = S_T
/// Equivalently, with the new value u_t (what the recurrent variant computes):
///   u_t = β_t ⊙ (v_t − S_{t−1}ᵀ k_t),   S_t = S_{t−1} + k_t u_tᵀ
/// which also defines per-value β (β_t ∈ R^V): value column c follows the delta rule with the scalar β_t[c].
/// </code>
/// Sources: Schlag et al. 2021 and Yang et al. 2024 (arXiv 2406.06484) for the rule; fla's
/// <c>fla/ops/delta_rule/naive.py</c> (<c>delta_rule_recurrence</c>: v_new = β ⊙ (v − Sᵀk), S += k v_newᵀ, o = (scale·q)ᵀS
/// after the update; a beta with as many axes as v is per value) and <c>fla/ops/delta_rule/fused_recurrent.py</c>
/// (the same, with beta [B,T,H] or [B,T,H,V]); the L2 norm and its ε = 1e-6 from <c>fla/modules/l2norm.py</c>, applied
/// before the scale as <c>chunk_delta_rule</c>'s <c>use_qk_l2norm_in_kernel</c> does. β is not restricted: with
/// L2-normalised keys, I − β k kᵀ has eigenvalues 1 and 1 − β, so the state stays bounded for β ∈ [0, 2]; that is the
/// caller's business, as in fla.
///
/// Variants:
///   <c>recurrent</c>  the definition, one token at a time.
///   <c>chunked</c>    the WY / UT-transform chunkwise algorithm (its numbered steps: WyChunkwise.cs), any chunk size C ≥ 1.
///   <c>parallel</c>   the quadratic form over the whole sequence with one triangular solve (the explicit
///              (I + tril(diag(β) K Kᵀ, −1))⁻¹ formulation, written as its own method rather than chunked with C = T):
///                (I + tril(diag(β) K Kᵀ, −1)) U = diag(β) (V − K S_0)       solved by forward substitution
///                O = scale · (Q S_0 + tril(Q Kᵀ) U)                         (tril keeps the diagonal)
///                S_T = S_0 + Kᵀ U
///              With per-value β the solve is done per value column (β_t[c] in place of β_t).
/// </summary>
public static class DeltaRule
{
    /// <summary>The definition, token by token.</summary>
    public static DeltaResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor beta, DeltaOptions? options = null)
    {
        var problem = DeltaProblem.Bind("delta_rule", q, k, v, beta, null, null, options ?? new DeltaOptions(), betaPerValueAllowed: true);
        return problem.Run(RecurrentHead);
    }

    /// <summary>The WY / UT-transform chunkwise form with chunks of <paramref name="chunkSize"/> steps (the last may be shorter).</summary>
    public static DeltaResult Chunked(Tensor q, Tensor k, Tensor v, Tensor beta, int chunkSize, DeltaOptions? options = null)
    {
        DeltaProblem.RequireChunkSize(chunkSize);
        var problem = DeltaProblem.Bind("delta_rule", q, k, v, beta, null, null, options ?? new DeltaOptions(), betaPerValueAllowed: true);
        return problem.Run(head => WyChunkwise.Run(head, logDecay: null, chunkSize));
    }

    /// <summary>The quadratic form: one triangular solve over the whole sequence.</summary>
    public static DeltaResult Parallel(Tensor q, Tensor k, Tensor v, Tensor beta, DeltaOptions? options = null)
    {
        var problem = DeltaProblem.Bind("delta_rule", q, k, v, beta, null, null, options ?? new DeltaOptions(), betaPerValueAllowed: true);
        return problem.Run(ParallelHead);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static (double[] O, double[] S) RecurrentHead(DeltaHead x)
    {
        int dk = x.Dk, dv = x.Dv;
        double[] s = (double[])x.InitialState.Clone();
        var o = new double[x.Length * dv];
        var u = new double[dv];
        var sk = new double[dv]; // S'ᵀ k_t
        var ones = new double[dk]; // no decay: α = 1 in both passes
        Array.Fill(ones, 1.0);
        for (int t = 0; t < x.Length; t++)
        {
            ReadOnlySpan<double> qt = DeltaHead.Row(x.Q, t, dk), kt = DeltaHead.Row(x.K, t, dk), vt = DeltaHead.Row(x.V, t, dv);
            // u_t = β_t ⊙ (v_t − S_{t−1}ᵀ k_t), with S_{t−1}ᵀ k_t = Σ_d k_td S_{t−1}[d, :]
            Array.Clear(sk);
            StateStep.DecayAndRead(new FlatRows(s, dk, dv), ones, kt, sk);
            for (int c = 0; c < dv; c++)
            {
                u[c] = x.BetaAt(t, c) * (vt[c] - sk[c]);
            }
            // S_t = S_{t−1} + k_t u_tᵀ  and  o_t = scale · S_tᵀ q_t = scale · Σ_d q_td S_t[d, :], in one pass over S
            Span<double> ot = DeltaHead.Row(o, t, dv);
            StateStep.DecayWriteAndRead(new FlatRows(s, dk, dv), ones, kt, u, qt, ot);
            VectorKernels.Scale(x.Scale, ot);
        }
        return (o, s);
    }

    private static (double[] O, double[] S) ParallelHead(DeltaHead x)
    {
        int length = x.Length, dk = x.Dk, dv = x.Dv;
        double[] s0 = x.InitialState;
        // K Kᵀ and Q Kᵀ, [L x L], lower triangles only.
        var kk = new double[length * length];
        var qk = new double[length * length];
        for (int r = 0; r < length; r++)
        {
            for (int j = 0; j <= r; j++)
            {
                kk[r * length + j] = Dot(x.K, r, x.K, j, dk);
                qk[r * length + j] = Dot(x.Q, r, x.K, j, dk);
            }
        }
        // (I + tril(diag(β) K Kᵀ, −1)) U = diag(β) (V − K S_0), by forward substitution, one value column at a time
        // (the matrix depends on the column only through a per-value β).
        var uMatrix = new double[length * dv];
        for (int c = 0; c < dv; c++)
        {
            for (int r = 0; r < length; r++)
            {
                double ks0 = 0;
                for (int d = 0; d < dk; d++)
                {
                    ks0 += x.K[r * dk + d] * s0[d * dv + c];
                }
                double beta = x.BetaAt(r, c);
                double rhs = beta * (x.V[r * dv + c] - ks0);
                for (int j = 0; j < r; j++)
                {
                    rhs -= beta * kk[r * length + j] * uMatrix[j * dv + c];
                }
                uMatrix[r * dv + c] = rhs;
            }
        }
        // O = scale · (Q S_0 + tril(Q Kᵀ) U)
        var o = new double[length * dv];
        for (int r = 0; r < length; r++)
        {
            for (int c = 0; c < dv; c++)
            {
                double sum = 0;
                for (int d = 0; d < dk; d++)
                {
                    sum += x.Q[r * dk + d] * s0[d * dv + c];
                }
                for (int j = 0; j <= r; j++)
                {
                    sum += qk[r * length + j] * uMatrix[j * dv + c];
                }
                o[r * dv + c] = x.Scale * sum;
            }
        }
        // S_T = S_0 + Kᵀ U
        double[] s = (double[])s0.Clone();
        for (int j = 0; j < length; j++)
        {
            for (int d = 0; d < dk; d++)
            {
                for (int c = 0; c < dv; c++)
                {
                    s[d * dv + c] += x.K[j * dk + d] * uMatrix[j * dv + c];
                }
            }
        }
        return (o, s);
    }

    private static double Dot(double[] x, int r, double[] y, int j, int width)
    {
        double sum = 0;
        for (int d = 0; d < width; d++)
        {
            sum += x[r * width + d] * y[j * width + d];
        }
        return sum;
    }
}
