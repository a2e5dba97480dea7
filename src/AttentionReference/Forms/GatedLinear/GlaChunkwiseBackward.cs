using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using Tensor = AttentionReference.Tensors.Tensor;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// The backward pass of GLA's chunkwise algorithm (GlaChunkwise.cs) as chunked kernels compute it (fla's chunk_gla_bwd):
/// the gradients of the parallel and chunked variants of gla and, through their reductions, simple_gla, retention and
/// hgrn2.
/// <code>
/// One (sequence, head) pair, w_t = scale · do_t; per chunk [s, e), Γ and Ψ summed from the chunk start as in the
/// forward pass, Γ_end = Γ_{e−1}, Ψ_end = Ψ_{e−1}, A_tj = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja) as in step 2, and
/// k̃_j = k_j ⊙ exp(Γ_end − Γ_j), ṽ_j = v_j ⊙ exp(Ψ_end − Ψ_j) as in step 3.
///   0.  states: a forward pass of step 3 alone keeps the state S entering each chunk (one K×V state per chunk, none
///       per step). Then chunk by chunk from the last, dS the gradient of the state leaving the chunk (dfinal_state,
///       zero if absent, for the last):
///   2′. intra-chunk part, pairs j &lt; t, with dA_tj = Σ_c w_tc exp(Ψ_tc − Ψ_jc) v_jc (the gradient of A_tj):
///         dq_t += dA_tj k_j ⊙ exp(Γ_t − Γ_j)     dk_j += dA_tj q_t ⊙ exp(Γ_t − Γ_j)     dv_j += A_tj w_t ⊙ exp(Ψ_t − Ψ_j)
///   1′. inter-chunk part:   dq_t += exp(Γ_t) ⊙ (S (w_t ⊙ exp(Ψ_t)))
///   G.  the gates' terms within the chunk (below), from the gradients so far
///   3′. state part:         dk_j += exp(Γ_end − Γ_j) ⊙ (dS ṽ_j)        dv_j += exp(Ψ_end − Ψ_j) ⊙ (dSᵀ k̃_j)
///   2′. the diagonal j = t: dq_t += dA_tt k_t      dk_t += dA_tt q_t      dv_t += A_tt w_t
///   dS ← Diag(exp(Γ_end)) dS Diag(exp(Ψ_end)) + Σ_t (q_t ⊙ exp(Γ_t)) (w_t ⊙ exp(Ψ_t))ᵀ, the gradient of the state
///       entering the chunk: after the first chunk, dinitial_state.
///
/// The gates. gk_r enters the chunk only through Γ_u for u ≥ r, so dgk_r = Σ_{u≥r} dΓ_u, the reverse cumulative sum of
/// the gradients of the cumulative gates. Every factor of the forward pass is q_u exp(Γ_u), k_j exp(−Γ_j) or the state's
/// exp(Γ_end), whence the engines' identity dΓ_u = q_u ⊙ dq_u − k_u ⊙ dk_u, plus rowsum(dS ⊙ S_end) at u = e − 1.
/// Summed that way, every term whose two ends lie at or after r is added and subtracted again: the diagonal (decay 1)
/// and the newest keys of the state cancel exactly but leave their rounding, ε times terms of order one, beside
/// gradients of order exp(gk_r) (2e-9 at gk = −20). The reference adds only the terms that depend on gk_r:
///   dgk_r = Σ_{u≥r} (q_u ⊙ dq_u − k_u ⊙ dk_u)    steps 1′ and 2′ without the diagonal (the pairs j &lt; r ≤ u and the
///                                                 state read through exp(Γ_u)): a reverse cumulative sum
///         + exp(Γ_end) ⊙ rowsum(dS ⊙ S Diag(exp(Ψ_end)))    the entering state, decayed over the whole chunk
///         + Σ_{j&lt;r} k_j ⊙ dk_j^3′                            the keys added before r, decayed past it: a cumulative sum
/// and on the value side, where every term of o_u carries exp(Ψ_u), with ô_u = o_u / scale without its term j = u:
///   dgv_r = Σ_{u≥r} (w_u ⊙ ô_u − v_u ⊙ dv_u) + exp(Ψ_end) ⊙ colsum(Diag(exp(Γ_end)) S ⊙ dS) + Σ_{j&lt;r} v_j ⊙ dv_j^3′.
///
/// Every decay is one exp of a difference of summed log gates, as in the forward pass; nothing is divided.
/// Legend (code → fla's chunk_gla_bwd): dS = dh, S = h, dA = dA, w = scale · do, Γ_end = b_gn.
/// </code>
/// </summary>
internal static partial class GlaChunkwise
{
    /// <summary>
    /// A pair's gradients: the cotangent do (null: zero), the state gradient dS (dfinal_state on entry, left as
    /// dinitial_state), and dq, dk, dv, dgk and dgv (null without gv), zeros on entry.
    /// </summary>
    internal sealed record Gradients(RowBlock? DO, RowBlock DS, RowBlock Dq, RowBlock Dk, RowBlock Dv, RowBlock Dgk, RowBlock? Dgv)
    {
        /// <summary>The pair's do, dS, dq, dv and dgv, with dk and dgk in the rows the form gives (its own for a derived key or a shared gate).</summary>
        public static Gradients Of(Head head, RowBlock dk, RowBlock dgk)
        {
            ArgumentNullException.ThrowIfNull(head);
            return new(head.OptionalRows("do"), head.StateGradient(), head.Rows("dq"), dk, head.Rows("dv"), dgk,
                head.Problem.Has("gv") ? head.Rows("dgv") : null);
        }
    }

