using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
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
/// exact). The algorithm, step by step as GLA Sec. 4 gives it, is GlaChunkwise.cs.
/// Gates are taken as given: a positive log gate is not rejected (fla does not check either); its factor exceeds 1
/// and may overflow. NaN in any input reaches the outputs that read it.
/// </code>
/// Sources: fla's fla/ops/gla/naive.py (recurrence, scale multiplies q, state K×V, default scale K^-0.5);
/// fla/ops/gla/fused_recurrent.py (gv decays the value side of the state after gk decays the key side); fla's
/// chunk_gla names the key gate g, so g is accepted as an alias of gk.
/// </summary>
public sealed class Gla : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("gla", "gated linear", "Gla.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs =
        [
            Specs.Q, Specs.K, Specs.V,
            new("gk", "B,T,H,K", "key-dim log gate (≤ 0)", Aliases: ["g"]),
            new("gv", "B,T,H,V", "value-dim log gate (≤ 0)", Optional: true),
            Specs.InitialState, Specs.CuSeqlens,
        ],
        Outputs = Specs.StateOutputs,
        Parameters = [Specs.Scale, Specs.ChunkSize],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
        => Variants.Contains(variant) ? GlaChunkwise.Run(variant, problem, Recurrent, Rows) : throw UnknownVariant(variant);

    /// <summary>The recurrence, token by token: the definition the other variants are held to.</summary>
    public static void Recurrent(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), gk = head.Rows("gk"), o = head.Rows("o");
        RowBlock? gv = head.OptionalRows("gv");
        RowBlock S = head.State();
        var valueDecay = new double[head["V"]]; // exp(gv_t)
        for (int t = 0; t < head.T; t++)
        {
            if (gv is not null)
            {
                VectorKernels.Exp(gv[t], valueDecay);
            }
            for (int a = 0; a < S.Count; a++)
            {
                // S_t[a, :] = exp(gk_ta) · S_{t−1}[a, :] ⊙ exp(gv_t) + k_ta · v_t
                VectorKernels.Scale(Math.Exp(gk[t][a]), S[a]);
                if (gv is not null)
                {
                    VectorKernels.Multiply(S[a], valueDecay, S[a]);
                }
                VectorKernels.Axpy(k[t][a], v[t], S[a]);
                // o_t = Σ_a scale · q_ta · S_t[a, :]
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
    /// The backward pass of the recurrence, in reverse time, from the states S_t a forward replay stores (the
    /// definition keeps every state; the chunked backward recomputes one per chunk), with D_t = Diag(exp(gk_t)) and
    /// E_t = Diag(exp(gv_t)) (the identity without gv):
    /// <code>
    ///   dS = dfinal_state (0 if absent)
    ///   for t = T−1 … 0:
    ///     dS    += scale · q_t do_tᵀ                 o_t = scale · S_tᵀ q_t
    ///     dq_t   = scale · S_t do_t
    ///     dk_t   = dS v_t,   dv_t = dSᵀ k_t           S_t ∋ k_t v_tᵀ
    ///     P      = dS ⊙ (D_t S_{t−1} E_t)             S_t ∋ the decayed S_{t−1}
    ///     dgk_t  = P 1 (row sums),   dgv_t = Pᵀ 1 (column sums)
    ///     dS     = D_t dS E_t                         now dS_{t−1}
    ///   dinitial_state = dS
    /// </code>
    /// </summary>
    public static void RecurrentBackward(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RecurrentBackward(head, scale, head.Rows("k"), head.Rows("dk"), head.Rows("dgk"));
    }

    /// <summary><see cref="RecurrentBackward(Head, double)"/> with the key k and the rows of dk and dgk given (hgrn2 derives its key).</summary>
    internal static void RecurrentBackward(Head head, double scale, RowBlock k, RowBlock dk, RowBlock dgk)
    {
        RowBlock q = head.Rows("q"), v = head.Rows("v"), gk = head.Rows("gk"), dq = head.Rows("dq"), dv = head.Rows("dv");
        RowBlock? gv = head.OptionalRows("gv"), dgv = gv is null ? null : head.Rows("dgv"), dO = head.OptionalRows("do");
        RowBlock[] S = Replay(head, k);     // S[t + 1] = S_t, S[0] = S_{−1}
        RowBlock dS = head.StateGradient();
        double[] valueDecay = new double[head["V"]], decayed = new double[head["V"]];
        for (int t = head.T - 1; t >= 0; t--)
        {
            if (gv is not null)
            {
                VectorKernels.Exp(gv[t], valueDecay);
            }
            for (int a = 0; a < dS.Count; a++)
            {
                if (dO is not null)
                {
                    VectorKernels.Axpy(scale * q[t][a], dO[t], dS[a]);           // dS += scale q_t do_tᵀ
                    dq[t][a] = scale * VectorKernels.Dot(S[t + 1][a], dO[t]);   // dq_t = scale S_t do_t
                }
                dk[t][a] = VectorKernels.Dot(dS[a], v[t]);                        // dk_t = dS v_t
                VectorKernels.Axpy(k[t][a], dS[a], dv[t]);                        // dv_t = dSᵀ k_t
                double keyDecay = Math.Exp(gk[t][a]);
                VectorKernels.Multiply(S[t][a], keyDecay, decayed);               // (D_t S_{t−1} E_t)[a, :]
                if (gv is not null)
                {
                    VectorKernels.Multiply(decayed, valueDecay, decayed);
                }
                dgk[t][a] = VectorKernels.Dot(dS[a], decayed);                    // row a of P, summed
                if (dgv is not null)
                {
                    VectorKernels.Multiply(decayed, dS[a], decayed);
                    VectorKernels.AddTo(decayed, dgv[t]);                         // row a of P, into the column sums
                    VectorKernels.Multiply(dS[a], valueDecay, dS[a]);
                }
                VectorKernels.Scale(keyDecay, dS[a]);                             // dS_{t−1} = D_t dS E_t
            }
        }
    }

    /// <summary>The states S_{−1}, S_0, …, S_{T−1} of the recurrence, replayed from the initial state.</summary>
    private static RowBlock[] Replay(Head head, RowBlock k)
    {
        RowBlock v = head.Rows("v"), gk = head.Rows("gk");
        RowBlock? gv = head.OptionalRows("gv");
        var S = new RowBlock[head.T + 1];
        S[0] = head.InitialState();
        var valueDecay = new double[head["V"]];
        for (int t = 0; t < head.T; t++)
        {
            S[t + 1] = RowBlock.Zeros(S[t].Count, S[t].Width);
            if (gv is not null)
            {
                VectorKernels.Exp(gv[t], valueDecay);
            }
            for (int a = 0; a < S[t].Count; a++)
            {
                // S_t[a, :] = exp(gk_ta) · S_{t−1}[a, :] ⊙ exp(gv_t) + k_ta · v_t
                VectorKernels.Axpy(Math.Exp(gk[t][a]), S[t][a], S[t + 1][a]);
                if (gv is not null)
                {
                    VectorKernels.Multiply(S[t + 1][a], valueDecay, S[t + 1][a]);
                }
                VectorKernels.Axpy(k[t][a], v[t], S[t + 1][a]);
            }
        }
        return S;
    }

    /// <summary>The chunked backward pass (GlaChunkwiseBackward.cs) in chunks of <paramref name="chunkSize"/> steps.</summary>
    private static void ChunkwiseBackward(Head head, double scale, int chunkSize) =>
        GlaChunkwise.ChunkedBackward(GlaChunkwise.BackwardRows(head, head.Rows("k"), head.Rows("gk"), scale),
            GlaChunkwise.Gradients.Of(head, head.Rows("dk"), head.Rows("dgk")), chunkSize);

    /// <summary>The pair's rows as GLA's chunkwise algorithm reads them.</summary>
    internal static GlaChunkwise.Rows Rows(Head head, double scale) =>
        new(head.Rows("q"), head.Rows("k"), head.Rows("v"), head.Rows("gk"), head.OptionalRows("gv"), scale, head.State(), head.Rows("o"));
}
