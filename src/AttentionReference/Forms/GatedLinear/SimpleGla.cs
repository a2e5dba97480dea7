using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// Simple gated linear attention (fla's simple_gla): one scalar log gate per head and step, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   g [B,T,H]
///   initial_state [N,H,K,V] optional   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,H,V]   final_state [N,H,K,V]
///
/// Per sequence and head, with log gates g_t ≤ 0:
///   S_t = exp(g_t) S_{t−1} + k_t v_tᵀ          S_{−1} = initial_state (0 if absent)
///   o_t = scale · S_tᵀ q_t                     scale = K^(-1/2) unless given
///
/// Variants: recurrent (above, token by token); parallel and chunked are GLA's chunkwise algorithm (GlaChunkwise.cs)
/// under the reduction  simple_gla(g) = gla(gk_t = g_t·1), the same gate on every key channel.
/// </code>
/// Sources: fla's fla/ops/simple_gla/naive.py (recurrence, scale multiplies q, default K^-0.5). Mamba-2's SSD and
/// Lightning attention are this form under a renaming (FORMS.md's reductions).
/// </summary>
public sealed class SimpleGla : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("simple_gla", "gated linear", "SimpleGla.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs = [Specs.Q, Specs.K, Specs.V, new("g", "B,T,H", "per-head log gate (≤ 0)"), Specs.InitialState, Specs.CuSeqlens],
        Outputs = Specs.StateOutputs,
        Parameters = [Specs.Scale, Specs.ChunkSize],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
        => Variants.Contains(variant) ? GlaChunkwise.Run(variant, problem, Recurrent, Rows) : throw UnknownVariant(variant);

    /// <summary>The recurrence, token by token: the definition.</summary>
    public static void Recurrent(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o"), S = head.State();
        Series g = head.Series("g");
        for (int t = 0; t < head.T; t++)
        {
            for (int a = 0; a < S.Count; a++)
            {
                // S_t[a, :] = exp(g_t) · S_{t−1}[a, :] + k_ta · v_t;   o_t = Σ_a scale · q_ta · S_t[a, :]
                VectorKernels.Scale(Math.Exp(g[t]), S[a]);
                VectorKernels.Axpy(k[t][a], v[t], S[a]);
                VectorKernels.Axpy(scale * q[t][a], S[a], o[t]);
            }
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
        => Variants.Contains(variant) ? GlaChunkwise.Backward(variant, problem, RecurrentBackward, ChunkwiseBackward) : throw UnknownVariant(variant);

    /// <summary>
    /// The backward pass of the recurrence, in reverse time, from the states S_t a forward replay stores
    /// (T·K·V values per pair: the definition keeps every state; the chunked backward recomputes them per chunk):
    /// <code>
    ///   dS = dfinal_state (0 if absent)
    ///   for t = T−1 … 0:
    ///     dS   += scale · q_t do_tᵀ          o_t = scale · S_tᵀ q_t
    ///     dq_t  = scale · S_t do_t
    ///     dk_t  = dS v_t,   dv_t = dSᵀ k_t    S_t ∋ k_t v_tᵀ
    ///     dg_t  = exp(g_t) ⟨dS, S_{t−1}⟩      S_t ∋ exp(g_t) S_{t−1}
    ///     dS    = exp(g_t) dS                 now dS_{t−1}
    ///   dinitial_state = dS
    /// </code>
    /// </summary>
    public static void RecurrentBackward(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RecurrentBackward(head, scale, head.Series("g"), head.Series("dg"));
    }

    /// <summary><see cref="RecurrentBackward(Head, double)"/> with the log gates g and the series dg given (retention's are log γ_h).</summary>
    internal static void RecurrentBackward(Head head, double scale, Series g, Series dg)
    {
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v");
        RowBlock dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv");
        RowBlock? dO = head.OptionalRows("do");
        RowBlock[] S = Replay(head, g, k, v);     // S[t + 1] = S_t, S[0] = S_{−1}
        RowBlock dS = head.StateGradient();
        for (int t = head.T - 1; t >= 0; t--)
        {
            double decay = Math.Exp(g[t]), overlap = 0;
            for (int a = 0; a < dS.Count; a++)
            {
                if (dO is not null)
                {
                    VectorKernels.Axpy(scale * q[t][a], dO[t], dS[a]);          // dS += scale q_t do_tᵀ
                    dq[t][a] = scale * VectorKernels.Dot(S[t + 1][a], dO[t]);  // dq_t = scale S_t do_t
                }
                dk[t][a] = VectorKernels.Dot(dS[a], v[t]);                       // dk_t = dS v_t
                VectorKernels.Axpy(k[t][a], dS[a], dv[t]);                       // dv_t = dSᵀ k_t
                overlap += VectorKernels.Dot(dS[a], S[t][a]);                    // ⟨dS, S_{t−1}⟩
                VectorKernels.Scale(decay, dS[a]);                               // dS_{t−1} = exp(g_t) dS
            }
            dg[t] = decay * overlap;
        }
    }

    /// <summary>The states S_{−1}, S_0, …, S_{T−1} of the recurrence, replayed from the initial state.</summary>
    private static RowBlock[] Replay(Head head, Series g, RowBlock k, RowBlock v)
    {
        var S = new RowBlock[head.T + 1];
        S[0] = head.InitialState();
        for (int t = 0; t < head.T; t++)
        {
            S[t + 1] = RowBlock.Zeros(S[t].Count, S[t].Width);
            for (int a = 0; a < S[t].Count; a++)
            {
                VectorKernels.Axpy(Math.Exp(g[t]), S[t][a], S[t + 1][a]);        // S_t = exp(g_t) S_{t−1} + k_t v_tᵀ
                VectorKernels.Axpy(k[t][a], v[t], S[t + 1][a]);
            }
        }
        return S;
    }

    /// <summary>
    /// The chunked backward pass of gla (GlaChunkwiseBackward.cs) with gk_t = g_t·1, then dg_t = Σ_a dgk_ta: the one
    /// gate is spread over the key channels, so its gradient gathers theirs.
    /// </summary>
    private static void ChunkwiseBackward(Head head, double scale, int chunkSize)
    {
        var dgk = RowBlock.Zeros(head.T, head["K"]);
        GlaChunkwise.ChunkedBackward(GlaChunkwise.BackwardRows(head, head.Rows("k"), GlaChunkwise.OnEveryKey(head.Series("g"), head["K"]), scale),
            GlaChunkwise.Gradients.Of(head, head.Rows("dk"), dgk), chunkSize);
        GlaChunkwise.SumOverKeys(dgk, head.Series("dg"));
    }

    /// <summary>The pair's rows for GLA's algorithm: gk_t = g_t on every key channel.</summary>
    private static GlaChunkwise.Rows Rows(Head head, double scale) =>
        new(head.Rows("q"), head.Rows("k"), head.Rows("v"), GlaChunkwise.OnEveryKey(head.Series("g"), head["K"]), null, scale,
            head.State(), head.Rows("o"));
}
