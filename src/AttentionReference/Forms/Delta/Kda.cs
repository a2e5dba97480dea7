using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// Kimi Delta Attention (KDA, Kimi Linear 2025): the delta rule with a decay per key channel, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla's chunk_kda / fused_recurrent_kda):
///   q [B,T,H,K]  k [B,T,H,K]  v [B,T,HV,V]  gk [B,T,HV,K] (fla names it g)  beta [B,T,HV]  initial_state [N,HV,K,V]
///   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,HV,V]  final_state [N,HV,K,V]
///   HV a multiple of H (GVA): value head hv reads q/k head hv / (HV/H). N = B, or the number of sequences.
///
/// Per sequence and value head, S is K x V, S_0 = initial_state (zeros if absent), gk_t ∈ R^K in log space:
///   q_t, k_t ← q_t / √(|q_t|² + 1e-6), k_t / √(|k_t|² + 1e-6)     only with use_qk_l2norm_in_kernel
///   S_t = (I − β_t k_t k_tᵀ) Diag(exp(gk_t)) S_{t−1} + β_t k_t v_tᵀ     decay first, then the delta update
///   o_t = scale · S_tᵀ q_t                                               scale = K^(-1/2) unless given
/// Equivalently (what the recurrent variant computes: the delta rule's step, DeltaRule.Recurrent, with γ_t = gk_t):
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
public sealed class Kda : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = DeltaSpecs.Contract("kda", "Kda.cs", ["recurrent", "chunked"],
        new("gk", "B,T,HV,K", "log-space decay per key channel (gk ≤ 0); fla's chunk_kda calls it g", Aliases: ["g"]), perValueBeta: false);

    /// <summary>γ_t = gk_t: a log decay per key channel.</summary>
    public static LogDecay Decay(Head head)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock gk = head.Rows("gk");
        return (t, γ) => gk[t].CopyTo(γ);
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem) => variant switch
    {
        "recurrent" => DeltaHeads.Run(problem, (head, options) => Recurrent(head, options.Scale)),
        "chunked" => DeltaHeads.Run(problem, (head, options) => WyChunkwise.Chunked(head, options, Decay(head))),
        _ => throw UnknownVariant(variant),
    };

    /// <summary>The recurrence, token by token: the delta rule's step with the decay Diag(exp(gk_t)) in front (the definition).</summary>
    public static void Recurrent(Head head, double scale) => DeltaRule.Recurrent(head, scale, Decay(head));

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem) =>
        DeltaHeads.DecayedBackward(variant, problem, Decay, DecayGradient) ?? throw UnknownVariant(variant);

    /// <summary>dgk_t += dγ_t: one log decay per key channel.</summary>
    public static LogDecayGradient DecayGradient(Head head)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock dgk = head.Rows("dgk");
        return (t, dγ) => Numerics.VectorKernels.AddTo(dγ, dgk[t]);
    }
}
