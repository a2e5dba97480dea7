using System.Runtime.CompilerServices;
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
/// Variants: recurrent (above, token by token); parallel and chunked are gla's (DiagonalDecay.cs) under the
/// reduction hgrn2(q, gk, v) = gla(q, k = 1 − exp(gk), v, gk).
/// </code>
/// Sources: the HGRN2 paper (outer-product state expansion, input gate 1 − f); fla's fla/layers/hgrn2.py, which
/// computes g = logsigmoid(f) (with the layer's lower bound folded in), k = 1 − exp(g), and calls chunk_gla /
/// fused_recurrent_gla with q, k, v = i, g and the kernel's default scale K^-0.5. The feature maps on q (swish)
/// and the lower bound belong to the layer, not to this kernel-level form.
/// </summary>
public static class Hgrn2
{
    /// <summary>The recurrence, token by token: the definition.</summary>
    public static StateResult Recurrent(Tensor q, Tensor gk, Tensor v, GatedLinearOptions? options = null) =>
        PerHead.Run(DiagonalDecay.Bind(Inputs(q, gk, v, options)), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (head, S, o) =>
        {
            double[] forget = new double[head.K], input = new double[head.K], scaledQuery = new double[head.K];
            for (int t = 0; t < head.T; t++)
            {
                // S_t[a, :] = f_ta S_{t−1}[a, :] + (1 − f_ta) v_t with f = exp(gk);   o_t = Σ_a scale · q_ta S_t[a, :]
                VectorKernels.Exp(head.Gk[t], forget);
                for (int a = 0; a < head.K; a++)
                {
                    input[a] = 1 - forget[a];
                }
                VectorKernels.Multiply(head.Query[t], head.Scale, scaledQuery);
                StateStep.DecayWriteAndRead(new FlatRows(S.Contiguous(), head.K, head.V), forget, input, head.Value[t], scaledQuery, o[t]);
            }
        });

    /// <summary>gla's parallel form with k = 1 − exp(gk).</summary>
    public static StateResult Parallel(Tensor q, Tensor gk, Tensor v, GatedLinearOptions? options = null) =>
        DiagonalDecay.Parallel(Inputs(q, gk, v, options));

    /// <summary>gla's chunked form with k = 1 − exp(gk), chunks of <paramref name="chunkSize"/> steps.</summary>
    public static StateResult Chunked(Tensor q, Tensor gk, Tensor v, int chunkSize, GatedLinearOptions? options = null) =>
        DiagonalDecay.Chunked(Inputs(q, gk, v, options), chunkSize);

    /// <summary>The derived key k = 1 − exp(gk), the same shape as gk.</summary>
    public static Tensor InputGate(Tensor gk)
    {
        ArgumentNullException.ThrowIfNull(gk);
        Dims.RequireFloat("gk", gk);
        var k = Tensor.Zeros(gk.ShapeArray());
        for (int i = 0; i < k.Length; i++)
        {
            k.Data[i] = 1 - Math.Exp(gk.Data[i]);
        }
        return k;
    }

    private static DecayInputs Inputs(Tensor q, Tensor gk, Tensor v, GatedLinearOptions? options)
    {
        ArgumentNullException.ThrowIfNull(q);
        options ??= new GatedLinearOptions();
        var dims = new Dims(); // gk is checked here, by its own name, before k is derived from it
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("gk", Dims.RequireFloat("gk", gk), "B,T,H,K");
        return new DecayInputs(q, InputGate(gk), v, gk, null, options.Scale, options.InitialState, options.CuSeqlens);
    }
}
