using System.Globalization;
using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// The engine of the gated linear family: linear attention with a diagonal decay on the key side (gk, one log gate
/// per key channel) and optionally on the value side (gv, one per value channel), as in GLA (Yang et al. 2023,
/// arXiv 2312.06635). gla is this engine; simple_gla, retention and hgrn2 reduce to it (see their files).
/// <code>
/// Shapes: q, k [B,T,H,K]   v [B,T,H,V]   gk [B,T,H,K]   gv [B,T,H,V] (optional)
///         initial_state, final_state [N,H,K,V]   (N = B, or the number of sequences with cu_seqlens)
///
/// Recurrence (per sequence and head; the definition):
///   S_t = Diag(exp(gk_t)) S_{t−1} Diag(exp(gv_t)) + k_t v_tᵀ        S_{−1} = initial_state (0 if absent)
///   o_t = scale · S_tᵀ q_t                                            final_state = S_{T−1}
///
/// Parallel form (GLA Sec. 4.1): with the inclusive cumulative log gates G_t = Σ_{s≤t} gk_s, Λ_t = Σ_{s≤t} gv_s,
///   A_ij  = Σ_a q_ia k_ja exp(G_ia − G_ja)                            j ≤ i
///   o_ic  = scale · ( Σ_a q_ia exp(G_ia) S0_ac exp(Λ_ic) + Σ_{j≤i} A_ij exp(Λ_ic − Λ_jc) v_jc )
/// Every exponent is a difference G_i − G_j with j ≤ i, a sum of log gates ≤ 0, so every factor is in [0, 1]; it is
/// computed as one exp of the difference, never as exp(G_i)·exp(−G_j) (exp(−G_j) overflows once the gates have summed
/// past −709, e.g. 36 steps of −20).
///
/// Chunked form (GLA Sec. 4.2–4.3), chunks [s, e) of C steps (the last may be shorter), Γ_t = Σ_{r=s..t} gk_r and
/// Ψ_t = Σ_{r=s..t} gv_r the log gates summed from the chunk start, S the state entering the chunk:
///   1. inter-chunk part:  o_tc  = scale · Σ_a q_ta exp(Γ_ta) S_ac exp(Ψ_tc)
///   2. intra-chunk part:  o_tc += scale · Σ_{s≤j≤t} A_tj exp(Ψ_tc − Ψ_jc) v_jc,   A_tj = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja)
///   3. state to the next chunk:
///         S_ac ← exp(Γ_{e−1,a}) S_ac exp(Ψ_{e−1,c}) + Σ_{s≤j&lt;e} k_ja exp(Γ_{e−1,a} − Γ_ja) v_jc exp(Ψ_{e−1,c} − Ψ_jc)
/// GLA's kernels factor exp(Γ_ta − Γ_ja) = exp(Γ_ta)·exp(−Γ_ja) between sub-chunks of 16 steps and keep log-space
/// differences only inside the diagonal sub-chunks (their "secondary chunking"). With log gates down to −20 per
/// step no factorisation is safe at any sub-chunk size above one, so the reference takes the scheme to its limit:
/// every pair uses its exponent difference, relative to the chunk start, and nothing is ever divided by a cumulative
/// product. The chunk size C ≥ 1 is free (C need not divide T).
///
/// Legend (code → paper): head.Query[t][a] = q_ta, head.Key = k, head.Value = v, head.Gk = gk (GLA's log α),
/// head.Gv = gv (GLA's log β), S[a][c] = S_ac, G/Λ = cumulative gates over the sequence (GLA's log b), Γ/Ψ = the
/// same summed from the chunk start, A = the decay-weighted score matrix (GLA's P).
///
/// Arithmetic: every product is a sum of contiguous rows weighted by scalars (S's rows K x V, v's rows) or a dot
/// product of contiguous rows, through Numerics/VectorKernels.cs (the recurrence decays, writes and reads S in one
/// pass, Numerics/StateStep.cs, on a state aligned to cache lines); each decay exp(Γ_t − Γ_j) is one vectorised exp
/// of the difference (VectorKernels.DecayedDot), and every sum runs in a fixed order, so the result does not depend
/// on the thread count.
///
/// Sources: fla's fla/ops/gla/naive.py (the recurrence, scale applied to q, state [K,V] per head) and
/// fla/ops/gla/fused_recurrent.py (gv multiplies the state on the value side after gk on the key side).
/// </code>
/// </summary>
internal static class DiagonalDecay
{
    /// <summary>The recurrence, token by token: the definition the other two variants are held to.</summary>
    public static StateResult Recurrent(DecayInputs x) => PerHead.Run(Bind(x), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (head, S, o) =>
    {
        var αt = new double[head.K];                        // exp(gk_t)
        var βt = head.Gv is null ? null : new double[head.V]; // exp(gv_t)
        var scaledQuery = new double[head.K];
        for (int t = 0; t < head.T; t++)
        {
            VectorKernels.Exp(head.Gk[t], αt);
            if (βt is not null)
            {
                // the value-side decay first: S_{t−1}[a, :] ⊙ exp(gv_t)
                VectorKernels.Exp(head.Gv![t], βt);
                for (int a = 0; a < head.K; a++)
                {
                    VectorKernels.Multiply(S[a], βt, S[a]);
                }
            }
            // S_t[a, :] = exp(gk_ta) · S_{t−1}[a, :] ⊙ exp(gv_t) + k_ta v_t;   o_t = Σ_a scale · q_ta S_t[a, :]
            VectorKernels.Multiply(head.Query[t], head.Scale, scaledQuery);
            StateStep.DecayWriteAndRead(new FlatRows(S.Contiguous(), head.K, head.V), αt, head.Key[t], head.Value[t], scaledQuery, o[t]);
        }
    });

