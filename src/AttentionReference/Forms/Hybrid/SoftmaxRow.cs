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
/// The backward passes of those branches: the row's chain rule (<see cref="Backward"/>, the definitions' and the naive
/// form's) and FlashAttention-2's tiled backward (<see cref="TiledBackward"/>, the tiled form's), both with
/// P_j = exp(s q·k_j − L) (L the row's log-sum-exp), D = do·o:
/// <code>
///   dS_j = P_j (do·v_j − D),   dq += s Σ_j dS_j k_j,   dk_j += s dS_j q,   dv_j += P_j do
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

    /// <summary>
    /// The backward pass of <see cref="Add"/> for one query (the chain rule of the class comment): dq ← dq + …, and the
    /// rows of dk, dv of the keys J = <paramref name="keys"/> (not empty) likewise.
    /// </summary>
    public static void Backward(ReadOnlySpan<double> q, RowBlock k, RowBlock v, double scale, ReadOnlySpan<int> keys, ReadOnlySpan<double> dO,
        Span<double> dq, RowBlock dk, RowBlock dv)
    {
        var p = new double[keys.Length];
        for (int i = 0; i < keys.Length; i++)
        {
            p[i] = scale * VectorKernels.Dot(q, k[keys[i]]);
        }
        double m = VectorKernels.Max(p), l = 0;
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = Math.Exp(p[i] - m);
            l += p[i];
        }
        double D = 0; // do·o
        for (int i = 0; i < p.Length; i++)
        {
            p[i] /= l;
            D += p[i] * VectorKernels.Dot(dO, v[keys[i]]);
        }
        for (int i = 0; i < p.Length; i++)
        {
            double dS = p[i] * (VectorKernels.Dot(dO, v[keys[i]]) - D);
            VectorKernels.Axpy(scale * dS, k[keys[i]], dq);
            VectorKernels.Axpy(scale * dS, q, dk[keys[i]]);
            VectorKernels.Axpy(p[i], dO, dv[keys[i]]);
        }
    }

    /// <summary>
    /// FlashAttention-2's backward pass over one pair's rows, tiles of <paramref name="block"/> keys (outer) by
    /// <paramref name="block"/> queries (inner), each query t over the keys j with <paramref name="visible"/>(t, j) (the
    /// causal mask included): the rows' log-sum-exp L_t and D_t = do_t·o_t first, then per tile P = exp(s Q Kᵀ − L),
    /// dP = dO Vᵀ, dS = P ∘ (dP − D), dV += Pᵀ dO, dK += s dSᵀ Q, dQ += s dS K. A row without visible keys gets nothing.
    /// </summary>
    public static void TiledBackward(RowBlock q, RowBlock k, RowBlock v, RowBlock dO, double scale, int block, Func<int, int, bool> visible,
        RowBlock dq, RowBlock dk, RowBlock dv)
    {
        ArgumentNullException.ThrowIfNull(visible);
        int T = q.Count;
        var L = new double[T];
        var D = new double[T];
        var keys = new int[T];
        for (int t = 0; t < T; t++)
        {
            int count = 0;
            for (int j = 0; j < T; j++)
            {
                if (visible(t, j))
                {
                    keys[count++] = j;
                }
            }
            if (count == 0)
            {
                continue;
            }
            // L_t and D_t = Σ_j P_tj (do_t·v_j), from the row as Backward computes it.
            var scores = new double[count];
            for (int i = 0; i < count; i++)
            {
                scores[i] = scale * VectorKernels.Dot(q[t], k[keys[i]]);
            }
            double m = VectorKernels.Max(scores), l = 0;
            foreach (double score in scores)
            {
                l += Math.Exp(score - m);
            }
            L[t] = m + Math.Log(l);
            for (int i = 0; i < count; i++)
            {
                D[t] += Math.Exp(scores[i] - L[t]) * VectorKernels.Dot(dO[t], v[keys[i]]);
            }
        }
        for (int j0 = 0; j0 < T; j0 += block)
        {
            for (int t0 = 0; t0 < T; t0 += block)
            {
                for (int t = t0; t < Math.Min(t0 + block, T); t++)
                {
                    for (int j = j0; j < Math.Min(j0 + block, T); j++)
                    {
                        if (!visible(t, j))
                        {
                            continue;
                        }
                        double P = Math.Exp(scale * VectorKernels.Dot(q[t], k[j]) - L[t]);
                        double dS = P * (VectorKernels.Dot(dO[t], v[j]) - D[t]);
                        VectorKernels.Axpy(P, dO[t], dv[j]);
                        VectorKernels.Axpy(scale * dS, q[t], dk[j]);
                        VectorKernels.Axpy(scale * dS, k[j], dq[t]);
                    }
                }
            }
        }
    }
}
