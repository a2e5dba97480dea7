using System.Runtime.CompilerServices;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// Retention (RetNet, Sun et al. 2023, arXiv 2307.08621): a fixed decay γ_h per head, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   gamma [H] optional
///   initial_state [N,H,K,V] optional   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,H,V]   final_state [N,H,K,V]
///
/// Per sequence and head h:
///   S_t = γ_h S_{t−1} + k_t v_tᵀ               S_{−1} = initial_state (0 if absent)
///   o_t = scale · S_tᵀ q_t                     scale = K^(-1/2) unless given
///   γ_h = 1 − 2^(−5−h), h = 0 … H−1, unless gamma is given (0 &lt; γ_h ≤ 1)
///
/// Variants: recurrent (above, token by token); parallel and chunked are simple_gla's under the reduction
/// retention(γ) = simple_gla(g_t = log γ_h for every t), i.e. gla with gk_t = log γ_h · 1.
/// </code>
/// Sources: the RetNet paper (γ = 1 − 2^(−5−arange(H))); fla's fla/ops/retention (chunk_retention computes
/// g = log(1 − 2^(−5−h)) and calls the simple_gla kernel; scale multiplies q, default K^-0.5). RetNet's own
/// group norm and the paper's decay-matrix normalisation are layer parts outside the kernel, as in fla.
/// Lightning attention (MiniMax) is this form with its per-head slopes as gamma = exp(−slope).
/// </summary>
public static class Retention
{
    /// <summary>The recurrence, token by token: the definition.</summary>
    public static StateResult Recurrent(Tensor q, Tensor k, Tensor v, RetentionOptions? options = null)
    {
        options ??= new RetentionOptions();
        double[] γ = Gammas(q, options.Gamma);
        var inputs = Inputs(q, k, v, options);
        return PerHead.Run(DiagonalDecay.Bind(inputs), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (head, S, o) =>
        {
            double[] decay = new double[head.K], scaledQuery = new double[head.K];
            Array.Fill(decay, γ[head.Head]);
            for (int t = 0; t < head.T; t++)
            {
                // S_t[a, :] = γ_h S_{t−1}[a, :] + k_ta v_t;   o_t = Σ_a scale · q_ta S_t[a, :]
                VectorKernels.Multiply(head.Query[t], head.Scale, scaledQuery);
                StateStep.DecayWriteAndRead(new FlatRows(S.Contiguous(), head.K, head.V), decay, head.Key[t], head.Value[t], scaledQuery, o[t]);
            }
        });
    }

    /// <summary>simple_gla's parallel form with g_t = log γ_h.</summary>
    public static StateResult Parallel(Tensor q, Tensor k, Tensor v, RetentionOptions? options = null) =>
        DiagonalDecay.Parallel(Inputs(q, k, v, options ?? new RetentionOptions()));

    /// <summary>simple_gla's chunked form with g_t = log γ_h, chunks of <paramref name="chunkSize"/> steps.</summary>
    public static StateResult Chunked(Tensor q, Tensor k, Tensor v, int chunkSize, RetentionOptions? options = null) =>
        DiagonalDecay.Chunked(Inputs(q, k, v, options ?? new RetentionOptions()), chunkSize);

    /// <summary>γ_h: the given gamma [H], or RetNet's 1 − 2^(−5−h).</summary>
    public static double[] Gammas(Tensor q, Tensor? gamma)
    {
        ArgumentNullException.ThrowIfNull(q);
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        if (gamma is null)
        {
            return Enumerable.Range(0, dims["H"]).Select(h => 1 - Math.Pow(2, -5 - h)).ToArray();
        }
        dims.Bind("gamma", Dims.RequireFloat("gamma", gamma), "H");
        if (gamma.Data.Any(γ => !(γ > 0 && γ <= 1)))
        {
            throw new InputException($"every decay must lie in (0, 1], found {gamma.Data.First(γ => !(γ > 0 && γ <= 1))}", tensor: "gamma");
        }
        return gamma.Data;
    }

    /// <summary>The simple_gla inputs: g[b,t,h] = log γ_h.</summary>
    private static DecayInputs Inputs(Tensor q, Tensor k, Tensor v, RetentionOptions options)
    {
        double[] γ = Gammas(q, options.Gamma);
        var g = Tensor.Zeros(q.Dim(0), q.Dim(1), q.Dim(2));
        for (int i = 0; i < g.Length; i++)
        {
            g.Data[i] = Math.Log(γ[i % γ.Length]);
        }
        return SimpleGla.Inputs(q, k, v, g, options);
    }
}

/// <summary>The options of <see cref="Retention"/>: the shared ones and the per-head decays.</summary>
public sealed record RetentionOptions : GatedLinearOptions
{
    /// <summary>γ [H], each in (0, 1]; null means RetNet's 1 − 2^(−5−h).</summary>
    public Tensor? Gamma { get; init; }
}