    /// <summary>The quadratic form with the decay matrix, every exponent a difference j ≤ i.</summary>
    public static StateResult Parallel(DecayInputs x) => PerHead.Run(Bind(x), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (head, S0, o) =>
    {
        // The parallel form is one chunk spanning the whole sequence: G, Λ are Γ, Ψ summed from step 0.
        RowBlock G = CumulativeSum(head.Gk, 0, head.T);
        RowBlock? Λ = head.Gv is null ? null : CumulativeSum(head.Gv, 0, head.T);
        ChunkOutputs(head, S0, 0, head.T, G, Λ, o);
        // final_state: the state update of one chunk spanning the whole sequence.
        AdvanceState(head, S0, 0, head.T, G, Λ);
    });

    /// <summary>Chunks of <paramref name="chunkSize"/> steps: inter-chunk state plus intra-chunk quadratic part.</summary>
    public static StateResult Chunked(DecayInputs x, int chunkSize)
    {
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
        return PerHead.Run(Bind(x), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (head, S, o) =>
        {
            for (int s = 0; s < head.T; s += chunkSize)
            {
                int e = Math.Min(s + chunkSize, head.T);
                // Γ, Ψ: log gates summed from the chunk start (indexed t − s); Ψ = null: no value-side decay.
                RowBlock Γ = CumulativeSum(head.Gk, s, e);
                RowBlock? Ψ = head.Gv is null ? null : CumulativeSum(head.Gv, s, e);
                // 1.–2. the chunk's outputs from the state entering it and its own keys.
                ChunkOutputs(head, S, s, e, Γ, Ψ, o);
                // 3. the state handed to the next chunk.
                AdvanceState(head, S, s, e, Γ, Ψ);
            }
        });
    }

