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
///   initial_state [N,H,K,V] (optional, zeros)   →   o [B,T,H,V]   final_state [N,H,K,V]
///   N = B, or the number of sequences with cu_seqlens (B = 1).
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
/// variant o_t = scale · q_tᵀ S_{t−1}.
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
public static class Rwkv6
{
    /// <summary>The definition: token by token, read the state, then decay and update it.</summary>
    public static Rwkv6Result Recurrent(Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, Rwkv6Options? options = null)
    {
        var p = Rwkv6Problem.Bind(q, k, v, w, u, options ?? new Rwkv6Options());
        return p.Run(pair =>
        {
            var (sequence, h, s) = (pair.Sequence, pair.H, pair.State());
            int b = sequence.Batch;
            ReadOnlySpan<double> uh = p.U(h);
            for (int t = sequence.Start; t < sequence.Start + sequence.Length; t++)
            {
                ReadOnlySpan<double> qt = p.Q(b, t, h), kt = p.K(b, t, h), vt = p.V(b, t, h), wt = p.W(b, t, h);
                Span<double> ot = pair.O(t - sequence.Start);
                // o_t = scale · q_tᵀ (S_{t−1} + Diag(u) k_t v_tᵀ)
                for (int c = 0; c < p.Dk; c++)
                {
                    VectorKernels.Axpy(p.Scale * qt[c], p.StateRow(s, c), ot);
                    VectorKernels.Axpy(p.Scale * qt[c] * uh[c] * kt[c], vt, ot);
                }
                // S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ
                for (int c = 0; c < p.Dk; c++)
                {
                    Span<double> row = p.StateRow(s, c);
                    VectorKernels.Scale(Math.Exp(wt[c]), row);
                    VectorKernels.Axpy(kt[c], vt, row);
                }
            }
        });
    }

    /// <summary>The unrolled sum over past tokens, the decay from j to t−1 accumulated per channel in log space.</summary>
    public static Rwkv6Result Parallel(Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, Rwkv6Options? options = null)
    {
        var p = Rwkv6Problem.Bind(q, k, v, w, u, options ?? new Rwkv6Options());
        return p.Run(pair =>
        {
            var (sequence, h, s) = (pair.Sequence, pair.H, pair.State());
            int b = sequence.Batch, start = sequence.Start, end = sequence.Start + sequence.Length;
            ReadOnlySpan<double> uh = p.U(h);
            double[] s0 = (double[])s.Clone();
            var d = new double[p.Dk]; // d_c = Σ_{r=j+1}^{t−1} w_rc, the log decay from step j to the read at t

            for (int t = start; t < end; t++)
            {
                ReadOnlySpan<double> qt = p.Q(b, t, h), kt = p.K(b, t, h);
                Span<double> ot = pair.O(t - start);
                double bonus = 0;
                for (int c = 0; c < p.Dk; c++)
                {
                    bonus += qt[c] * uh[c] * kt[c];
                }
                VectorKernels.Axpy(p.Scale * bonus, p.V(b, t, h), ot);

                Array.Clear(d);
                for (int j = t - 1; j >= start; j--)
                {
                    ReadOnlySpan<double> kj = p.K(b, j, h);
                    double a = 0;
                    for (int c = 0; c < p.Dk; c++)
                    {
                        a += qt[c] * kj[c] * Math.Exp(d[c]);
                    }
                    VectorKernels.Axpy(p.Scale * a, p.V(b, j, h), ot);
                    VectorKernels.Axpy(1, p.W(b, j, h), d); // d now reaches back to step j, ready for j − 1
                }
                // d = Σ_{r=start}^{t−1} w_r: the decay of the initial state up to the read at t.
                for (int c = 0; c < p.Dk; c++)
                {
                    VectorKernels.Axpy(p.Scale * qt[c] * Math.Exp(d[c]), p.StateRow(s0, c), ot);
                }
            }

            // final_state = S_{T−1} = Σ_j Diag(exp(Σ_{r=j+1}^{T−1} w_r)) k_j v_jᵀ + Diag(exp(Σ_r w_r)) S_{−1}
            Array.Clear(s);
            Array.Clear(d);
            for (int j = end - 1; j >= start; j--)
            {
                ReadOnlySpan<double> kj = p.K(b, j, h), vj = p.V(b, j, h);
                for (int c = 0; c < p.Dk; c++)
                {
                    VectorKernels.Axpy(kj[c] * Math.Exp(d[c]), vj, p.StateRow(s, c));
                }
                VectorKernels.Axpy(1, p.W(b, j, h), d);
            }
            for (int c = 0; c < p.Dk; c++)
            {
                VectorKernels.Axpy(Math.Exp(d[c]), p.StateRow(s0, c), p.StateRow(s, c));
            }
        });
    }

