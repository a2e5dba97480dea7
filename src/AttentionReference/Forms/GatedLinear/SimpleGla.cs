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
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, scale)),
            "parallel" => Heads.Run(problem, head => GlaChunkwise.Parallel(Rows(head, scale))),
            "chunked" => Heads.Run(problem, head => GlaChunkwise.Chunked(Rows(head, scale), chunkSize)),
            _ => throw UnknownVariant(variant),
        };
    }

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

    /// <summary>The pair's rows for GLA's algorithm: gk_t = g_t on every key channel.</summary>
    private static GlaChunkwise.Rows Rows(Head head, double scale) =>
        new(head.Rows("q"), head.Rows("k"), head.Rows("v"), GlaChunkwise.OnEveryKey(head.Series("g"), head["K"]), null, scale,
            head.State(), head.Rows("o"));
}