    /// <summary>
    /// Steps 1 and 2 of the chunked form for the chunk [s, e) entering with state S, into rows o[s..e):
    ///   o_t = scale · ( (Sᵀ (q_t ⊙ exp(Γ_t))) ⊙ exp(Ψ_t) + Σ_{s≤j≤t} A_tj (exp(Ψ_t − Ψ_j) ⊙ v_j) ),
    ///   A_tj = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja),
    /// with Γ, Ψ summed from step s and indexed t − s (Ψ null: no value-side decay, every exp(Ψ…) = 1).
    /// Each output row is a sum of contiguous rows (of S, then of v) weighted by scalars, in a fixed order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ChunkOutputs(DecayHead head, RowBlock S, int s, int e, RowBlock Γ, RowBlock? Ψ, RowBlock o)
    {
        var qDecayed = new double[head.K];            // q_t ⊙ exp(Γ_t)
        var scratch = new double[Math.Max(head.K, head.V)];
        for (int t = s; t < e; t++)
        {
            Span<double> ot = o[t];
            // 1. inter-chunk part: the state entering the chunk, decayed to step t.
            VectorKernels.Exp(Γ[t - s], qDecayed);
            VectorKernels.Multiply(head.Query[t], qDecayed, qDecayed);
            for (int a = 0; a < head.K; a++)
            {
                VectorKernels.Axpy(qDecayed[a], S[a], ot);
            }
            if (Ψ is { } Ψt)
            {
                VectorKernels.Exp(Ψt[t - s], scratch.AsSpan(0, head.V));
                VectorKernels.Multiply(ot, scratch.AsSpan(0, head.V), ot);
            }
            // 2. intra-chunk part: the keys of this chunk up to t.
            for (int j = s; j <= t; j++)
            {
                double A = VectorKernels.DecayedDot(head.Query[t], head.Key[j], Γ[t - s], Γ[j - s], scratch);
                if (Ψ is not { } ψ)
                {
                    VectorKernels.Axpy(A, head.Value[j], ot);
                }
                else
                {
                    Span<double> vDecayed = scratch.AsSpan(0, head.V); // exp(Ψ_t − Ψ_j) ⊙ v_j
                    VectorKernels.ExpDifference(ψ[t - s], ψ[j - s], vDecayed);
                    VectorKernels.Multiply(vDecayed, head.Value[j], vDecayed);
                    VectorKernels.Axpy(A, vDecayed, ot);
                }
            }
            VectorKernels.Scale(head.Scale, ot);
        }
    }

    /// <summary>
    /// S_ac ← exp(Γ_{e−1,a}) S_ac exp(Ψ_{e−1,c}) + Σ_{s≤j&lt;e} k_ja exp(Γ_{e−1,a} − Γ_ja) v_jc exp(Ψ_{e−1,c} − Ψ_jc),
    /// with Γ, Ψ summed from step <paramref name="s"/> and indexed t − s (Ψ null: no value-side decay). As rows:
    /// S[a, :] ← exp(Γ_{e−1,a}) S[a, :] ⊙ exp(Ψ_{e−1}), then S[a, :] += k̃_ja ṽ_j for j = s..e−1 in order, with
    /// k̃_j = k_j ⊙ exp(Γ_{e−1} − Γ_j) and ṽ_j = v_j ⊙ exp(Ψ_{e−1} − Ψ_j).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AdvanceState(DecayHead head, RowBlock S, int s, int e, RowBlock Γ, RowBlock? Ψ)
    {
        if (e == s)
        {
            return; // an empty sequence leaves its initial state as it was
        }
        Span<double> Γend = Γ[e - 1 - s];
        Span<double> Ψend = Ψ is { } ψ ? ψ[e - 1 - s] : default;
        var kDecayed = new double[head.K];
        var vDecayed = new double[head.V];
        VectorKernels.Exp(Γend, kDecayed);
        if (Ψ is not null)
        {
            VectorKernels.Exp(Ψend, vDecayed);
        }
        for (int a = 0; a < head.K; a++)
        {
            VectorKernels.Scale(kDecayed[a], S[a]);
            if (Ψ is not null)
            {
                VectorKernels.Multiply(S[a], vDecayed, S[a]);
            }
        }
        for (int j = s; j < e; j++)
        {
            VectorKernels.ExpDifference(Γend, Γ[j - s], kDecayed);
            VectorKernels.Multiply(kDecayed, head.Key[j], kDecayed);
            ReadOnlySpan<double> vj = head.Value[j];
            if (Ψ is { } ψj)
            {
                VectorKernels.ExpDifference(Ψend, ψj[j - s], vDecayed);
                VectorKernels.Multiply(vDecayed, head.Value[j], vDecayed);
                vj = vDecayed;
            }
            for (int a = 0; a < head.K; a++)
            {
                VectorKernels.Axpy(kDecayed[a], vj, S[a]);
            }
        }
    }

