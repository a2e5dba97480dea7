using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// The backward pass of NAtS-L, both variants. The two branches share q, k, v: each input's gradient is the sum of the
/// Gated DeltaNet branch's (from do_linear and dfinal_state) and the softmax branch's (from do_softmax).
/// <code>
/// Gated DeltaNet branch, in reverse time from dS = dfinal_state and dS̄ = 0 (S_a,t = exp(g_t) S_{t−1} the decayed state):
///   at the end of every complete chunk c (undoing its rule, last step first):
///     dS += dS̄, dS̄ = 0                                             (S̄ ← S)
///     r_c = 1:  dg_j += δ ⟨dS, S_after⟩ for j ∈ c,  dS̄ = exp(δ Σ_{j∈c} g_j) dS,  dS = 0
///                                                                  (S_after = exp(δ Σ g) S̄ replaced S)
///   every token t:
///     dq_t  = s S_t do_t,          dS += s q_t do_tᵀ                (o_linear_t = s S_tᵀ q_t)
///     du_t  = dSᵀ k_t,             dk_t += dS u_t                  (S_t = S_a,t + k_t u_tᵀ)
///     dβ_t  = du_t·(v_t − S_a,tᵀ k_t),  dv_t = β_t du_t,  dp = −β_t du_t      (u_t = β_t (v_t − S_a,tᵀ k_t))
///     dk_t += S_a,t dp,            dS += k_t dpᵀ
///     dg_t += ⟨S_a,t, dS⟩,         dS = exp(g_t) dS                (S_a,t = exp(g_t) S_{t−1})
///   dinitial_state = dS + dS̄   (S̄ starts as a copy of the initial state)
/// Softmax branch: softmax over A_t (SoftmaxRow.cs): dS_tj = P_tj (do_t·v_j − do_t·o_t); dq_t += s Σ_j dS_tj k_j,
///   dk_j += s dS_tj q_t, dv_j += P_tj do_t.
///
/// recurrent  the states S_a,t and u_t of every step replayed and kept; the softmax rows' chain rule (the definition's).
/// chunked    a forward pass keeps the state entering each chunk (S̄ there: one K x V state per chunk); chunk by chunk
///            from the last, its steps replayed from it, then reversed as above; the softmax branch by FlashAttention-2's
///            tiled backward with C x C tiles and the mask of A_t (softmax's tiled form, as the forward pass).
/// </code>
/// </summary>
public sealed partial class NatsL
{
    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        NatsLOptions options = NatsLOptions.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Backward(problem, head =>
            {
                GatedDeltaNetBackward(head, options, keepEveryState: true);
                SoftmaxRowsBackward(head, options);
            }),
            "chunked" => Heads.Backward(problem, head =>
            {
                GatedDeltaNetBackward(head, options, keepEveryState: false);
                if (head.OptionalRows("do_softmax") is { } dO)
                {
                    Span<double> route = head.Row("route");
                    double[] routes = route.ToArray();
                    int C = options.ChunkSize;
                    SoftmaxRow.TiledBackward(head.Rows("q"), head.Rows("k"), head.Rows("v"), dO, options.Scale, Math.Min(C, Math.Max(head.T, 1)),
                        (t, j) => j <= t && (j / C == t / C || routes[j / C] == 1), head.Rows("dq"), head.Rows("dk"), head.Rows("dv"));
                }
            }),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The Gated DeltaNet branch's reverse-time recurrence (class comment), the steps kept or replayed per chunk.</summary>
    private static void GatedDeltaNetBackward(Head head, NatsLOptions options, bool keepEveryState)
    {
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv");
        RowBlock? dO = head.OptionalRows("do_linear");
        Series g = head.Series("g"), β = head.Series("beta"), dg = head.Series("dg"), dβ = head.Series("dbeta");
        Span<double> route = head.Row("route");
        int C = options.ChunkSize, K = head["K"], V = head["V"];
        var chunks = Chunks.Of(head.T, C).ToArray();
        // The state entering each chunk and, kept or replayed, each step's decayed state S_a,t and u_t.
        var entries = new RowBlock[chunks.Length];
        var decayed = new RowBlock[head.T];
        var u = new double[head.T][];
        RowBlock S = head.InitialState();
        var pool = keepEveryState ? null : Enumerable.Range(0, Math.Min(C, head.T)).Select(_ => (RowBlock.Zeros(K, V), new double[V])).ToArray();
        void Replay(int c, bool keep)
        {
            var (s, e) = chunks[c];
            for (int t = s; t < e; t++)
            {
                (decayed[t], u[t]) = keep ? (RowBlock.Zeros(K, V), new double[V]) : pool![t - s];
                Step(S, k[t], v[t], g[t], β[t], decayed[t], u[t]);
            }
        }
        for (int c = 0; c < chunks.Length; c++)
        {
            entries[c] = Copy(S);
            Replay(c, keepEveryState);
            if (chunks[c].End % C == 0 && route[c] == 1)
            {
                // A complete softmax chunk: S ← exp(δ Σ g) S̄ (its writes undone, its decay kept).
                double chunkDecay = ChunkDecay(g, chunks[c], options);
                for (int a = 0; a < K; a++)
                {
                    VectorKernels.Multiply(entries[c][a], chunkDecay, S[a]);
                }
            }
        }
        RowBlock dS = head.StateGradient(), dSBar = RowBlock.Zeros(K, V);
        var du = new double[V];
        var dp = new double[V];
        var p = new double[V];
        for (int c = chunks.Length - 1; c >= 0; c--)
        {
            var (s, e) = chunks[c];
            if (!keepEveryState)
            {
                S = Copy(entries[c]);
                Replay(c, keep: false);
            }
            if (e % C == 0)
            {
                // The end-of-chunk rule, undone: S̄ ← S, then (softmax chunk) S ← exp(δ Σ g) S̄.
                for (int a = 0; a < K; a++)
                {
                    VectorKernels.AddTo(dSBar[a], dS[a]);
                    dSBar[a].Clear();
                }
                if (route[c] == 1)
                {
                    double chunkDecay = ChunkDecay(g, chunks[c], options), overlap = 0;
                    for (int a = 0; a < K; a++)
                    {
                        overlap += VectorKernels.Dot(dS[a], entries[c][a]);
                        VectorKernels.Multiply(dS[a], chunkDecay, dSBar[a]);
                        dS[a].Clear();
                    }
                    for (int j = s; j < e; j++)
                    {
                        dg[j] += options.Delta * chunkDecay * overlap; // δ ⟨dS, S_after⟩
                    }
                }
            }
            for (int t = e - 1; t >= s; t--)
            {
                RowBlock Sa = decayed[t];
                // o_linear_t = s S_tᵀ q_t with S_t = S_a,t + k_t u_tᵀ.
                if (dO is not null)
                {
                    double uDo = VectorKernels.Dot(u[t], dO[t]);
                    for (int a = 0; a < K; a++)
                    {
                        dq[t][a] += options.Scale * (VectorKernels.Dot(Sa[a], dO[t]) + k[t][a] * uDo);
                        VectorKernels.Axpy(options.Scale * q[t][a], dO[t], dS[a]);
                    }
                }
                // S_t = S_a,t + k_t u_tᵀ: du = dSᵀ k_t, dk_t += dS u_t.
                Array.Clear(du);
                Array.Clear(p);
                for (int a = 0; a < K; a++)
                {
                    VectorKernels.Axpy(k[t][a], dS[a], du);
                    dk[t][a] += VectorKernels.Dot(dS[a], u[t]);
                    VectorKernels.Axpy(k[t][a], Sa[a], p); // S_a,tᵀ k_t
                }
                // u_t = β_t (v_t − S_a,tᵀ k_t).
                double dBeta = 0;
                for (int c2 = 0; c2 < V; c2++)
                {
                    dBeta += du[c2] * (v[t][c2] - p[c2]);
                    dv[t][c2] += β[t] * du[c2];
                    dp[c2] = -β[t] * du[c2];
                }
                dβ[t] = dBeta;
                // S_a,t = exp(g_t) S_{t−1}, read by S_a,tᵀ k_t: dk_t += S_a,t dp, dS += k_t dpᵀ; then dg_t and dS_{t−1}.
                double decay = Math.Exp(g[t]), overlap = 0;
                for (int a = 0; a < K; a++)
                {
                    dk[t][a] += VectorKernels.Dot(Sa[a], dp);
                    VectorKernels.Axpy(k[t][a], dp, dS[a]);
                    overlap += VectorKernels.Dot(Sa[a], dS[a]);
                    VectorKernels.Scale(decay, dS[a]);
                }
                dg[t] += overlap;
            }
        }
        for (int a = 0; a < K; a++)
        {
            VectorKernels.AddTo(dSBar[a], dS[a]); // S̄ started as a copy of the initial state
        }
    }

