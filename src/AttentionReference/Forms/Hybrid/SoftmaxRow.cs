using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// Softmax attention of one query over a given set of keys, exact, shifted by the row's max: the row that the definitions
/// of nats_l (its softmax branch) and based (its window branch) read. Their other variants call softmax itself, through
/// its contract.
/// <code>
///   o += Σ_{j∈J} exp(s q·k_j − m) v_j / Σ_{j∈J} exp(s q·k_j − m),   m = max_{j∈J} s q·k_j
/// </code>
/// </summary>
internal static class SoftmaxRow
{
    /// <summary>o ← o + the softmax-weighted mean of the rows v_j over the keys J = <paramref name="keys"/> (not empty).</summary>
    public static void Add(ReadOnlySpan<double> q, RowBlock k, RowBlock v, double scale, ReadOnlySpan<int> keys, Span<double> o)
    {
        Span<double> scores = keys.Length <= 256 ? stackalloc double[keys.Length] : new double[keys.Length];
        for (int i = 0; i < keys.Length; i++)
        {
            scores[i] = scale * VectorKernels.Dot(q, k[keys[i]]);
        }
        double m = VectorKernels.Max(scores), l = 0;
        var weighted = new double[o.Length]; // Σ_j exp(s q·k_j − m) v_j
        for (int i = 0; i < keys.Length; i++)
        {
            double p = Math.Exp(scores[i] - m);
            l += p;
            VectorKernels.Axpy(p, v[keys[i]], weighted);
        }
        for (int c = 0; c < o.Length; c++)
        {
            o[c] += weighted[c] / l;
        }
    }
}
