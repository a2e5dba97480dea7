using System.Runtime.CompilerServices;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// Gated DeltaNet: the delta rule with a scalar decay per head and step, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla's chunk_gated_delta_rule / fused_recurrent_gated_delta_rule):
///   q [B,T,H,K]  k [B,T,H,K]  v [B,T,HV,V]  g [B,T,HV]  beta [B,T,HV] or [B,T,HV,V]  initial_state [N,HV,K,V]
///   → o [B,T,HV,V]  final_state [N,HV,K,V]
///   HV a multiple of H (GVA): value head hv reads q/k head hv / (HV/H). N = B, or the number of sequences.
///
/// Per sequence and value head, S is K x V, S_0 = initial_state (zeros if absent), g_t in log space:
///   q_t, k_t ← q_t / √(|q_t|² + 1e-6), k_t / √(|k_t|² + 1e-6)     only with use_qk_l2norm_in_kernel
///   S_t = (I − β_t k_t k_tᵀ) exp(g_t) S_{t−1} + β_t k_t v_tᵀ       decay first, then the delta update
///   o_t = scale · S_tᵀ q_t                                          scale = K^(-1/2) unless given
/// Equivalently (what the recurrent variant computes):
///   S' = exp(g_t) S_{t−1},   u_t = β_t ⊙ (v_t − S'ᵀ k_t),   S_t = S' + k_t u_tᵀ
/// With per-value β (β_t ∈ R^V) value column c follows this rule with the scalar β_t[c].
/// </code>
/// Order of decay and update: for a scalar gate the two orders agree, exp(g)(I − βkkᵀ) = (I − βkkᵀ)exp(g); we write
/// fla's: <c>fla/ops/gated_delta_rule/fused_recurrent.py</c> multiplies the state by exp(g) first, then subtracts the
/// prediction of the decayed state (b_h *= exp(b_g); b_v = β (v − Σ b_h k); b_h += k b_vᵀ; o = b_hᵀ (q·scale)).
/// The same file pins beta [B,T,HV] or [B,T,HV,V] (headwise when beta has fewer axes than v), GVA, and the L2 norm
/// x / √(Σx² + 1e-6) before the scale. Sources: Yang, Kautz, Hatamizadeh 2024, "Gated Delta Networks"
/// (arXiv 2412.06464), eq. (10) and §3.3 for the chunkwise form.
///
/// Variants:
///   <c>recurrent</c>  the definition, one token at a time.
///   <c>chunked</c>    the WY / UT-transform chunkwise algorithm with the decay in log space relative to the chunk start
///              (steps in WyChunkwise.cs, with γ_t = g_t on every key channel), any chunk size C ≥ 1.
/// </summary>
public static class GatedDeltaRule
{
    /// <summary>The definition, token by token.</summary>
    public static DeltaResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, DeltaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        var problem = DeltaProblem.Bind("gated_delta_rule", q, k, v, beta, g, null, options ?? new DeltaOptions(), betaPerValueAllowed: true);
        return problem.Run(RecurrentHead);
    }

    /// <summary>The WY / UT-transform chunkwise form with chunks of <paramref name="chunkSize"/> steps (the last may be shorter).</summary>
    public static DeltaResult Chunked(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, int chunkSize, DeltaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        DeltaProblem.RequireChunkSize(chunkSize);
        var problem = DeltaProblem.Bind("gated_delta_rule", q, k, v, beta, g, null, options ?? new DeltaOptions(), betaPerValueAllowed: true);
        return problem.Run(head =>
        {
            // γ_t = g_t on every key channel.
            var gamma = new double[head.Length * head.Dk];
            for (int t = 0; t < head.Length; t++)
            {
                DeltaHead.Row(gamma, t, head.Dk).Fill(head.G![t]);
            }
            return WyChunkwise.Run(head, gamma, chunkSize);
        });
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
            // S' = exp(g_t) S_{t−1}  and  S'ᵀ k_t = Σ_d k_td S'[d, :], in one pass over S
            Array.Fill(decay, Math.Exp(x.G![t]));
            Array.Clear(sk);
            StateStep.DecayAndRead(new FlatRows(s, dk, dv), decay, kt, sk);
            // u_t = β_t ⊙ (v_t − S'ᵀ k_t)
            for (int c = 0; c < dv; c++)
            {
                u[c] = x.BetaAt(t, c) * (vt[c] - sk[c]);
            }
            // S_t = S' + k_t u_tᵀ  and  o_t = scale · S_tᵀ q_t = scale · Σ_d q_td S_t[d, :], in one pass over S
            Span<double> ot = DeltaHead.Row(o, t, dv);
            StateStep.DecayWriteAndRead(new FlatRows(s, dk, dv), ones, kt, u, qt, ot);
            VectorKernels.Scale(x.Scale, ot);
        }
        return (o, s);
    }
}
