using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// RWKV-7 "Goose" attention as fla's generalised delta rule with a diagonal-plus-low-rank transition (DPLR), exact, in
/// double.
/// <code>
/// Shapes (layout [B,T,H,D]; names of fla's chunk_dplr_delta_rule, with chunk_rwkv7's as aliases):
///   q [B,T,H,K] (alias r)  k [B,T,H,K]  v [B,T,H,V]  a [B,T,H,K]  b [B,T,H,K]  gk [B,T,H,K] (aliases w, log_w)
///   initial_state [N,H,K,V] optional   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,H,V]  final_state [N,H,K,V]
///
/// Per sequence and head, S is K x V, S_0 = initial_state (zeros if absent), gk_t ∈ R^K the log decay:
///   S_t = (Diag(exp(gk_t)) + b_t a_tᵀ) S_{t−1} + k_t v_tᵀ
///       = Diag(exp(gk_t)) S_{t−1} + b_t (S_{t−1}ᵀ a_t)ᵀ + k_t v_tᵀ      a reads the old state, b writes
///   o_t = scale · S_tᵀ q_t                                             scale = K^(-1/2) unless given
/// </code>
/// Orientation and order, pinned from fla: <c>fla/ops/generalized_delta_rule/dplr/naive.py</c>
/// (<c>dplr_recurrence</c>, S [K,V]: kv = k vᵀ + b (aᵀ S); S = S·exp(gk) + kv; o = (scale·q)ᵀ S) and the kernel of
/// <c>fused_recurrent_rwkv7</c> (h = exp(w) h + b (aᵀ h) + k vᵀ). So the low-rank term acts on the undecayed state
/// S_{t−1}, beside the decay, not after it: (Diag(exp(gk)) + b aᵀ) S, not (I + b aᵀ) Diag(exp(gk)) S. In the state's
/// K x V orientation the term is b aᵀ (a is the vector that reads S, b the one that writes); RWKV-7's own V x K
/// state reads the same rule as Sᵀ_t = Sᵀ_{t−1} (Diag(exp(w)) + a bᵀ) + v kᵀ (fla's comment "S_t = S_t @ (I + a bᵀ) +
/// v kᵀ"). In RWKV-7 itself a = −κ̂ and b = κ̂ ⊙ a_lr; those activations are the caller's.
///
/// The decay's name: fla's <c>chunk_rwkv7</c> and <c>fused_recurrent_rwkv7</c> pass <c>w</c> to the dplr kernels as
/// gk, i.e. <c>w</c> is the log decay (fused_recurrent_rwkv7 documents it so); we accept <c>w</c> and <c>log_w</c> as
/// aliases of gk with that meaning. Beware: fla's older <c>naive_recurrent_rwkv7</c> (<c>fla/ops/rwkv7/recurrent_naive.py</c>)
/// takes the raw RWKV parameter and decays by exp(−exp(w)); pass gk = −exp(w) for that convention. fla's
/// <c>chunk_rwkv7</c> defaults to scale = 1 and <c>chunk_dplr_delta_rule</c> to K^(-1/2); we default to K^(-1/2) like
/// every form here, so set scale=1 to compare with chunk_rwkv7's default.
///
/// Variants:
///   <c>recurrent</c>  the definition, one token at a time.
///   <c>chunked</c>    the WY representation of the DPLR chunkwise form (fla's <c>dplr_chunkwise</c>), any chunk size C ≥ 1,
///              decays in log space relative to the chunk start; its numbered steps and legend: DplrChunkwise.cs.
///              Every exponent is a sum of log decays over a range of steps (≤ 0 for gk ≤ 0): nothing is divided.
/// </summary>
public sealed class Rwkv7 : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("rwkv7", "delta rule", "Rwkv7.cs")
    {
        Variants = ["recurrent", "chunked"],
        Inputs =
        [
            new("q", "B,T,H,K", "queries (RWKV's receptance r)", Aliases: ["r"]),
            Specs.K, Specs.V,
            new("a", "B,T,H,K", "the low-rank vector that reads the state (RWKV-7: −κ̂)"),
            new("b", "B,T,H,K", "the low-rank vector that writes the state (RWKV-7: κ̂·a)"),
            new("gk", "B,T,H,K", "log-space decay per key channel; chunk_rwkv7's w / log_w", Aliases: ["w", "log_w"]),
            Specs.InitialState, Specs.CuSeqlens,
        ],
        Outputs = Specs.StateOutputs,
        Parameters = [Scale, Specs.ChunkSize],
    };

    /// <summary>scale, K^-0.5 unless given (fla's chunk_rwkv7 defaults to 1).</summary>
    public static Parameter<double?> Scale { get; } =
        ParameterSpec.OptionalReal("scale", "K^-0.5", "o_t = scale · S_tᵀ q_t (fla's chunk_rwkv7 defaults to 1)");

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, scale)),
            "chunked" => Heads.Run(problem, head => DplrChunkwise.Chunked(head, scale, chunkSize)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The recurrence, token by token: the definition the chunked variant is held to.</summary>
    public static void Recurrent(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o");
        RowBlock a = head.Rows("a"), b = head.Rows("b"), gk = head.Rows("gk"), S = head.State();
        var sa = new double[head["V"]]; // S_{t−1}ᵀ a_t
        for (int t = 0; t < head.T; t++)
        {
            // S_{t−1}ᵀ a_t, read before the state changes
            Array.Clear(sa);
            for (int d = 0; d < S.Count; d++)
            {
                VectorKernels.Axpy(a[t][d], S[d], sa);
            }
            for (int d = 0; d < S.Count; d++)
            {
                // S_t[d, :] = exp(gk_td) S_{t−1}[d, :] + b_td (S_{t−1}ᵀ a_t) + k_td v_t
                VectorKernels.Scale(Math.Exp(gk[t][d]), S[d]);
                VectorKernels.Axpy(b[t][d], sa, S[d]);
                VectorKernels.Axpy(k[t][d], v[t], S[d]);
                // o_t = Σ_d q_td S_t[d, :]
                VectorKernels.Axpy(q[t][d], S[d], o[t]);
            }
            VectorKernels.Scale(scale, o[t]); // o_t ← scale · o_t
        }
    }
}