    /// <summary>
    /// The backward pass of a form of the family, one of its variants: <paramref name="recurrent"/> (the definition's
    /// reverse-time recurrence) for "recurrent", else <paramref name="chunkwise"/> (this algorithm through the form's
    /// reduction) in chunks of chunk_size, or in one chunk spanning the sequence for "parallel".
    /// </summary>
    internal static IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem, Action<Head, double> recurrent,
        Action<Head, double, int> chunkwise)
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Backward(problem, head => recurrent(head, scale)),
            "parallel" => Heads.Backward(problem, head => chunkwise(head, scale, Math.Max(head.T, 1))),
            _ => Heads.Backward(problem, head => chunkwise(head, scale, chunkSize)),
        };
    }

    /// <summary>The pair's rows for a backward pass, with the form's key and key gate: S a copy of the initial state, no output.</summary>
    internal static Rows BackwardRows(Head head, RowBlock k, RowBlock gk, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        return new(head.Rows("q"), k, head.Rows("v"), gk, head.OptionalRows("gv"), scale, head.InitialState(), RowBlock.Zeros(0, head["V"]));
    }

    /// <summary>
    /// The backward pass of chunks of <paramref name="chunkSize"/> steps (the parallel form's: one chunk spanning the
    /// sequence, C = max(T, 1)): step 0, then per chunk from the last, steps 2′, 1′, G, 3′, the diagonal and dS.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ChunkedBackward(Rows x, Gradients d, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(d);
        (int Start, int End)[] chunks = [.. Chunks.Of(x.T, chunkSize)];
        var work = new BackwardWorkspace(Math.Min(chunkSize, Math.Max(x.T, 1)), x.Dk, x.Dv, x.Gv is not null);
        RowBlock[] entering = EnteringStates(x, chunks, work.Forward);
        for (int n = chunks.Length - 1; n >= 0; n--)
        {
            var (s, e) = chunks[n];
            CumulativeSum(x.Gk, s, e, work.Γ);
            if (x.Gv is not null)
            {
                CumulativeSum(x.Gv, s, e, work.Ψ!);
            }
            if (d.DO is not null)
            {
                IntraChunk(x, d, s, e, work);
                InterChunk(x, d, entering[n], s, e, work);
                GatesWithinChunk(x, d, s, e, work);
            }
            StatePart(x, d, entering[n], s, e, work);
            if (d.DO is not null)
            {
                Diagonal(x, d, s, e, work.Rows[0][..x.Dv]);
            }
            StateGradientEntering(x, d, s, e, work);
        }
    }

    /// <summary>dg_t = Σ_a dgk_ta: the gradient of a gate spread over the key channels (<see cref="OnEveryKey"/>) gathers theirs.</summary>
    public static void SumOverKeys(RowBlock dgk, Series dg)
    {
        for (int t = 0; t < dg.Length; t++)
        {
            dg[t] = TensorPrimitives.Sum<double>(dgk[t]);
        }
    }

    /// <summary>One pair's scratch, reused by every chunk: the forward pass's (Γ, Ψ, rows), ô (C rows, with gv) and rows.</summary>
    private sealed class BackwardWorkspace(int chunk, int dk, int dv, bool valueGates)
    {
        public Workspace Forward { get; } = new(chunk, dk, dv, valueGates);
        public RowBlock Γ => Forward.Γ;
        public RowBlock? Ψ => Forward.Ψ;
        public RowBlock? Ô { get; } = valueGates ? RowBlock.AlignedZeros(chunk, dv) : null;
        public RowBlock Rows { get; } = RowBlock.AlignedZeros(12, Math.Max(dk, dv));
    }

    /// <summary>Step 0: the state entering each chunk, by step 3 of the forward pass (x.S, the initial state, is advanced).</summary>
    private static RowBlock[] EnteringStates(Rows x, (int Start, int End)[] chunks, Workspace work)
    {
        var states = new RowBlock[chunks.Length];
        for (int n = 0; n < chunks.Length; n++)
        {
            states[n] = RowBlock.AlignedZeros(x.Dk, x.Dv);
            for (int a = 0; a < x.Dk; a++)
            {
                x.S[a].CopyTo(states[n][a]);
            }
            if (n + 1 < chunks.Length)
            {
                var (s, e) = chunks[n];
                CumulativeSum(x.Gk, s, e, work.Γ);
                if (x.Gv is not null)
                {
                    CumulativeSum(x.Gv, s, e, work.Ψ!);
                }
                AdvanceState(x, s, e, work);
            }
        }
        return states;
    }

    /// <summary>Step 2′ for the pairs s ≤ j &lt; t &lt; e: dq_t, dk_j, dv_j and, with gv, ô_t's intra part.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void IntraChunk(Rows x, Gradients d, int s, int e, BackwardWorkspace work)
    {
        RowBlock Γ = work.Γ, dO = d.DO!;
        RowBlock? Ψ = work.Ψ;
        Span<double> decay = work.Rows[0][..x.Dk], kDecayed = work.Rows[1][..x.Dk], qDecayed = work.Rows[2][..x.Dk];
        Span<double> w = work.Rows[3][..x.Dv], vDecay = work.Rows[4][..x.Dv], wDecayed = work.Rows[5][..x.Dv], vDecayed = work.Rows[6][..x.Dv];
        for (int t = s; t < e; t++)
        {
            VectorKernels.Multiply(dO[t], x.Scale, w);
            if (work.Ô is { } ô)
            {
                ô[t - s].Clear();
            }
            for (int j = s; j < t; j++)
            {
                VectorKernels.ExpDifference(Γ[t - s], Γ[j - s], decay);     // exp(Γ_t − Γ_j)
                VectorKernels.Multiply(x.K[j], decay, kDecayed);
                double A = VectorKernels.Dot(x.Q[t], kDecayed);
                ReadOnlySpan<double> wt = w;
                if (Ψ is { } ψ)
                {
                    VectorKernels.ExpDifference(ψ[t - s], ψ[j - s], vDecay); // exp(Ψ_t − Ψ_j)
                    VectorKernels.Multiply(w, vDecay, wDecayed);
                    VectorKernels.Multiply(x.V[j], vDecay, vDecayed);
                    VectorKernels.Axpy(A, vDecayed, work.Ô![t - s]);         // ô_t += A_tj v_j ⊙ exp(Ψ_t − Ψ_j)
                    wt = wDecayed;
                }
                double dA = VectorKernels.Dot(wt, x.V[j]);
                VectorKernels.Axpy(dA, kDecayed, d.Dq[t]);
                VectorKernels.Multiply(x.Q[t], decay, qDecayed);
                VectorKernels.Axpy(dA, qDecayed, d.Dk[j]);
                VectorKernels.Axpy(A, wt, d.Dv[j]);
            }
        }
    }

    /// <summary>Step 1′: dq_t += exp(Γ_t) ⊙ (S (w_t ⊙ exp(Ψ_t))) and, with gv, ô_t += (Sᵀ (q_t ⊙ exp(Γ_t))) ⊙ exp(Ψ_t).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InterChunk(Rows x, Gradients d, RowBlock S, int s, int e, BackwardWorkspace work)
    {
        Span<double> decay = work.Rows[0][..x.Dk], qDecayed = work.Rows[1][..x.Dk];
        Span<double> w = work.Rows[3][..x.Dv], vDecay = work.Rows[4][..x.Dv], inter = work.Rows[5][..x.Dv];
        for (int t = s; t < e; t++)
        {
            VectorKernels.Multiply(d.DO![t], x.Scale, w);
            if (work.Ψ is { } Ψ)
            {
                VectorKernels.Exp(Ψ[t - s], vDecay);
                VectorKernels.Multiply(w, vDecay, w);
            }
            VectorKernels.Exp(work.Γ[t - s], decay);
            Span<double> dq = d.Dq[t];
            for (int a = 0; a < x.Dk; a++)
            {
                dq[a] += decay[a] * VectorKernels.Dot(S[a], w);
            }
            if (work.Ô is { } ô)
            {
                VectorKernels.Multiply(x.Q[t], decay, qDecayed);
                inter.Clear();
                for (int a = 0; a < x.Dk; a++)
                {
                    VectorKernels.Axpy(qDecayed[a], S[a], inter);
                }
                VectorKernels.Multiply(inter, vDecay, inter);
                VectorKernels.AddTo(inter, ô[t - s]);
            }
        }
    }

    /// <summary>
    /// Step G: dgk_r = Σ_{u≥r} (q_u ⊙ dq_u − k_u ⊙ dk_u) over the gradients of steps 2′ and 1′ (no diagonal, no state
    /// part yet), and with gv dgv_r = Σ_{u≥r} (w_u ⊙ ô_u − v_u ⊙ dv_u): reverse cumulative sums.
    /// </summary>
    private static void GatesWithinChunk(Rows x, Gradients d, int s, int e, BackwardWorkspace work)
    {
        Span<double> sum = work.Rows[0][..x.Dk], term = work.Rows[1][..x.Dk];
        sum.Clear();
        for (int r = e - 1; r >= s; r--)
        {
            TensorPrimitives.MultiplyAdd(x.Q[r], d.Dq[r], sum, sum);
            TensorPrimitives.Multiply(x.K[r], d.Dk[r], term);
            TensorPrimitives.Subtract(sum, term, sum);
            sum.CopyTo(d.Dgk[r]);
        }
        if (work.Ô is { } ô && d.Dgv is { } dgv)
        {
            Span<double> w = work.Rows[3][..x.Dv], sumV = work.Rows[4][..x.Dv], termV = work.Rows[5][..x.Dv];
            sumV.Clear();
            for (int r = e - 1; r >= s; r--)
            {
                VectorKernels.Multiply(d.DO![r], x.Scale, w);
                TensorPrimitives.MultiplyAdd(w, ô[r - s], sumV, sumV);
                TensorPrimitives.Multiply(x.V[r], d.Dv[r], termV);
                TensorPrimitives.Subtract(sumV, termV, sumV);
                sumV.CopyTo(dgv[r]);
            }
        }
    }

    /// <summary>
    /// Step 3′ with the gates' state terms: dk_j, dv_j from dS, and dgk_j += exp(Γ_end) ⊙ rowsum(dS ⊙ S Diag(exp(Ψ_end)))
    /// + Σ_{i&lt;j} k_i ⊙ dk_i^3′ (a cumulative sum; with gv the value side alike).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StatePart(Rows x, Gradients d, RowBlock S, int s, int e, BackwardWorkspace work)
    {
        RowBlock Γ = work.Γ, dS = d.DS;
        RowBlock? Ψ = work.Ψ;
        Span<double> Γend = Γ[e - 1 - s], Ψend = Ψ is { } ψEnd ? ψEnd[e - 1 - s] : default;
        Span<double> keyEnd = work.Rows[0][..x.Dk], prefix = work.Rows[1][..x.Dk], decay = work.Rows[2][..x.Dk];
        Span<double> kDecayed = work.Rows[3][..x.Dk], dkState = work.Rows[4][..x.Dk];
        Span<double> valueEnd = work.Rows[5][..x.Dv], prefixV = work.Rows[6][..x.Dv], vDecay = work.Rows[7][..x.Dv];
        Span<double> vDecayed = work.Rows[8][..x.Dv], dvState = work.Rows[9][..x.Dv], overlap = work.Rows[10][..x.Dv];
        // The entering state decayed over the whole chunk, Diag(exp(Γ_end)) S Diag(exp(Ψ_end)), against dS.
        VectorKernels.Exp(Γend, keyEnd);
        if (Ψ is not null)
        {
            VectorKernels.Exp(Ψend, valueEnd);
            prefixV.Clear();
        }
        for (int a = 0; a < x.Dk; a++)
        {
            if (Ψ is null)
            {
                prefix[a] = keyEnd[a] * VectorKernels.Dot(S[a], dS[a]);
                continue;
            }
            VectorKernels.Multiply(S[a], valueEnd, overlap);
            VectorKernels.Multiply(overlap, dS[a], overlap);
            prefix[a] = keyEnd[a] * TensorPrimitives.Sum<double>(overlap);
            VectorKernels.Axpy(keyEnd[a], overlap, prefixV);
        }
        for (int j = s; j < e; j++)
        {
            VectorKernels.AddTo(prefix, d.Dgk[j]);
            VectorKernels.ExpDifference(Γend, Γ[j - s], decay);           // exp(Γ_end − Γ_j)
            ReadOnlySpan<double> vj = x.V[j];
            if (Ψ is { } ψ)
            {
                VectorKernels.ExpDifference(Ψend, ψ[j - s], vDecay);      // exp(Ψ_end − Ψ_j)
                VectorKernels.Multiply(x.V[j], vDecay, vDecayed);
                vj = vDecayed;
            }
            for (int a = 0; a < x.Dk; a++)
            {
                dkState[a] = decay[a] * VectorKernels.Dot(dS[a], vj);     // exp(Γ_end − Γ_j) ⊙ (dS ṽ_j)
            }
            VectorKernels.AddTo(dkState, d.Dk[j]);
            TensorPrimitives.MultiplyAdd(x.K[j], dkState, prefix, prefix);
            VectorKernels.Multiply(x.K[j], decay, kDecayed);                // k̃_j
            dvState.Clear();
            for (int a = 0; a < x.Dk; a++)
            {
                VectorKernels.Axpy(kDecayed[a], dS[a], dvState);           // dSᵀ k̃_j
            }
            if (Ψ is not null)
            {
                VectorKernels.Multiply(dvState, vDecay, dvState);
                VectorKernels.AddTo(prefixV, d.Dgv![j]);
                TensorPrimitives.MultiplyAdd(x.V[j], dvState, prefixV, prefixV);
            }
            VectorKernels.AddTo(dvState, d.Dv[j]);
        }
    }

    /// <summary>The diagonal pairs j = t of step 2′ (decay 1): A_tt = q_t · k_t, dA_tt = w_t · v_t.</summary>
    private static void Diagonal(Rows x, Gradients d, int s, int e, Span<double> w)
    {
        for (int t = s; t < e; t++)
        {
            VectorKernels.Multiply(d.DO![t], x.Scale, w);
            double A = VectorKernels.Dot(x.Q[t], x.K[t]), dA = VectorKernels.Dot(w, x.V[t]);
            VectorKernels.Axpy(dA, x.K[t], d.Dq[t]);
            VectorKernels.Axpy(dA, x.Q[t], d.Dk[t]);
            VectorKernels.Axpy(A, w, d.Dv[t]);
        }
    }

    /// <summary>dS ← Diag(exp(Γ_end)) dS Diag(exp(Ψ_end)) + Σ_t (q_t ⊙ exp(Γ_t)) (w_t ⊙ exp(Ψ_t))ᵀ.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StateGradientEntering(Rows x, Gradients d, int s, int e, BackwardWorkspace work)
    {
        RowBlock dS = d.DS;
        Span<double> decay = work.Rows[0][..x.Dk], qDecayed = work.Rows[1][..x.Dk];
        Span<double> w = work.Rows[3][..x.Dv], vDecay = work.Rows[4][..x.Dv];
        VectorKernels.Exp(work.Γ[e - 1 - s], decay);
        if (work.Ψ is { } ψEnd)
        {
            VectorKernels.Exp(ψEnd[e - 1 - s], vDecay);
        }
        for (int a = 0; a < x.Dk; a++)
        {
            VectorKernels.Scale(decay[a], dS[a]);
            if (work.Ψ is not null)
            {
                VectorKernels.Multiply(dS[a], vDecay, dS[a]);
            }
        }
        if (d.DO is not { } dO)
        {
            return;
        }
        for (int t = s; t < e; t++)
        {
            VectorKernels.Exp(work.Γ[t - s], decay);
            VectorKernels.Multiply(x.Q[t], decay, qDecayed);
            VectorKernels.Multiply(dO[t], x.Scale, w);
            if (work.Ψ is { } Ψ)
            {
                VectorKernels.Exp(Ψ[t - s], vDecay);
                VectorKernels.Multiply(w, vDecay, w);
            }
            for (int a = 0; a < x.Dk; a++)
            {
                VectorKernels.Axpy(qDecayed[a], w, dS[a]);
            }
        }
    }
}
