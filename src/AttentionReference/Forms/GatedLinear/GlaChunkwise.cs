using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// GLA's chunkwise algorithm (Yang et al. 2023, arXiv 2312.06635, Sec. 4.1–4.3): the parallel and chunked variants of
/// every form with a diagonal decay, gla itself and, through their reductions, simple_gla, retention and hgrn2.
/// <code>
/// One (sequence, head) pair: rows q_t, k_t [K], v_t [V], log gates gk_t [K] (key side) and optionally gv_t [V]
/// (value side), the state S [K x V] entering the sequence, the recurrence of Gla.cs:
///   S_t = Diag(exp(gk_t)) S_{t−1} Diag(exp(gv_t)) + k_t v_tᵀ,   o_t = scale · S_tᵀ q_t
///
/// Chunks [s, e) of C steps (the last may be shorter), with the log gates summed from the chunk start,
/// Γ_t = Σ_{r=s..t} gk_r and Ψ_t = Σ_{r=s..t} gv_r, and S the state entering the chunk:
///   1. inter-chunk part:  o_tc  = scale · Σ_a q_ta exp(Γ_ta) S_ac exp(Ψ_tc)
///   2. intra-chunk part:  o_tc += scale · Σ_{s≤j≤t} A_tj exp(Ψ_tc − Ψ_jc) v_jc,   A_tj = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja)
///   3. state to the next chunk:
///         S_ac ← exp(Γ_{e−1,a}) S_ac exp(Ψ_{e−1,c}) + Σ_{s≤j&lt;e} k_ja exp(Γ_{e−1,a} − Γ_ja) v_jc exp(Ψ_{e−1,c} − Ψ_jc)
/// The parallel form is one chunk spanning the whole sequence (GLA Sec. 4.1's decay matrix).
///
/// Every exponent is a difference Γ_t − Γ_j with j ≤ t, a sum of log gates ≤ 0, so every factor lies in [0, 1]; it is
/// computed as one exp of the difference, never as exp(Γ_t)·exp(−Γ_j), which overflows once the gates have summed past
/// −709 (36 steps of −20). GLA's kernels factor the decay between sub-chunks of 16 steps and keep differences only on
/// the diagonal sub-chunks ("secondary chunking"); with log gates down to −20 per step no factorisation is safe, so
/// the reference takes that scheme to its limit: every pair uses its own difference, and nothing is divided by a
/// cumulative product. C ≥ 1 is free (it need not divide T).
///
/// Legend (code → paper): Γ, Ψ = GLA's log b summed from the chunk start; A = GLA's P; gk = log α, gv = log β.
/// Arithmetic: every product is a dot of contiguous rows or a sum of rows weighted by scalars (VectorKernels), each
/// decay one vectorised exp of a difference, every sum in a fixed order.
/// The backward pass, chunk by chunk in reverse with the states recomputed, is GlaChunkwiseBackward.cs.
/// </code>
/// </summary>
internal static partial class GlaChunkwise
{
    /// <summary>The pair's rows: inputs (gv null: no value-side decay), the state S (entering; left final) and o (zeros on entry).</summary>
    internal sealed record Rows(RowBlock Q, RowBlock K, RowBlock V, RowBlock Gk, RowBlock? Gv, double Scale, RowBlock S, RowBlock O)
    {
        public int T => Q.Count;
        public int Dk => K.Width;
        public int Dv => V.Width;
    }

