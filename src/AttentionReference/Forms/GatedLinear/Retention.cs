using AttentionReference.Forms.Common;
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
/// Variants: recurrent (above, token by token); parallel and chunked are GLA's chunkwise algorithm (GlaChunkwise.cs)
/// under the reduction retention(γ) = simple_gla(g_t = log γ_h for every t), i.e. gla with gk_t = log γ_h · 1.
/// </code>
/// Sources: the RetNet paper (γ = 1 − 2^(−5−arange(H))); fla's fla/ops/retention (chunk_retention computes
/// g = log(1 − 2^(−5−h)) and calls the simple_gla kernel; scale multiplies q, default K^-0.5). RetNet's own
/// group norm and the paper's decay-matrix normalisation are layer parts outside the kernel, as in fla.
/// Lightning attention (MiniMax) is this form with its per-head slopes as gamma = exp(−slope).
/// </summary>
public sealed class Retention : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("retention", "gated linear", "Retention.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs =
        [
            Specs.Q, Specs.K, Specs.V,
            new("gamma", "H", "per-head decay in (0, 1] (default 1 − 2^(−5−h))", Optional: true),
            Specs.InitialState, Specs.CuSeqlens,
        ],
        Outputs = Specs.StateOutputs,
        Parameters = [Specs.Scale, Specs.ChunkSize],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        double[] γ = Gammas(problem);
        return Variants.Contains(variant)
            ? GlaChunkwise.Run(variant, problem, (head, scale) => Recurrent(head, γ[head.Index], scale),
                (head, scale) => Rows(head, γ[head.Index], scale))
            : throw UnknownVariant(variant);
    }

    /// <summary>The recurrence, token by token: the definition.</summary>
    public static void Recurrent(Head head, double γ, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o"), S = head.State();
        for (int t = 0; t < head.T; t++)
        {
            for (int a = 0; a < S.Count; a++)
            {
                // S_t[a, :] = γ_h · S_{t−1}[a, :] + k_ta · v_t;   o_t = Σ_a scale · q_ta · S_t[a, :]
                VectorKernels.Scale(γ, S[a]);
                VectorKernels.Axpy(k[t][a], v[t], S[a]);
                VectorKernels.Axpy(scale * q[t][a], S[a], o[t]);
            }
        }
    }

    /// <summary>γ_h for every head: the given gamma (each in (0, 1]), or RetNet's 1 − 2^(−5−h).</summary>
    public static double[] Gammas(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (problem.Optional("gamma") is not { } gamma)
        {
            return Enumerable.Range(0, problem["H"]).Select(h => 1 - Math.Pow(2, -5 - h)).ToArray();
        }
        if (gamma.Data.Any(γ => !(γ > 0 && γ <= 1)))
        {
            throw new InputException($"every decay must lie in (0, 1], found {gamma.Data.First(γ => !(γ > 0 && γ <= 1))}", tensor: "gamma");
        }
        return gamma.Data;
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        double[] γ = Gammas(problem);
        return Variants.Contains(variant)
            ? GlaChunkwise.Backward(variant, problem, (head, scale) => RecurrentBackward(head, γ[head.Index], scale),
                (head, scale, chunkSize) => ChunkwiseBackward(head, γ[head.Index], scale, chunkSize))
            : throw UnknownVariant(variant);
    }

    /// <summary>
    /// The backward pass of the recurrence: simple_gla's reverse-time recurrence (SimpleGla.RecurrentBackward) with
    /// g_t = log γ_h, whose dS_{t−1} = γ_h dS_t and dg_t = γ_h ⟨dS_t, S_{t−1}⟩; then, γ_h being one decay for every step
    /// of the head,
    /// <code>
    ///   dγ_h = Σ_t ⟨dS_t, S_{t−1}⟩ = Σ_t dg_t / γ_h      summed over the head's steps and sequences
    /// </code>
    /// only where gamma is given (RetNet's default decays are not an input).
    /// </summary>
    public static void RecurrentBackward(Head head, double γ, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        Series dg = RowBlock.Zeros(head.T, 1).AsSeries();
        SimpleGla.RecurrentBackward(head, scale, LogGates(head.T, 1, γ).AsSeries(), dg);
        GammaGradient(head, γ, dg);
    }

    /// <summary>The chunked backward pass of gla (GlaChunkwiseBackward.cs) with gk_t = log γ_h · 1, then dγ_h.</summary>
    private static void ChunkwiseBackward(Head head, double γ, double scale, int chunkSize)
    {
        var dgk = RowBlock.Zeros(head.T, head["K"]);
        GlaChunkwise.ChunkedBackward(GlaChunkwise.BackwardRows(head, head.Rows("k"), LogGates(head.T, head["K"], γ), scale),
            GlaChunkwise.Gradients.Of(head, head.Rows("dk"), dgk), chunkSize);
        Series dg = RowBlock.Zeros(head.T, 1).AsSeries();
        GlaChunkwise.SumOverKeys(dgk, dg);
        GammaGradient(head, γ, dg);
    }

    /// <summary>dγ_h += Σ_t dg_t / γ_h for this pair's steps, where gamma is given (the runner sums the pairs).</summary>
    private static void GammaGradient(Head head, double γ, Series dg)
    {
        if (!head.Problem.Has("gamma"))
        {
            return;
        }
        double sum = 0;
        for (int t = 0; t < dg.Length; t++)
        {
            sum += dg[t];
        }
        head.Row("dgamma")[0] += sum / γ;
    }

    /// <summary>The pair's rows for GLA's algorithm: gk_t = log γ_h on every key channel and step.</summary>
    private static GlaChunkwise.Rows Rows(Head head, double γ, double scale) =>
        new(head.Rows("q"), head.Rows("k"), head.Rows("v"), LogGates(head.T, head["K"], γ), null, scale, head.State(), head.Rows("o"));

    /// <summary><paramref name="steps"/> rows of <paramref name="width"/> values log γ.</summary>
    private static RowBlock LogGates(int steps, int width, double γ)
    {
        var gk = RowBlock.Zeros(steps, width);
        for (int t = 0; t < steps; t++)
        {
            gk[t].Fill(Math.Log(γ));
        }
        return gk;
    }
}