    /// <summary>Row t − s of the result is Σ_{r=s..t} g_r (inclusive), for t in [s, e).</summary>
    private static RowBlock CumulativeSum(RowBlock g, int s, int e)
    {
        var sum = RowBlock.Zeros(e - s, g.Width);
        for (int t = s; t < e; t++)
        {
            g[t].CopyTo(sum[t - s]);
            if (t > s)
            {
                VectorKernels.AddTo(sum[t - s - 1], sum[t - s]);
            }
        }
        return sum;
    }

    /// <summary>Checks the shapes of the engine's tensors; the forms check their own inputs first, by their names.</summary>
    public static PerHead.Problem Bind(DecayInputs x)
    {
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", x.Q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", x.K), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", x.V), "B,T,H,V");
        dims.Bind("gk", Dims.RequireFloat("gk", x.Gk), "B,T,H,K");
        if (x.Gv is not null)
        {
            dims.Bind("gv", Dims.RequireFloat("gv", x.Gv), "B,T,H,V");
        }
        var problem = PerHead.Problem.Bind(dims, x.InitialState, x.CuSeqlens);
        double scale = x.Scale ?? 1 / Math.Sqrt(dims["K"]);
        return problem with
        {
            Head = pair => new DecayHead(pair.Rows(x.Q), pair.Rows(x.K), pair.Rows(x.V), pair.Rows(x.Gk), x.Gv is null ? null : pair.Rows(x.Gv), scale)
            {
                Slice = pair.Sequence,
                Head = pair.H,
            },
        };
    }
}

/// <summary>The engine's inputs, in the [B,T,H,·] layout, already reduced to gla's names.</summary>
internal sealed record DecayInputs(Tensor Q, Tensor K, Tensor V, Tensor Gk, Tensor? Gv, double? Scale, Tensor? InitialState, Tensor? CuSeqlens);

/// <summary>One (sequence, head) pair's rows: q_t, k_t, v_t, gk_t, gv_t for t in [0, T), and the scale.</summary>
internal sealed record DecayHead(RowBlock Query, RowBlock Key, RowBlock Value, RowBlock Gk, RowBlock? Gv, double Scale)
{
    /// <summary>The sequence these rows come from.</summary>
    public SequenceSlice Slice { get; init; }

    /// <summary>The head index h.</summary>
    public int Head { get; init; }

    public int T => Query.Count;
    public int K => Key.Width;
    public int V => Value.Width;
}

/// <summary>Outputs of a form with a K×V state per head: o [B,T,H,V] and final_state [N,H,K,V].</summary>
public sealed record StateResult(Tensor O, Tensor FinalState);

/// <summary>
/// The batch/varlen/head loop shared by the linear family: slices the call into sequences (<see cref="Sequences"/>),
/// gathers the rows of each (sequence, head) pair and runs one head function on them with the state S [K][V] starting
/// at initial_state; the loop itself, and with it the independence of the thread count, is <see cref="SequenceHeads"/>.
/// </summary>
internal static class PerHead
{
    /// <summary>The bound dimensions of a call, its sequences and the function that gathers one pair's rows.</summary>
    internal sealed record Problem(int Batch, int Time, int Heads, int K, int V, IReadOnlyList<SequenceSlice> Slices, Tensor? InitialState)
    {
        public Func<SequenceHead, DecayHead> Head { get; init; } = _ => throw new InvalidOperationException("no head gatherer");