    /// <summary>
    /// A form of the family, one of its variants: <paramref name="recurrent"/> (the form's definition) for "recurrent",
    /// else this algorithm on the form's <paramref name="rows"/> (its reduction to gla) in chunks of chunk_size, or in
    /// one chunk spanning the sequence for "parallel".
    /// </summary>
    internal static IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem, Action<Head, double> recurrent,
        Func<Head, double, Rows> rows)
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => recurrent(head, scale)),
            "parallel" => Heads.Run(problem, head => Parallel(rows(head, scale))),
            _ => Heads.Run(problem, head => Chunked(rows(head, scale), chunkSize)),
        };
    }

    /// <summary>The quadratic form with the decay matrix: one chunk spanning the sequence.</summary>
    public static void Parallel(Rows x) => Chunked(x, Math.Max(x.T, 1));

    /// <summary>Chunks of <paramref name="chunkSize"/> steps: steps 1–3 per chunk, in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Chunked(Rows x, int chunkSize)
    {
        var work = new Workspace(Math.Min(chunkSize, Math.Max(x.T, 1)), x.Dk, x.Dv, x.Gv is not null);
        foreach (var (s, e) in Chunks.Of(x.T, chunkSize))
        {
            CumulativeSum(x.Gk, s, e, work.Γ);
            if (x.Gv is not null)
            {
                CumulativeSum(x.Gv, s, e, work.Ψ!);
            }
            ChunkOutputs(x, s, e, work);
            AdvanceState(x, s, e, work);
        }
    }

    /// <summary>
    /// One pair's scratch, reused by every chunk and aligned to cache lines (RowBlock.AlignedZeros): Γ, Ψ (C rows each),
    /// q_t ⊙ exp(Γ_t) and a row for the decays. Where these rows fall decides how fast the vector loops over them run.
    /// </summary>
    private sealed class Workspace(int chunk, int dk, int dv, bool valueGates)
    {
        public RowBlock Γ { get; } = RowBlock.AlignedZeros(chunk, dk);
        public RowBlock? Ψ { get; } = valueGates ? RowBlock.AlignedZeros(chunk, dv) : null;
        public RowBlock Rows { get; } = RowBlock.AlignedZeros(3, Math.Max(dk, dv));
    }

    /// <summary>
    /// Steps 1 and 2 for the chunk [s, e), into o[s..e), with Γ, Ψ indexed t − s:
    ///   o_t = scale · ( (Sᵀ (q_t ⊙ exp(Γ_t))) ⊙ exp(Ψ_t) + Σ_{s≤j≤t} A_tj (exp(Ψ_t − Ψ_j) ⊙ v_j) ).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ChunkOutputs(Rows x, int s, int e, Workspace work)
    {
        RowBlock Γ = work.Γ;
        RowBlock? Ψ = work.Ψ;
        Span<double> qDecayed = work.Rows[0][..x.Dk]; // q_t ⊙ exp(Γ_t)
        Span<double> scratch = work.Rows[1];
        RowBlock Q = x.Q, K = x.K, V = x.V, S = x.S, O = x.O;
        int Dk = x.Dk;
        for (int t = s; t < e; t++)
        {
            Span<double> ot = O[t];
            // 1. inter-chunk part: the state entering the chunk, decayed to step t.
            VectorKernels.Exp(Γ[t - s], qDecayed);
            VectorKernels.Multiply(Q[t], qDecayed, qDecayed);
            for (int a = 0; a < Dk; a++)
            {
                VectorKernels.Axpy(qDecayed[a], S[a], ot);
            }
            if (Ψ is { } Ψt)
            {
                VectorKernels.Exp(Ψt[t - s], scratch[..x.Dv]);
                VectorKernels.Multiply(ot, scratch[..x.Dv], ot);
            }
            // 2. intra-chunk part: the keys of this chunk up to t.
            for (int j = s; j <= t; j++)
            {
                double A = VectorKernels.DecayedDot(Q[t], K[j], Γ[t - s], Γ[j - s], scratch);
                if (Ψ is not { } ψ)
                {
                    VectorKernels.Axpy(A, V[j], ot);
                }
                else
                {
                    Span<double> vDecayed = scratch[..x.Dv]; // exp(Ψ_t − Ψ_j) ⊙ v_j
                    VectorKernels.ExpDifference(ψ[t - s], ψ[j - s], vDecayed);
                    VectorKernels.Multiply(vDecayed, x.V[j], vDecayed);
                    VectorKernels.Axpy(A, vDecayed, ot);
                }
            }
            VectorKernels.Scale(x.Scale, ot);
        }
    }

    /// <summary>
    /// Step 3 for the chunk [s, e): S[a, :] ← exp(Γ_{e−1,a}) S[a, :] ⊙ exp(Ψ_{e−1}), then S[a, :] += k̃_ja ṽ_j for
    /// j = s..e−1 in order, with k̃_j = k_j ⊙ exp(Γ_{e−1} − Γ_j) and ṽ_j = v_j ⊙ exp(Ψ_{e−1} − Ψ_j).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AdvanceState(Rows x, int s, int e, Workspace work)
    {
        RowBlock Γ = work.Γ;
        RowBlock? Ψ = work.Ψ;
        Span<double> Γend = Γ[e - 1 - s];
        Span<double> Ψend = Ψ is { } ψ ? ψ[e - 1 - s] : default;
        Span<double> kDecayed = work.Rows[0][..x.Dk], vDecayed = work.Rows[2][..x.Dv];
        VectorKernels.Exp(Γend, kDecayed);
        if (Ψ is not null)
        {
            VectorKernels.Exp(Ψend, vDecayed);
        }
        for (int a = 0; a < x.Dk; a++)
        {
            VectorKernels.Scale(kDecayed[a], x.S[a]);
            if (Ψ is not null)
            {
                VectorKernels.Multiply(x.S[a], vDecayed, x.S[a]);
            }
        }
        for (int j = s; j < e; j++)
        {
            VectorKernels.ExpDifference(Γend, Γ[j - s], kDecayed);
            VectorKernels.Multiply(kDecayed, x.K[j], kDecayed);
            ReadOnlySpan<double> vj = x.V[j];
            if (Ψ is { } ψj)
            {
                VectorKernels.ExpDifference(Ψend, ψj[j - s], vDecayed);
                VectorKernels.Multiply(vDecayed, x.V[j], vDecayed);
                vj = vDecayed;
            }
            for (int a = 0; a < x.Dk; a++)
            {
                VectorKernels.Axpy(kDecayed[a], vj, x.S[a]);
            }
        }
    }

    /// <summary>gk_t = g_t·1: a scalar gate per step as the same log gate on each of <paramref name="width"/> key channels.</summary>
    public static RowBlock OnEveryKey(Series g, int width)
    {
        var gk = RowBlock.Zeros(g.Length, width);
        for (int t = 0; t < g.Length; t++)
        {
            gk[t].Fill(g[t]);
        }
        return gk;
    }

    /// <summary>Row t − s of <paramref name="sum"/> becomes Σ_{r=s..t} g_r (inclusive), for t in [s, e).</summary>
    private static void CumulativeSum(RowBlock g, int s, int e, RowBlock sum)
    {
        for (int t = s; t < e; t++)
        {
            g[t].CopyTo(sum[t - s]);
            if (t > s)
            {
                VectorKernels.AddTo(sum[t - s - 1], sum[t - s]);
            }
        }
    }
}
