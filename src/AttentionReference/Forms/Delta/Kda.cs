using System.Runtime.CompilerServices;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// Kimi Delta Attention (KDA, Kimi Linear 2025): the delta rule with a decay per key channel, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla's chunk_kda / fused_recurrent_kda):
///   q [B,T,H,K]  k [B,T,H,K]  v [B,T,HV,V]  gk [B,T,HV,K] (fla names it g)  beta [B,T,HV]  initial_state [N,HV,K,V]
///   → o [B,T,HV,V]  final_state [N,HV,K,V]
///   HV a multiple of H (GVA): value head hv reads q/k head hv / (HV/H). N = B, or the number of sequences.
///
/// Per sequence and value head, S is K x V, S_0 = initial_state (zeros if absent), gk_t ∈ R^K in log space:
///   q_t, k_t ← q_t / √(|q_t|² + 1e-6), k_t / √(|k_t|² + 1e-6)     only with use_qk_l2norm_in_kernel
///   S_t = (I − β_t k_t k_tᵀ) Diag(exp(gk_t)) S_{t−1} + β_t k_t v_tᵀ     decay first, then the delta update
///   o_t = scale · S_tᵀ q_t                                               scale = K^(-1/2) unless given
/// Equivalently (what the recurrent variant computes):
///   S' = Diag(exp(gk_t)) S_{t−1}   (row d of S scaled by exp(gk_t[d])),   u_t = β_t (v_t − S'ᵀ k_t),   S_t = S' + k_t u_tᵀ
/// </code>
/// Here the order matters (Diag(exp(gk)) does not commute with k kᵀ): fla's <c>naive_recurrent_kda</c>
/// (<c>fla/ops/kda/naive.py</c>) decays first (S = S·exp(g)), then subtracts the prediction of the decayed state,
/// then reads o = (scale·q)ᵀ S after the update; <c>naive_chunk_kda</c> in the same file is the chunkwise form our
/// <c>chunked</c> variant follows. beta is headwise [B,T,HV] only, as fla's <c>chunk_kda</c> documents it. The gate is
/// the log decay itself: fla's <c>use_gate_in_kernel</c> (g ← −exp(A_log)·softplus(g + dt_bias)),
/// <c>use_beta_sigmoid_in_kernel</c> and <c>allow_neg_eigval</c> are activations in front of the form and are not taken
/// here: apply them first. The L2 norm is fla's l2norm (ε = 1e-6) before the scale. Sources: Kimi Team, "Kimi Linear"
/// (arXiv 2510.26692), §3 (KDA); fla <c>fla/ops/kda/naive.py</c> and <c>fla/ops/kda/chunk.py</c>.
///
/// Variants:
///   <c>recurrent</c>  the definition, one token at a time.
///   <c>chunked</c>    the WY / UT-transform chunkwise algorithm with per-channel decay in log space relative to the chunk
///              start (steps in WyChunkwise.cs, with γ_t = gk_t), any chunk size C ≥ 1.
/// </summary>
public static class Kda
{
    /// <summary>The definition, token by token.</summary>
    public static DeltaResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor gk, Tensor beta, DeltaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(gk);
        var problem = DeltaProblem.Bind("kda", q, k, v, beta, null, gk, options ?? new DeltaOptions(), betaPerValueAllowed: false);
        return problem.Run(RecurrentHead);
    }

    /// <summary>The WY / UT-transform chunkwise form with chunks of <paramref name="chunkSize"/> steps (the last may be shorter).</summary>
    public static DeltaResult Chunked(Tensor q, Tensor k, Tensor v, Tensor gk, Tensor beta, int chunkSize, DeltaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(gk);
        DeltaProblem.RequireChunkSize(chunkSize);
        var problem = DeltaProblem.Bind("kda", q, k, v, beta, null, gk, options ?? new DeltaOptions(), betaPerValueAllowed: false);
        return problem.Run(head => WyChunkwise.Run(head, head.Gk, chunkSize));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double[] O, double[] S) RecurrentHead(DeltaHead x)
    {
        int dk = x.Dk, dv = x.Dv;
        double[] s = (double[])x.InitialState.Clone();
        var o = new double[x.Length * dv];
        var u = new double[dv];
        var sk = new double[dv]; // S'ᵀ k_t
        var decay = new double[dk];
        var ones = new double[dk]; // the write pass decays no further: α = 1
        Array.Fill(ones, 1.0);
        for (int t = 0; t < x.Length; t++)
        {
            ReadOnlySpan<double> qt = DeltaHead.Row(x.Q, t, dk), kt = DeltaHead.Row(x.K, t, dk), vt = DeltaHead.Row(x.V, t, dv);
            ReadOnlySpan<double> gkt = DeltaHead.Row(x.Gk!, t, dk);
            double beta = x.Beta[t];
            // S' = Diag(exp(gk_t)) S_{t−1}  and  S'ᵀ k_t = Σ_d k_td S'[d, :], in one pass over S
            for (int d = 0; d < dk; d++)
            {
                decay[d] = Math.Exp(gkt[d]);
            }
            Array.Clear(sk);
            StateStep.DecayAndRead(new FlatRows(s, dk, dv), decay, kt, sk);
            // u_t = β_t (v_t − S'ᵀ k_t)
            for (int c = 0; c < dv; c++)
            {
                u[c] = beta * (vt[c] - sk[c]);
            }
            // S_t = S' + k_t u_tᵀ  and  o_t = scale · S_tᵀ q_t = scale · Σ_d q_td S_t[d, :], in one pass over S
            Span<double> ot = DeltaHead.Row(o, t, dv);
            StateStep.DecayWriteAndRead(new FlatRows(s, dk, dv), ones, kt, u, qt, ot);
            VectorKernels.Scale(x.Scale, ot);
        }
        return (o, s);
    }
}