        /// <summary>Slices by cu_seqlens and checks initial_state [N,H,K,V] against the bound B,T,H,K,V.</summary>
        public static Problem Bind(Dims dims, Tensor? initialState, Tensor? cuSeqlens)
        {
            var slices = Sequences.Slices(dims["B"], dims["T"], cuSeqlens);
            dims.Set("N", Sequences.StateCount(slices));
            if (initialState is not null)
            {
                dims.Bind("initial_state", Dims.RequireFloat("initial_state", initialState), "N,H,K,V");
            }
            return new Problem(dims["B"], dims["T"], dims["H"], dims["K"], dims["V"], slices, initialState);
        }
    }

    /// <summary>Runs <paramref name="head"/> on every (sequence, head) pair: it writes the pair's rows of o (zeros on entry) and leaves S [K x V] final.</summary>
    public static StateResult Run(Problem problem, Action<DecayHead, RowBlock, RowBlock> head)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(head);
        var result = SequenceHeads.Run(problem.Slices, problem.Batch, problem.Time, problem.Heads, problem.V,
            [new StateTensor(problem.InitialState, problem.K, problem.V)], pair =>
            {
                // The state in an aligned block of its own for the run, then back into the pair's final state.
                RowBlock S = RowBlock.AlignedZeros(problem.K, problem.V);
                pair.State(0).CopyTo(S.Contiguous());
                head(problem.Head(pair), S, pair.OutputRows());
                S.Contiguous().CopyTo(pair.State(0));
            });
        return new StateResult(result.O, result.FinalStates[0]);
    }

    /// <summary>Rows x[b, start + t, h, :] for t in [0, length) of a [B,T,H,D] tensor.</summary>
    public static double[][] Rows(Tensor x, SequenceSlice slice, int h)
    {
        ArgumentNullException.ThrowIfNull(x);
        int time = x.Dim(1), heads = x.Dim(2), d = x.Dim(3);
        var rows = new double[slice.Length][];
        for (int t = 0; t < slice.Length; t++)
        {
            rows[t] = x.Data.AsSpan(((slice.Batch * time + slice.Start + t) * heads + h) * d, d).ToArray();
        }
        return rows;
    }

    /// <summary>Values x[b, start + t, h] for t in [0, length) of a [B,T,H] tensor.</summary>
    public static double[] Scalars(Tensor x, SequenceSlice slice, int h)
    {
        ArgumentNullException.ThrowIfNull(x);
        int time = x.Dim(1), heads = x.Dim(2);
        var values = new double[slice.Length];
        for (int t = 0; t < slice.Length; t++)
        {
            values[t] = x.Data[(slice.Batch * time + slice.Start + t) * heads + h];
        }
        return values;
    }

    /// <summary>initial_state[n, h] as S[K][V]; zeros when absent.</summary>
    public static double[][] InitialState(Tensor? initialState, int n, int h, int k, int v)
    {
        var S = new double[k][];
        for (int a = 0; a < k; a++)
        {
            S[a] = initialState is null ? new double[v] : initialState.Data.AsSpan(((n * initialState.Dim(1) + h) * k + a) * v, v).ToArray();
        }
        return S;
    }

    /// <summary>Writes o's rows of one pair into o [B,T,H,V].</summary>
    public static void WriteRows(Tensor o, double[][] rows, SequenceSlice slice, int h)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(rows);
        int time = o.Dim(1), heads = o.Dim(2), v = o.Dim(3);
        for (int t = 0; t < rows.Length; t++)
        {
            rows[t].CopyTo(o.Data.AsSpan(((slice.Batch * time + slice.Start + t) * heads + h) * v, v));
        }
    }

    /// <summary>Writes S[K][V] into state[n, h] of a [N,H,K,V] tensor.</summary>
    public static void WriteState(Tensor state, double[][] S, int n, int h)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(S);
        int heads = state.Dim(1), k = state.Dim(2), v = state.Dim(3);
        for (int a = 0; a < k; a++)
        {
            S[a].CopyTo(state.Data.AsSpan(((n * heads + h) * k + a) * v, v));
        }
    }
}
