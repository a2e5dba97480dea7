using System.Runtime.CompilerServices;
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
/// Variants: recurrent (above, token by token); parallel and chunked are gla's (DiagonalDecay.cs) under the
/// reduction  simple_gla(g) = gla(gk_t = g_t·1), the same gate on every key channel.
/// </code>
/// Sources: fla's fla/ops/simple_gla/naive.py (recurrence, scale multiplies q, default K^-0.5). Mamba-2's SSD and
/// Lightning attention are this form under a renaming (FORMS.md's reductions).
/// </summary>
public static class SimpleGla
{
    /// <summary>The recurrence, token by token: the definition.</summary>
    public static StateResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor g, GatedLinearOptions? options = null)
    {
        var inputs = Inputs(q, k, v, g, options);
        return PerHead.Run(DiagonalDecay.Bind(inputs), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (head, S, o) =>
        {
            double[] gate = PerHead.Scalars(g, head.Slice, head.Head);
            double[] decay = new double[head.K], scaledQuery = new double[head.K];
            for (int t = 0; t < head.T; t++)
            {
                // S_t[a, :] = exp(g_t) S_{t−1}[a, :] + k_ta v_t;   o_t = Σ_a scale · q_ta S_t[a, :]
                Array.Fill(decay, Math.Exp(gate[t]));
                VectorKernels.Multiply(head.Query[t], head.Scale, scaledQuery);
                StateStep.DecayWriteAndRead(new FlatRows(S.Contiguous(), head.K, head.V), decay, head.Key[t], head.Value[t], scaledQuery, o[t]);
            }
        });
    }

    /// <summary>gla's parallel form with gk_t = g_t·1.</summary>
    public static StateResult Parallel(Tensor q, Tensor k, Tensor v, Tensor g, GatedLinearOptions? options = null) =>
        DiagonalDecay.Parallel(Inputs(q, k, v, g, options));

    /// <summary>gla's chunked form with gk_t = g_t·1, chunks of <paramref name="chunkSize"/> steps.</summary>
    public static StateResult Chunked(Tensor q, Tensor k, Tensor v, Tensor g, int chunkSize, GatedLinearOptions? options = null) =>
        DiagonalDecay.Chunked(Inputs(q, k, v, g, options), chunkSize);

    /// <summary>Checks g [B,T,H] against q and spreads it over the key channels: gk_t = g_t·1.</summary>
    internal static DecayInputs Inputs(Tensor q, Tensor k, Tensor v, Tensor g, GatedLinearOptions? options)
    {
        ArgumentNullException.ThrowIfNull(q);
        options ??= new GatedLinearOptions();
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("g", Dims.RequireFloat("g", g), "B,T,H");
        return new DecayInputs(q, k, v, SpreadOverKeys(g, dims["K"]), null, options.Scale, options.InitialState, options.CuSeqlens);
    }

    /// <summary>gk[b,t,h,a] = g[b,t,h] for every key channel a.</summary>
    internal static Tensor SpreadOverKeys(Tensor g, int keyDim)
    {
        var gk = Tensor.Zeros(g.Dim(0), g.Dim(1), g.Dim(2), keyDim);
        for (int i = 0; i < g.Length; i++)
        {
            gk.Data.AsSpan(i * keyDim, keyDim).Fill(g.Data[i]);
        }
        return gk;
    }
}
