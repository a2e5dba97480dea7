using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// HGRN2 (Qin et al. 2024, arXiv 2404.07904): gla whose input gate is tied to the forget gate, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   gk [B,T,H,K] (fla's chunk_gla name g)   v [B,T,H,V]   (no k: it is derived)
///   initial_state [N,H,K,V] optional   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,H,V]   final_state [N,H,K,V]
///
/// Per sequence and head, with log forget gates gk_t ≤ 0:
///   k_t = 1 − exp(gk_t)                                     the input gate, channel by channel
///   S_t = Diag(exp(gk_t)) S_{t−1} + k_t v_tᵀ                S_{−1} = initial_state (0 if absent)
///   o_t = scale · S_tᵀ q_t                                  scale = K^(-1/2) unless given
///
/// Variants: recurrent (above, token by token); parallel and chunked are GLA's chunkwise algorithm (GlaChunkwise.cs)
/// under the reduction hgrn2(q, gk, v) = gla(q, k = 1 − exp(gk), v, gk).
/// </code>
/// Sources: the HGRN2 paper (outer-product state expansion, input gate 1 − f); fla's fla/layers/hgrn2.py, which
/// computes g = logsigmoid(f) (with the layer's lower bound folded in), k = 1 − exp(g), and calls chunk_gla /
/// fused_recurrent_gla with q, k, v = i, g and the kernel's default scale K^-0.5. The feature maps on q (swish)
/// and the lower bound belong to the layer, not to this kernel-level form.
/// </summary>
public sealed class Hgrn2 : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("hgrn2", "gated linear", "Hgrn2.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs =
        [
            Specs.Q,
            new("gk", "B,T,H,K", "key-dim log forget gate (≤ 0); the input gate is k = 1 − exp(gk)", Aliases: ["g"]),
            new("v", "B,T,H,V", "values (HGRN2's input i)"),
            Specs.InitialState, Specs.CuSeqlens,
        ],
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
        RowBlock q = head.Rows("q"), gk = head.Rows("gk"), v = head.Rows("v"), o = head.Rows("o"), S = head.State();
        for (int t = 0; t < head.T; t++)
        {
            for (int a = 0; a < S.Count; a++)
            {
                // S_t[a, :] = f_ta · S_{t−1}[a, :] + (1 − f_ta) · v_t with f = exp(gk);   o_t = Σ_a scale · q_ta · S_t[a, :]
                double f = Math.Exp(gk[t][a]);
                VectorKernels.Scale(f, S[a]);
                VectorKernels.Axpy(1 - f, v[t], S[a]);
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
    /// The backward pass of the recurrence: gla's reverse-time recurrence (Gla.RecurrentBackward) with the derived key
    /// k_t = 1 − exp(gk_t), whose dk_t = dS_t v_t is no output but flows on into the gate:
    /// <code>
    ///   dgk_t = exp(gk_t) ⊙ rowsum(dS_t ⊙ S_{t−1})  −  exp(gk_t) ⊙ dk_t        the forget gate, then the input gate
    /// </code>
    /// </summary>
    public static void RecurrentBackward(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock gk = head.Rows("gk"), dgk = head.Rows("dgk"), dk = RowBlock.Zeros(gk.Count, gk.Width);
        Gla.RecurrentBackward(head, scale, InputGate(gk), dk, dgk);
        ThroughInputGate(gk, dk, dgk);
    }

    /// <summary>The chunked backward pass of gla (GlaChunkwiseBackward.cs) with k = 1 − exp(gk), then the path through k.</summary>
    private static void ChunkwiseBackward(Head head, double scale, int chunkSize)
    {
        RowBlock gk = head.Rows("gk"), dgk = head.Rows("dgk"), dk = RowBlock.Zeros(gk.Count, gk.Width);
        GlaChunkwise.ChunkedBackward(GlaChunkwise.BackwardRows(head, InputGate(gk), gk, scale), GlaChunkwise.Gradients.Of(head, dk, dgk), chunkSize);
        ThroughInputGate(gk, dk, dgk);
    }

    /// <summary>dgk += −exp(gk) ⊙ dk: the gradient of the derived key k = 1 − exp(gk), carried into its gate.</summary>
    private static void ThroughInputGate(RowBlock gk, RowBlock dk, RowBlock dgk)
    {
        for (int t = 0; t < gk.Count; t++)
        {
            for (int a = 0; a < gk.Width; a++)
            {
                dgk[t][a] -= Math.Exp(gk[t][a]) * dk[t][a];
            }
        }
    }

    /// <summary>The pair's rows for GLA's algorithm, with the derived key k_t = 1 − exp(gk_t).</summary>
    private static GlaChunkwise.Rows Rows(Head head, double scale)
    {
        RowBlock gk = head.Rows("gk");
        return new(head.Rows("q"), InputGate(gk), head.Rows("v"), gk, null, scale, head.State(), head.Rows("o"));
    }

    /// <summary>The input gate k_t = 1 − exp(gk_t), channel by channel.</summary>
    private static RowBlock InputGate(RowBlock gk)
    {
        var k = RowBlock.Zeros(gk.Count, gk.Width);
        for (int t = 0; t < gk.Count; t++)
        {
            for (int a = 0; a < gk.Width; a++)
            {
                k[t][a] = 1 - Math.Exp(gk[t][a]);
            }
        }
        return k;
    }
}