    /// <summary>Chunks of <paramref name="chunkSize"/> steps: intra-chunk quadratic, inter-chunk through the state.</summary>
    public static Rwkv6Result Chunked(Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, int chunkSize, Rwkv6Options? options = null)
    {
        if (chunkSize < 1)
        {
            throw new InputException($"chunk_size must be ≥ 1, found {chunkSize}");
        }
        var p = Rwkv6Problem.Bind(q, k, v, w, u, options ?? new Rwkv6Options());
        return p.Run(pair =>
        {
            var (sequence, h, s) = (pair.Sequence, pair.H, pair.State());
            int b = sequence.Batch, end = sequence.Start + sequence.Length;
            ReadOnlySpan<double> uh = p.U(h);
            var bCum = new double[chunkSize * p.Dk]; // b_i, the local inclusive log decay, row i

            for (int cs = sequence.Start; cs < end; cs += chunkSize)
            {
                int n = Math.Min(chunkSize, end - cs);
                for (int i = 0; i < n; i++)
                {
                    Span<double> bi = bCum.AsSpan(i * p.Dk, p.Dk);
                    if (i == 0)
                    {
                        p.W(b, cs, h).CopyTo(bi);
                    }
                    else
                    {
                        bCum.AsSpan((i - 1) * p.Dk, p.Dk).CopyTo(bi);
                        VectorKernels.Axpy(1, p.W(b, cs + i, h), bi);
                    }
                }

                for (int i = 0; i < n; i++)
                {
                    ReadOnlySpan<double> qi = p.Q(b, cs + i, h), ki = p.K(b, cs + i, h);
                    Span<double> oi = pair.O(cs + i - sequence.Start);
                    // 1. inter-chunk: scale · (q_i ⊙ exp(b_{i−1}))ᵀ S_start
                    for (int c = 0; c < p.Dk; c++)
                    {
                        double before = i == 0 ? 0 : bCum[(i - 1) * p.Dk + c];
                        VectorKernels.Axpy(p.Scale * qi[c] * Math.Exp(before), p.StateRow(s, c), oi);
                    }
                    // 2. intra-chunk: scale · Σ_{j<i} (Σ_c q_ic k_jc exp(b_{i−1,c} − b_{j,c})) v_j
                    for (int j = 0; j < i; j++)
                    {
                        ReadOnlySpan<double> kj = p.K(b, cs + j, h);
                        double a = 0;
                        for (int c = 0; c < p.Dk; c++)
                        {
                            a += qi[c] * kj[c] * Math.Exp(bCum[(i - 1) * p.Dk + c] - bCum[j * p.Dk + c]);
                        }
                        VectorKernels.Axpy(p.Scale * a, p.V(b, cs + j, h), oi);
                    }
                    // 3. bonus: scale · (Σ_c q_ic u_c k_ic) v_i
                    double bonus = 0;
                    for (int c = 0; c < p.Dk; c++)
                    {
                        bonus += qi[c] * uh[c] * ki[c];
                    }
                    VectorKernels.Axpy(p.Scale * bonus, p.V(b, cs + i, h), oi);
                }

                // 4. state: S ← Diag(exp(b_{n−1})) S + Σ_j Diag(exp(b_{n−1} − b_j)) k_j v_jᵀ
                ReadOnlySpan<double> bLast = bCum.AsSpan((n - 1) * p.Dk, p.Dk);
                for (int c = 0; c < p.Dk; c++)
                {
                    VectorKernels.Scale(Math.Exp(bLast[c]), p.StateRow(s, c));
                }
                for (int j = 0; j < n; j++)
                {
                    ReadOnlySpan<double> kj = p.K(b, cs + j, h), vj = p.V(b, cs + j, h);
                    for (int c = 0; c < p.Dk; c++)
                    {
                        VectorKernels.Axpy(kj[c] * Math.Exp(bLast[c] - bCum[j * p.Dk + c]), vj, p.StateRow(s, c));
                    }
                }
            }
        });
    }
}

