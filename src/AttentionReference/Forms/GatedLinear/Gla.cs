using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// Gated linear attention (GLA, Yang et al. 2023, arXiv 2312.06635), exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   gk [B,T,H,K] (fla's chunk_gla calls it g)   gv [B,T,H,V] optional
///   initial_state [N,H,K,V] optional   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,H,V]   final_state [N,H,K,V]
///
/// Per sequence and head, with log-space gates gk_t ≤ 0 (and gv_t ≤ 0):
///   S_t = Diag(exp(gk_t)) S_{t−1} Diag(exp(gv_t)) + k_t v_tᵀ        S_{−1} = initial_state (0 if absent)
///   o_t = scale · S_tᵀ q_t                                            scale = K^(-1/2) unless given
///   final_state = S at the sequence's last step
///
/// Variants:
///   recurrent  the recurrence above, token by token (the definition).
///   parallel   with G_t = Σ_{s≤t} gk_s, Λ_t = Σ_{s≤t} gv_s:
///                A_ij = Σ_a q_ia k_ja exp(G_ia − G_ja)   (j ≤ i)
///                o_ic = scale · (Σ_a q_ia exp(G_ia) S0_ac exp(Λ_ic) + Σ_{j≤i} A_ij exp(Λ_ic − Λ_jc) v_jc)
///   chunked    chunks of C steps (any C ≥ 1): the state entering the chunk, decayed in log space from the chunk
///              start, plus the intra-chunk quadratic part; then the state is advanced over the chunk.
/// Every decay factor is exp of a difference of summed log gates with j ≤ i, so it lies in [0, 1]; nothing is
/// computed as exp(G_i)·exp(−G_j) and nothing is divided by a cumulative product (log gates of −20 per step stay
/// exact). The algorithm is written out, as GLA Sec. 4 gives it, in DiagonalDecay.cs.
/// Gates are taken as given: a positive log gate is not rejected (fla does not check either); its factor exceeds 1
/// and may overflow. NaN in any input reaches the outputs that read it.
/// </code>
/// Sources: fla's fla/ops/gla/naive.py (recurrence, scale multiplies q, state K×V, default scale K^-0.5);
/// fla/ops/gla/fused_recurrent.py (gv decays the value side of the state after gk decays the key side); fla's
/// chunk_gla names the key gate g, so g is accepted as an alias of gk.
/// </summary>
public static class Gla
{
    /// <summary>The recurrence, token by token.</summary>
    public static StateResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor gk, GlaOptions? options = null) =>
        DiagonalDecay.Recurrent(Inputs(q, k, v, gk, options));

    /// <summary>The quadratic form with the decay matrix.</summary>
    public static StateResult Parallel(Tensor q, Tensor k, Tensor v, Tensor gk, GlaOptions? options = null) =>
        DiagonalDecay.Parallel(Inputs(q, k, v, gk, options));

    /// <summary>Chunks of <paramref name="chunkSize"/> steps (any C ≥ 1).</summary>
    public static StateResult Chunked(Tensor q, Tensor k, Tensor v, Tensor gk, int chunkSize, GlaOptions? options = null) =>
        DiagonalDecay.Chunked(Inputs(q, k, v, gk, options), chunkSize);

    private static DecayInputs Inputs(Tensor q, Tensor k, Tensor v, Tensor gk, GlaOptions? options)
    {
        options ??= new GlaOptions();
        return new DecayInputs(q, k, v, gk, options.Gv, options.Scale, options.InitialState, options.CuSeqlens);
    }
}

/// <summary>The options every gated linear form shares.</summary>
public record GatedLinearOptions
{
    /// <summary>o_t = scale · S_tᵀ q_t; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>The state before the first step, [N,H,K,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>Varlen: int32/int64 [N+1] sequence boundaries along T, with B = 1; null means one sequence per batch entry.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>The options of <see cref="Gla"/>: the shared ones and the optional value-side gate.</summary>
public sealed record GlaOptions : GatedLinearOptions
{
    /// <summary>The value-dim log gate gv [B,T,H,V]; null means no value-side decay.</summary>
    public Tensor? Gv { get; init; }
}
