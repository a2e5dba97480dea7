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

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Backward(problem, head => RecurrentBackward(head, scale)),
            "chunked" => Heads.Backward(problem, head => DplrChunkwise.ChunkedBackward(head, scale, chunkSize)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>
    /// The backward pass of the recurrence, in reverse time from the states a forward replay stores (the definition keeps
    /// every state; the chunked backward recomputes them per chunk). Step t in reverse, with w_t = S_{t−1}ᵀ a_t recomputed:
    /// <code>
    ///   dS = dfinal_state (0 if absent)
    ///   for t = T … 1:
    ///     dS   += scale · q_t do_tᵀ,   dq_t = scale · S_t do_t          o_t = scale · S_tᵀ q_t
    ///     dk_t  = dS v_t,              dv_t = dSᵀ k_t                   S_t ∋ k_t v_tᵀ
    ///     db_t  = dS w_t,              dw   = dSᵀ b_t                   S_t ∋ b_t w_tᵀ
    ///     dgk_t = exp(gk_t) ⊙ rowsum(dS ∘ S_{t−1})                      S_t ∋ Diag(exp gk_t) S_{t−1}
    ///     da_t  = S_{t−1} dw                                            w_t = S_{t−1}ᵀ a_t
    ///     dS    = Diag(exp gk_t) dS + a_t dwᵀ                           now dS_{t−1}
    ///   dinitial_state = dS
    /// </code>
    /// </summary>
    public static void RecurrentBackward(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), a = head.Rows("a"), b = head.Rows("b"), gk = head.Rows("gk");
        RowBlock dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv"), da = head.Rows("da"), db = head.Rows("db"), dgk = head.Rows("dgk");
        RowBlock? dO = head.OptionalRows("do");
        RowBlock[] S = Replay(head);                     // S[t + 1] is the state after row t, S[0] the initial state
        RowBlock dS = head.StateGradient();
        double[] w = new double[head["V"]], dw = new double[head["V"]];
        for (int t = head.T - 1; t >= 0; t--)
        {
            RowBlock previous = S[t];
            Array.Clear(w);
            Array.Clear(dw);
            for (int d = 0; d < dS.Count; d++)
            {
                VectorKernels.Axpy(a[t][d], previous[d], w);                   // w_t = S_{t−1}ᵀ a_t
            }
            for (int d = 0; d < dS.Count; d++)
            {
                if (dO is not null)
                {
                    VectorKernels.Axpy(scale * q[t][d], dO[t], dS[d]);        // dS += scale q_t do_tᵀ
                    dq[t][d] = scale * VectorKernels.Dot(S[t + 1][d], dO[t]); // dq_t = scale S_t do_t
                }
                dk[t][d] = VectorKernels.Dot(dS[d], v[t]);                     // dk_t = dS v_t
                VectorKernels.Axpy(k[t][d], dS[d], dv[t]);                     // dv_t = dSᵀ k_t
                db[t][d] = VectorKernels.Dot(dS[d], w);                        // db_t = dS w_t
                VectorKernels.Axpy(b[t][d], dS[d], dw);                        // dw = dSᵀ b_t
                dgk[t][d] = Math.Exp(gk[t][d]) * VectorKernels.Dot(dS[d], previous[d]); // dgk_t = exp(gk_t) ⊙ rowsum(dS ∘ S_{t−1})
            }
            for (int d = 0; d < dS.Count; d++)
            {
                da[t][d] = VectorKernels.Dot(previous[d], dw);                 // da_t = S_{t−1} dw
                VectorKernels.Scale(Math.Exp(gk[t][d]), dS[d]);                // dS_{t−1} = Diag(exp gk_t) dS + a_t dwᵀ
                VectorKernels.Axpy(a[t][d], dw, dS[d]);
            }
        }
    }

    /// <summary>The states of the recurrence, replayed from the initial state: [t + 1] after row t, [0] the initial state.</summary>
    private static RowBlock[] Replay(Head head)
    {
        RowBlock k = head.Rows("k"), v = head.Rows("v"), a = head.Rows("a"), b = head.Rows("b"), gk = head.Rows("gk");
        var S = new RowBlock[head.T + 1];
        S[0] = head.InitialState();
        var w = new double[head["V"]];
        for (int t = 0; t < head.T; t++)
        {
            S[t + 1] = RowBlock.Zeros(head["K"], head["V"]);
            Array.Clear(w);
            for (int d = 0; d < S[t].Count; d++)
            {
                VectorKernels.Axpy(a[t][d], S[t][d], w);                      // w_t = S_{t−1}ᵀ a_t
            }
            for (int d = 0; d < S[t].Count; d++)
            {
                // S_t[d, :] = exp(gk_td) S_{t−1}[d, :] + b_td w_t + k_td v_t
                VectorKernels.Multiply(S[t][d], Math.Exp(gk[t][d]), S[t + 1][d]);
                VectorKernels.Axpy(b[t][d], w, S[t + 1][d]);
                VectorKernels.Axpy(k[t][d], v[t], S[t + 1][d]);
            }
        }
        return S;
    }
}
