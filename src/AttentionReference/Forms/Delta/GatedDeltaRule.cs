using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// Gated DeltaNet: the delta rule with a scalar decay per head and step, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla's chunk_gated_delta_rule / fused_recurrent_gated_delta_rule):
///   q [B,T,H,K]  k [B,T,H,K]  v [B,T,HV,V]  g [B,T,HV]  beta [B,T,HV] or [B,T,HV,V]  initial_state [N,HV,K,V]
///   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,HV,V]  final_state [N,HV,K,V]
///   HV a multiple of H (GVA): value head hv reads q/k head hv / (HV/H). N = B, or the number of sequences.
///
/// Per sequence and value head, S is K x V, S_0 = initial_state (zeros if absent), g_t in log space:
///   q_t, k_t ← q_t / √(|q_t|² + 1e-6), k_t / √(|k_t|² + 1e-6)     only with use_qk_l2norm_in_kernel
///   S_t = (I − β_t k_t k_tᵀ) exp(g_t) S_{t−1} + β_t k_t v_tᵀ       decay first, then the delta update
///   o_t = scale · S_tᵀ q_t                                          scale = K^(-1/2) unless given
/// Equivalently (what the recurrent variant computes: the delta rule's step, DeltaRule.Recurrent, with γ_t = g_t·1):
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
public sealed class GatedDeltaRule : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = DeltaSpecs.Contract("gated_delta_rule", "GatedDeltaRule.cs", ["recurrent", "chunked"],
        new("g", "B,T,HV", "log-space decay per head and step (g ≤ 0)"), perValueBeta: true);

    /// <summary>γ_t = g_t·1: the head's one log decay on every key channel.</summary>
    public static LogDecay Decay(Head head)
    {
        ArgumentNullException.ThrowIfNull(head);
        Series g = head.Series("g");
        return (t, γ) => γ.Fill(g[t]);
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem) => variant switch
    {
        "recurrent" => DeltaHeads.Run(problem, (head, options) => Recurrent(head, options.Scale)),
        "chunked" => DeltaHeads.Run(problem, (head, options) => WyChunkwise.Chunked(head, options, Decay(head))),
        _ => throw UnknownVariant(variant),
    };

    /// <summary>The recurrence, token by token: the delta rule's step with the decay exp(g_t) in front (the definition).</summary>
    public static void Recurrent(Head head, double scale) => DeltaRule.Recurrent(head, scale, Decay(head));

    /// <summary>dg_t += Σ_d dγ_t[d]: the head's one log decay reaches every key channel.</summary>
    public static LogDecayGradient DecayGradient(Head head)
    {
        ArgumentNullException.ThrowIfNull(head);
        Series dg = head.Series("dg");
        return (t, dγ) =>
        {
            double sum = 0;
            foreach (double value in dγ)
            {
                sum += value;
            }
            dg[t] += sum;
        };
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem) =>
        DeltaHeads.DecayedBackward(variant, problem, Decay, DecayGradient) ?? throw UnknownVariant(variant);
}
