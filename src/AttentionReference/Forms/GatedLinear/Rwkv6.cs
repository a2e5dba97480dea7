using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// RWKV-6 (Finch) linear attention with data-dependent per-channel decay and a bonus for the current token, exact,
/// in double, in flash-linear-attention's convention.
/// <code>
/// Shapes (layout [B,T,H,D], as fla with head_first=False):
///   q [B,T,H,K]  (RWKV's receptance r; fla's chunk_rwkv6 calls it r)
///   k [B,T,H,K]   v [B,T,H,V]
///   w [B,T,H,K]  log decay, per step and key channel (exp(w) ∈ (0, 1] when w ≤ 0)
///   u [H,K]      bonus of the current token
///   initial_state [N,H,K,V] optional (zeros)   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,H,V]   final_state [N,H,K,V]
///   N = B, or the number of sequences with cu_seqlens.
///
/// Per sequence and head, state S (K x V), S_{−1} = initial_state, for t = 0 … T−1:
///   o_t = scale · q_tᵀ (S_{t−1} + Diag(u) k_t v_tᵀ)          scale = K^(-1/2) unless given
///   S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ
///   final_state = S_{T−1}
///
/// Unrolled (the parallel form), with the decay from step j to the query's read of step t−1:
///   o_t = scale · Σ_{j&lt;t} (Σ_c q_tc k_jc exp(Σ_{r=j+1}^{t−1} w_rc)) v_j           past tokens, decayed
///       + scale · (Σ_c q_tc u_c k_tc) v_t                                          the bonus (diagonal)
///       + scale · Σ_c q_tc exp(Σ_{r=0}^{t−1} w_rc) S_{−1}[c,:]                      the initial state
/// </code>
/// Order of decay and read. o_t reads the state BEFORE step t's decay and update: token t enters its own output
/// only through the bonus u, and the decay w_t first acts on outputs from t+1 on. This is
/// fla's <c>naive_recurrent_rwkv6</c> (fla/ops/rwkv6/recurrent_naive.py): <c>o_i = ((h + u·kv_i) · q_i).sum</c>, then
/// <c>h = h · exp(w_i) + kv_i</c>, and it is what decides the order here. With u = 0 the form is GLA's "exclusive"
/// variant o_t = scale · q_tᵀ S_{t−1}. (GLA's chunkwise algorithm, GlaChunkwise.cs, is the inclusive one: it reads the
/// state after the step's decay, so rwkv6 keeps its own chunked algorithm below, with every decay inside a chunk.)
///
/// w is a log decay, as fla's kernels take it: chunk_rwkv6's docstring says "data-dependent decays … in log
/// space" (its layer passes w = −exp(raw) so that w ≤ 0), and recurrent_naive exponentiates it. We do not reject
/// w &gt; 0 (the recurrence is still defined; it just grows), but the laws are stated for w ≤ 0.
///
/// Sources: Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence"
/// (arXiv 2404.05892), eq. for wkv_t; fla's recurrent_naive.py (order, scale default K^-1/2, state [B,H,K,V] K x V,
/// u [H,K]) and chunk_rwkv6's signature (r, k, v, w, u, scale, initial_state, output_final_state, cu_seqlens).
/// Our choices: q is the canonical name with r as an alias; final_state is always produced.
///
/// Variants:
///   recurrent  the definition above, token by token.
///   parallel   the unrolled sum: for each t, j runs from t−1 down to the sequence start while the log decay
///              Σ_{r=j+1}^{t−1} w_r is accumulated per channel; every weight is exp of a sum of w ≤ 0, never a
///              ratio of cumulative products.
///   chunked    chunks of C steps (C ≥ 1, the last chunk may be shorter). Inside a chunk starting at s, with the
///              local inclusive log decay b_i = Σ_{r=s}^{s+i} w_r (b_{−1} = 0):
///                1. inter-chunk: o_i += scale · (q_i ⊙ exp(b_{i−1}))ᵀ S_start
///                2. intra-chunk: o_i += scale · Σ_{j&lt;i} (Σ_c q_ic k_jc exp(b_{i−1,c} − b_{j,c})) v_j
///                3. bonus:       o_i += scale · (Σ_c q_ic u_c k_ic) v_i
///                4. state:       S ← Diag(exp(b_{n−1})) S + Σ_j Diag(exp(b_{n−1} − b_j)) k_j v_jᵀ
///              b_{i−1} − b_j ≤ 0 is a difference inside one chunk, taken in log space and exponentiated once,
///              as GLA's secondary-chunk scheme does; nothing is divided by a product that can underflow.
/// </summary>
public sealed partial class Rwkv6 : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("rwkv6", "gated linear", "Rwkv6.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs =
        [
            new("q", "B,T,H,K", "receptance (queries)", Aliases: ["r"]),
            Specs.K, Specs.V,
            new("w", "B,T,H,K", "log decay per step and key channel (≤ 0)"),
            new("u", "H,K", "bonus of the current token"),
            Specs.InitialState, Specs.CuSeqlens,
        ],
        Outputs = Specs.StateOutputs,
        Parameters = [Specs.Scale, Specs.ChunkSizeOf(16)],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, scale)),
            "parallel" => Heads.Run(problem, head => Parallel(head, scale)),
            "chunked" => Heads.Run(problem, head => Chunked(head, scale, chunkSize)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The definition: token by token, read the state, then decay and update it.</summary>
    public static void Recurrent(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), w = head.Rows("w"), o = head.Rows("o"), S = head.State();
        ReadOnlySpan<double> u = head.Row("u");
        for (int t = 0; t < head.T; t++)
        {
            // o_t = scale · q_tᵀ (S_{t−1} + Diag(u) k_t v_tᵀ)
            for (int c = 0; c < S.Count; c++)
            {
                VectorKernels.Axpy(scale * q[t][c], S[c], o[t]);
                VectorKernels.Axpy(scale * q[t][c] * u[c] * k[t][c], v[t], o[t]);
            }
            // S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ
            for (int c = 0; c < S.Count; c++)
            {
                VectorKernels.Scale(Math.Exp(w[t][c]), S[c]);
                VectorKernels.Axpy(k[t][c], v[t], S[c]);
            }
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Backward(problem, head => RecurrentBackward(head, scale)),
            "parallel" => Heads.Backward(problem, head => ParallelBackward(head, scale)),
            "chunked" => Heads.Backward(problem, head => ChunkedBackward(head, scale, chunkSize)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>
    /// The backward pass of the recurrence, in reverse time, from the states S_t a forward replay stores (T·K·V values
    /// per pair: the definition keeps every state; the chunked backward keeps one per chunk), with β_t = v_t·do_t:
    /// <code>
    ///   dS = dfinal_state (0 if absent)
    ///   for t = T−1 … 0:                               dS is the gradient of S_t
    ///     dk_t  = dS v_t,   dv_t = dSᵀ k_t                          S_t ∋ k_t v_tᵀ
    ///     dw_t  = exp(w_t) ∘ (Σ_v dS ∘ S_{t−1}), per key channel     S_t ∋ Diag(exp(w_t)) S_{t−1}
    ///     dS    = Diag(exp(w_t)) dS + scale · q_t do_tᵀ                now of S_{t−1}, which o_t reads
    ///     dq_t  = scale · (S_{t−1} do_t + β_t u ∘ k_t)
    ///     the bonus o_t ∋ scale (Σ_c q_tc u_c k_tc) v_t:
    ///       dk_t += scale β_t u ∘ q_t,   dv_t += scale (Σ_c q_tc u_c k_tc) do_t,   du += scale β_t q_t ∘ k_t
    ///   dinitial_state = dS
    /// </code>
    /// u is one bonus per head: du sums over the steps here, and the runner sums the pairs' (sequences', batch entries')
    /// copies.
    /// </summary>
    public static void RecurrentBackward(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), w = head.Rows("w");
        RowBlock dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv"), dw = head.Rows("dw");
        RowBlock? dO = head.OptionalRows("do");
        ReadOnlySpan<double> u = head.Row("u");
        Span<double> du = head.Row("du");
        RowBlock[] S = Replay(head, k, v, w); // S[t + 1] = S_t, S[0] = S_{−1}
        RowBlock dS = head.StateGradient();
        for (int t = head.T - 1; t >= 0; t--)
        {
            double β = dO is null ? 0 : VectorKernels.Dot(v[t], dO[t]), bonus = 0;
            for (int c = 0; c < dS.Count; c++)
            {
                dk[t][c] = VectorKernels.Dot(dS[c], v[t]) + scale * β * u[c] * q[t][c];
                VectorKernels.Axpy(k[t][c], dS[c], dv[t]);
                double decay = Math.Exp(w[t][c]);
                dw[t][c] = decay * VectorKernels.Dot(dS[c], S[t][c]);
                VectorKernels.Scale(decay, dS[c]);
                if (dO is not null)
                {
                    VectorKernels.Axpy(scale * q[t][c], dO[t], dS[c]);
                    dq[t][c] = scale * (VectorKernels.Dot(S[t][c], dO[t]) + β * u[c] * k[t][c]);
                    du[c] += scale * β * q[t][c] * k[t][c];
                }
                bonus += q[t][c] * u[c] * k[t][c];
            }
            if (dO is not null)
            {
                VectorKernels.Axpy(scale * bonus, dO[t], dv[t]);
            }
        }
    }

    /// <summary>The states S_{−1}, S_0, …, S_{T−1} of the recurrence, replayed from the initial state.</summary>
    private static RowBlock[] Replay(Head head, RowBlock k, RowBlock v, RowBlock w)
    {
        var S = new RowBlock[head.T + 1];
        S[0] = head.InitialState();
        for (int t = 0; t < head.T; t++)
        {
            S[t + 1] = RowBlock.Zeros(S[t].Count, S[t].Width);
            for (int c = 0; c < S[t].Count; c++)
            {
                VectorKernels.Axpy(Math.Exp(w[t][c]), S[t][c], S[t + 1][c]); // S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ
                VectorKernels.Axpy(k[t][c], v[t], S[t + 1][c]);
            }
        }
        return S;
    }

    /// <summary>The unrolled sum over past tokens, the decay from j to t−1 accumulated per channel in log space.</summary>
    private static void Parallel(Head head, double scale)
    {
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), w = head.Rows("w"), o = head.Rows("o"), S = head.State();
        ReadOnlySpan<double> u = head.Row("u");
        int K = S.Count;
        var S0 = RowBlock.Zeros(K, S.Width);
        for (int c = 0; c < K; c++)
        {
            S[c].CopyTo(S0[c]);
        }
        var d = new double[K]; // d_c = Σ_{r=j+1}^{t−1} w_rc, the log decay from step j to the read at t
        for (int t = 0; t < head.T; t++)
        {
            // The bonus: scale · (Σ_c q_tc u_c k_tc) v_t
            double bonus = 0;
            for (int c = 0; c < K; c++)
            {
                bonus += q[t][c] * u[c] * k[t][c];
            }
            VectorKernels.Axpy(scale * bonus, v[t], o[t]);
            // Past tokens, decayed: scale · Σ_{j<t} (Σ_c q_tc k_jc exp(d_c)) v_j
            Array.Clear(d);
            for (int j = t - 1; j >= 0; j--)
            {
                double a = 0;
                for (int c = 0; c < K; c++)
                {
                    a += q[t][c] * k[j][c] * Math.Exp(d[c]);
                }
                VectorKernels.Axpy(scale * a, v[j], o[t]);
                VectorKernels.Axpy(1, w[j], d); // d now reaches back to step j, ready for j − 1
            }
            // The initial state, decayed by d = Σ_{r=0}^{t−1} w_r up to the read at t.
            for (int c = 0; c < K; c++)
            {
                VectorKernels.Axpy(scale * q[t][c] * Math.Exp(d[c]), S0[c], o[t]);
            }
        }
        // final_state = S_{T−1} = Σ_j Diag(exp(Σ_{r=j+1}^{T−1} w_r)) k_j v_jᵀ + Diag(exp(Σ_r w_r)) S_{−1}
        Array.Clear(d);
        for (int c = 0; c < K; c++)
        {
            S[c].Clear();
        }
        for (int j = head.T - 1; j >= 0; j--)
        {
            for (int c = 0; c < K; c++)
            {
                VectorKernels.Axpy(k[j][c] * Math.Exp(d[c]), v[j], S[c]);
            }
            VectorKernels.Axpy(1, w[j], d);
        }
        for (int c = 0; c < K; c++)
        {
            VectorKernels.Axpy(Math.Exp(d[c]), S0[c], S[c]);
        }
    }

    /// <summary>Chunks of <paramref name="chunkSize"/> steps: steps 1–4 per chunk, in order.</summary>
    private static void Chunked(Head head, double scale, int chunkSize)
    {
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), w = head.Rows("w"), o = head.Rows("o"), S = head.State();
        ReadOnlySpan<double> u = head.Row("u");
        int K = S.Count;
        var b = RowBlock.Zeros(Math.Min(chunkSize, Math.Max(head.T, 1)), K); // b_i, the local inclusive log decay, row i
        foreach (var (s, e) in Chunks.Of(head.T, chunkSize))
        {
            int n = e - s;
            LocalDecay(w, s, n, b);
            for (int i = 0; i < n; i++)
            {
                ReadOnlySpan<double> qi = q[s + i], ki = k[s + i];
                Span<double> oi = o[s + i];
                // 1. inter-chunk: scale · (q_i ⊙ exp(b_{i−1}))ᵀ S_start
                ReadOnlySpan<double> decayBefore = i == 0 ? default : b[i - 1];
                for (int c = 0; c < K; c++)
                {
                    double before = i == 0 ? 0 : decayBefore[c];
                    VectorKernels.Axpy(scale * qi[c] * Math.Exp(before), S[c], oi);
                }
                // 2. intra-chunk: scale · Σ_{j<i} (Σ_c q_ic k_jc exp(b_{i−1,c} − b_{j,c})) v_j
                for (int j = 0; j < i; j++)
                {
                    ReadOnlySpan<double> kj = k[s + j], bBefore = b[i - 1], bj = b[j];
                    double a = 0;
                    for (int c = 0; c < K; c++)
                    {
                        a += qi[c] * kj[c] * Math.Exp(bBefore[c] - bj[c]);
                    }
                    VectorKernels.Axpy(scale * a, v[s + j], oi);
                }
                // 3. bonus: scale · (Σ_c q_ic u_c k_ic) v_i
                double bonus = 0;
                for (int c = 0; c < K; c++)
                {
                    bonus += qi[c] * u[c] * ki[c];
                }
                VectorKernels.Axpy(scale * bonus, v[s + i], oi);
            }
            // 4. state
            AdvanceState(S, b, k, v, s, n);
        }
    }

    /// <summary>Row i of <paramref name="b"/> becomes b_i = Σ_{r=s}^{s+i} w_r, the chunk's local inclusive log decay, for i &lt; n.</summary>
    private static void LocalDecay(RowBlock w, int s, int n, RowBlock b)
    {
        for (int i = 0; i < n; i++)
        {
            w[s + i].CopyTo(b[i]);
            if (i > 0)
            {
                VectorKernels.Axpy(1, b[i - 1], b[i]);
            }
        }
    }

    /// <summary>Step 4 for the chunk of n steps from s: S ← Diag(exp(b_{n−1})) S + Σ_j Diag(exp(b_{n−1} − b_j)) k_j v_jᵀ.</summary>
    private static void AdvanceState(RowBlock S, RowBlock b, RowBlock k, RowBlock v, int s, int n)
    {
        ReadOnlySpan<double> last = b[n - 1];
        for (int c = 0; c < S.Count; c++)
        {
            VectorKernels.Scale(Math.Exp(last[c]), S[c]);
        }
        for (int j = 0; j < n; j++)
        {
            ReadOnlySpan<double> kj = k[s + j], bj = b[j], vj = v[s + j];
            for (int c = 0; c < S.Count; c++)
            {
                VectorKernels.Axpy(kj[c] * Math.Exp(last[c] - bj[c]), vj, S[c]);
            }
        }
    }
}