/// <summary>The options of <see cref="Rwkv6"/>.</summary>
public sealed record Rwkv6Options
{
    /// <summary>Score scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>The state before the first step, [N,H,K,V]; null = zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>Packed sequence boundaries [N+1] (int32/int64, B = 1); null = one sequence per batch entry.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of RWKV-6: o [B,T,H,V] and final_state [N,H,K,V].</summary>
public sealed record Rwkv6Result(Tensor O, Tensor FinalState);

/// <summary>The validated inputs of one RWKV-6 call, row accessors, and the per-(sequence, head) driver.</summary>
internal sealed class Rwkv6Problem
{
    private readonly Tensor _q, _k, _v, _w, _u;
    private readonly Tensor? _initialState;
    private readonly IReadOnlyList<SequenceSlice> _sequences;

    private Rwkv6Problem(Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, Dims dims, Rwkv6Options options,
        IReadOnlyList<SequenceSlice> sequences)
    {
        (_q, _k, _v, _w, _u, _initialState, _sequences) = (q, k, v, w, u, options.InitialState, sequences);
        (Batch, Time, Heads, Dk, Dv) = (dims["B"], dims["T"], dims["H"], dims["K"], dims["V"]);
        Scale = options.Scale ?? 1 / Math.Sqrt(Dk);
    }

    public int Batch { get; }
    public int Time { get; }
    public int Heads { get; }
    public int Dk { get; }
    public int Dv { get; }
    public double Scale { get; }

    public static Rwkv6Problem Bind(Tensor q, Tensor k, Tensor v, Tensor w, Tensor u, Rwkv6Options options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        dims.Bind("w", Dims.RequireFloat("w", w), "B,T,H,K");
        dims.Bind("u", Dims.RequireFloat("u", u), "H,K");
        var sequences = Sequences.Slices(dims["B"], dims["T"], options.CuSeqlens);
        dims.Set("N", Sequences.StateCount(sequences));
        if (options.InitialState is { } s0)
        {
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", s0), "N,H,K,V");
        }
        return new Rwkv6Problem(q, k, v, w, u, dims, options, sequences);
    }

    /// <summary>Runs <paramref name="body"/> once per (sequence, head); its state is S (K x V, row-major), in and out.</summary>
    public Rwkv6Result Run(Action<SequenceHead> body)
    {
        var result = SequenceHeads.Run(_sequences, Batch, Time, Heads, Dv, [new StateTensor(_initialState, Dk, Dv)], body);
        return new Rwkv6Result(result.O, result.FinalStates[0]);
    }

    public ReadOnlySpan<double> Q(int b, int t, int h) => _q.Data.AsSpan(((b * Time + t) * Heads + h) * Dk, Dk);

    public ReadOnlySpan<double> K(int b, int t, int h) => _k.Data.AsSpan(((b * Time + t) * Heads + h) * Dk, Dk);

    public ReadOnlySpan<double> V(int b, int t, int h) => _v.Data.AsSpan(((b * Time + t) * Heads + h) * Dv, Dv);

    public ReadOnlySpan<double> W(int b, int t, int h) => _w.Data.AsSpan(((b * Time + t) * Heads + h) * Dk, Dk);

    public ReadOnlySpan<double> U(int h) => _u.Data.AsSpan(h * Dk, Dk);

    /// <summary>Row c (key channel) of a K x V state.</summary>
    public Span<double> StateRow(double[] state, int c) => state.AsSpan(c * Dv, Dv);
}
