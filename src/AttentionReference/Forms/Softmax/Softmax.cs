using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// Softmax attention, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as flash-attn):
///   q [B,Tq,Hq,K]   k [B,Tk,Hkv,K]   v [B,Tk,Hkv,V]   →   o [B,Tq,Hq,V]   lse [B,Tq,Hq]
///   Hq is a multiple of Hkv (GQA/MQA): query head h reads key/value head h / (Hq/Hkv).
///
/// For each batch b, query head h and query position i:
///   s_ij  = scale · q_i · k_j                         scale = K^(-1/2) unless given
///   s_ij ← c · tanh(s_ij / c)                         softcap c > 0 only
///   s_ij ← s_ij − slope_h · |i + Tk − Tq − j|         alibi_slopes only
///   A_i   = { j : i + Tk − Tq − wl ≤ j ≤ i + Tk − Tq + wr }   the allowed keys
///   m_i   = max_{j∈A_i} s_ij                          the running max: no exp ever overflows
///   l_i   = Σ_{j∈A_i} exp(s_ij − m_i)
///   o_i   = Σ_{j∈A_i} exp(s_ij − m_i) v_j / l_i
///   lse_i = m_i + ln l_i                              natural log, as flash-attn's softmax_lse
/// </code>
/// Masks. The diagonal i + Tk − Tq is flash-attn's bottom-right alignment (flash-attn ≥ 2.1): when Tq ≠ Tk the last
/// query sees the last key. <c>causal</c> sets wr = 0; <c>window_left</c> = wl and <c>window_right</c> = wr are
/// counted from that diagonal, and −1 means unbounded on that side (flash-attn's window_size). With
/// <c>causal_align=top_left</c> the diagonal is i instead (PyTorch SDPA's is_causal, which aligns top-left).
///
/// Empty rows. A query with no allowed key (A_i = ∅, e.g. Tq > Tk under causal) gives o_i = 0 and lse_i = −∞, as
/// flash-attn does; PyTorch SDPA's math backend gives NaN there instead (softmax over all −∞). We follow
/// flash-attn because its kernels are the ones checked against us.
///
/// NaN. A NaN in q_i, in an allowed k_j or v_j reaches o_i and lse_i; a NaN in a key outside A_i does not, because
/// disallowed keys are never read (flash-attn's kernels skip masked blocks the same way).
///
/// Sources: Vaswani et al. 2017 (the definition); Dao 2023, FlashAttention-2 (lse, causal alignment, windows,
/// softcap applied to the scaled score before ALiBi, as flash-attn's kernels do); flash-attn's README for
/// the bottom-right convention.
///
/// Variant <c>naive</c>: one row at a time, the row's scores materialised, then max, exp, sum.
/// </summary>
public static class Softmax
{
    /// <summary>The reference: scores of one query row materialised, then a stable softmax.</summary>
    public static SoftmaxResult Naive(Tensor q, Tensor k, Tensor v, SoftmaxOptions? options = null)
    {
        var problem = SoftmaxProblem.Bind(q, k, v, options ?? new SoftmaxOptions());
        var (batch, tq, hq, dv) = (problem.Batch, problem.Tq, problem.Hq, problem.Dv);
        var o = Tensor.Zeros(batch, tq, hq, dv);
        var lse = Tensor.Zeros(batch, tq, hq);

        // One task per (b, i, h) row; each row is computed start to end by one thread, so the result does not
        // depend on the number of threads.
        Parallel.For(0, batch * tq * hq, () => new double[problem.Tk], (row, _, scores) =>
        {
            int h = row % hq, i = row / hq % tq, b = row / hq / tq;
            var (first, end) = problem.AllowedKeys(i);
            Span<double> oRow = o.Data.AsSpan(((b * tq + i) * hq + h) * dv, dv);
            if (first >= end)
            {
                lse.Data[row] = double.NegativeInfinity; // no allowed key: o = 0, lse = −∞
                return scores;
            }

            Span<double> s = scores.AsSpan(0, end - first);
            for (int j = first; j < end; j++)
            {
                s[j - first] = problem.Score(b, h, i, j);
            }
            double m = VectorKernels.Max(s);
            double l = VectorKernels.ExpShiftedInPlace(s, m); // s now holds exp(s − m)
            for (int j = first; j < end; j++)
            {
                VectorKernels.Axpy(s[j - first], problem.ValueRow(b, h, j), oRow);
            }
            VectorKernels.Scale(1 / l, oRow);
            lse.Data[row] = m + Math.Log(l);
            return scores;
        }, _ => { });

        return new SoftmaxResult(o, lse);
    }
}

/// <summary>Where the causal diagonal sits when Tq ≠ Tk.</summary>
public enum CausalAlignment
{
    /// <summary>flash-attn ≥ 2.1: query i's diagonal key is i + Tk − Tq (the last query sees the last key).</summary>
    BottomRight,
    /// <summary>PyTorch SDPA's is_causal: query i's diagonal key is i.</summary>
    TopLeft,
}

/// <summary>The options of <see cref="Softmax"/>; defaults give full (non-causal) attention with scale K^-1/2.</summary>
public sealed record SoftmaxOptions
{
    /// <summary>Score scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>Causal masking (window_right = 0).</summary>
    public bool Causal { get; init; }

    /// <summary>Where the diagonal sits when Tq ≠ Tk.</summary>
    public CausalAlignment Alignment { get; init; } = CausalAlignment.BottomRight;

    /// <summary>Keys allowed left of the diagonal; −1 = unbounded.</summary>
    public int WindowLeft { get; init; } = -1;

    /// <summary>Keys allowed right of the diagonal; −1 = unbounded (0 when causal).</summary>
    public int WindowRight { get; init; } = -1;

    /// <summary>Softcap c: score ← c·tanh(score/c); 0 = off.</summary>
    public double Softcap { get; init; }

    /// <summary>ALiBi slopes [Hq] or [B,Hq]; null = none.</summary>
    public Tensor? AlibiSlopes { get; init; }
}

/// <summary>Outputs of softmax attention: o [B,Tq,Hq,V] and lse [B,Tq,Hq].</summary>
public sealed record SoftmaxResult(Tensor O, Tensor Lse);