    /// <summary>One Gated DeltaNet step in place: S ← exp(g) S (kept in <paramref name="decayed"/>), u = β (v − Sᵀk), S ← S + k uᵀ.</summary>
    private static void Step(RowBlock S, ReadOnlySpan<double> k, ReadOnlySpan<double> v, double g, double β, RowBlock decayed, Span<double> u)
    {
        double decay = Math.Exp(g);
        u.Clear();
        for (int a = 0; a < S.Count; a++)
        {
            VectorKernels.Scale(decay, S[a]);
            VectorKernels.Axpy(k[a], S[a], u);
            S[a].CopyTo(decayed[a]);
        }
        for (int c = 0; c < u.Length; c++)
        {
            u[c] = β * (v[c] - u[c]);
        }
        for (int a = 0; a < S.Count; a++)
        {
            VectorKernels.Axpy(k[a], u, S[a]);
        }
    }

    /// <summary>exp(δ Σ_{j∈c} g_j), as the forward pass sums it.</summary>
    private static double ChunkDecay(Series g, (int Start, int End) chunk, NatsLOptions options)
    {
        double sum = 0;
        for (int j = chunk.Start; j < chunk.End; j++)
        {
            sum += g[j];
        }
        return Math.Exp(options.Delta * sum);
    }

    private static RowBlock Copy(RowBlock from)
    {
        var to = RowBlock.Zeros(from.Count, from.Width);
        Copy(from, to);
        return to;
    }

    /// <summary>The softmax branch's backward pass row by row over A_t (the definition's chain rule).</summary>
    private static void SoftmaxRowsBackward(Head head, NatsLOptions options)
    {
        if (head.OptionalRows("do_softmax") is not { } dO)
        {
            return;
        }
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv");
        Span<double> route = head.Row("route");
        int C = options.ChunkSize;
        var visible = new int[head.T];
        for (int t = 0; t < head.T; t++)
        {
            int count = 0;
            for (int j = 0; j <= t; j++)
            {
                if (j / C == t / C || route[j / C] == 1)
                {
                    visible[count++] = j;
                }
            }
            SoftmaxRow.Backward(q[t], k, v, options.Scale, visible.AsSpan(0, count), dO[t], dq[t], dk, dv);
        }
    }
}
