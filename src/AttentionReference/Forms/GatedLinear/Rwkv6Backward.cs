using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// The backward passes of rwkv6's parallel and chunked forms (the recurrent one, the definition's, is in Rwkv6.cs).
/// <code>
/// A reader of the state takes terms j with weights over the key channels c: query t reads S_{t−1}, so key j &lt; t
/// reaches it as scale · q_tc k_jc exp(Σ_{r=j+1}^{t−1} w_rc) (v_j·do_t), and the initial state as
/// scale · q_tc exp(Σ_{r=0}^{t−1} w_rc) (S_{−1}[c,:]·do_t); the final state is one more reader (t = T, query 1, do = dS):
/// key j reaches it as k_jc exp(Σ_{r=j+1}^{T−1} w_rc) (dS[c,:]·v_j). Each term E_tj (a K-vector, j = −1 the initial
/// state) is the gradient of its log weight, so it adds to dw_r for every step r its decay spans (j &lt; r &lt; t):
///   dw_r = Σ_t Σ_{j&lt;r&lt;t} E_tj            (a prefix sum over j for each reader t)
/// and, dividing out one factor, to dq_t, dk_j and dv_j; the bonus of each step is the recurrence's (Rwkv6.cs).
///
/// parallel  the unrolled sum's chain rule: for each reader t, j from t−1 down to the sequence start with the log decay
///           accumulated per channel as the forward does (each weight one exp of a sum of w), then the prefix sum.
/// chunked   as fla's chunk_rwkv6 backward: the state entering each chunk recomputed by a forward sweep and kept (one
///           K x V state per chunk, none per step), then the chunks in reverse, dS the gradient of the state after the
///           chunk, the forward's steps in reverse, with b_i = Σ_{r=s}^{s+i} w_r local to the chunk (b_{−1} = 0):
///   4. the state handed on is a reader: dk_j += exp(b_{n−1} − b_j) ∘ (dS v_j), dv_j += dSᵀ (k_j ∘ exp(b_{n−1} − b_j)),
///      its terms E over the chunk's keys and the entering state (exp(b_{n−1}) ∘ (Σ_v dS ∘ S_start))
///   3. bonus: as the recurrence
///   2. intra-chunk: for j &lt; i, da = scale do_i·v_j: dq_i += da k_j ∘ exp(b_{i−1} − b_j), dk_j += da q_i ∘ exp(…),
///      dv_j += scale (Σ_c q_ic k_jc exp(…)) do_i
///   1. inter-chunk: dq_i += scale exp(b_{i−1}) ∘ (S_start do_i)
///   then dS ← Diag(exp(b_{n−1})) dS + scale Σ_i (q_i ∘ exp(b_{i−1})) do_iᵀ, the gradient of the state entering the chunk;
///   dinitial_state = dS after the first chunk. Every exponent is a difference inside one chunk, as the forward's.
/// </code>
/// </summary>
public sealed partial class Rwkv6
{
    /// <summary>The unrolled sum's chain rule: each query's reads of past keys and the initial state, then the final state's.</summary>
    private static void ParallelBackward(Head head, double scale)
    {
        var g = new Rows(head);
        RowBlock S0 = head.InitialState(), dS = head.StateGradient();
        int K = S0.Count, T = head.T;
        var dSFinal = RowBlock.Zeros(K, S0.Width);
        var (d, decay, E) = (new double[K], new double[K], RowBlock.Zeros(T + 1, K)); // E[j + 1] = E_tj, E[0] the initial state's
        // The final state: key j decayed by Σ_{r=j+1}^{T−1} w_r, the initial state by all of them.
        for (int c = 0; c < K; c++)
        {
            dS[c].CopyTo(dSFinal[c]);
        }
        for (int j = T - 1; j >= 0; j--)
        {
            VectorKernels.Exp(d, decay);
            ReadOnlySpan<double> kj = g.K[j], vj = g.V[j];
            Span<double> dkj = g.Dk[j], dvj = g.Dv[j], ej = E[j + 1];
            for (int c = 0; c < K; c++)
            {
                double y = VectorKernels.Dot(dSFinal[c], vj);
                dkj[c] += decay[c] * y;
                ej[c] = kj[c] * decay[c] * y;
                VectorKernels.Axpy(kj[c] * decay[c], dSFinal[c], dvj);
            }
            VectorKernels.AddTo(g.W[j], d);
        }
        VectorKernels.Exp(d, decay);
        for (int c = 0; c < K; c++)
        {
            E[0][c] = decay[c] * VectorKernels.Dot(dSFinal[c], S0[c]);
            VectorKernels.Scale(decay[c], dS[c]);
        }
        AddSpanned(E, T, g.Dw);
        for (int t = 0; t < T && g.DO is not null; t++)
        {
            ReadOnlySpan<double> qt = g.Q[t], dOt = g.DO[t];
            BonusBackward(g, t, scale);
            // Past tokens j < t, the decay from j to the read at t accumulated in d as the forward does.
            Array.Clear(d);
            for (int j = t - 1; j >= 0; j--)
            {
                VectorKernels.Exp(d, decay);
                double da = scale * VectorKernels.Dot(dOt, g.V[j]), a = 0;
                ReadOnlySpan<double> kj = g.K[j];
                Span<double> dqt = g.Dq[t], dkj = g.Dk[j], ej = E[j + 1];
                for (int c = 0; c < K; c++)
                {
                    double term = da * decay[c];
                    a += qt[c] * kj[c] * decay[c];
                    dqt[c] += term * kj[c];
                    dkj[c] += term * qt[c];
                    ej[c] = term * qt[c] * kj[c];
                }
                VectorKernels.Axpy(scale * a, dOt, g.Dv[j]);
                VectorKernels.AddTo(g.W[j], d);
            }
            // The initial state, decayed by Σ_{r=0}^{t−1} w_r.
            VectorKernels.Exp(d, decay);
            for (int c = 0; c < K; c++)
            {
                double y = scale * decay[c] * VectorKernels.Dot(S0[c], dOt);
                g.Dq[t][c] += y;
                E[0][c] = qt[c] * y;
                VectorKernels.Axpy(scale * qt[c] * decay[c], dOt, dS[c]);
            }
            AddSpanned(E, t, g.Dw);
        }
    }

    /// <summary>
    /// dw_r += Σ_{j=−1}^{r−1} E_tj for r = 0 … t − 1: the terms of reader t whose decay spans step r (row j + 1 of
    /// <paramref name="E"/> is E_tj, row 0 the initial state's).
    /// </summary>
    private static void AddSpanned(RowBlock E, int t, RowBlock dw)
    {
        for (int r = 0; r < t; r++)
        {
            VectorKernels.AddTo(E[r], E[r + 1]); // row r + 1 becomes Σ_{j<r+1} …: the prefix sum, in place
            VectorKernels.AddTo(E[r], dw[r]);
        }
    }

    /// <summary>Chunks of C steps: the entering states by a forward sweep, then the chunks in reverse (steps 4–1 each).</summary>
    private static void ChunkedBackward(Head head, double scale, int chunkSize)
    {
        var g = new Rows(head);
        RowBlock dS = head.StateGradient();
        int K = dS.Count, V = dS.Width;
        var chunks = Chunks.Of(head.T, chunkSize).ToArray();
        var b = RowBlock.AlignedZeros(Math.Min(chunkSize, Math.Max(head.T, 1)), K);
        var entering = new RowBlock[chunks.Length];
        RowBlock S = head.InitialState();
        for (int chunk = 0; chunk < chunks.Length; chunk++)
        {
            var (s, e) = chunks[chunk];
            entering[chunk] = RowBlock.AlignedZeros(K, V);
            S.Contiguous().CopyTo(entering[chunk].Contiguous());
            LocalDecay(g.W, s, e - s, b);
            AdvanceState(S, b, g.K, g.V, s, e - s);
        }
        var work = RowBlock.AlignedZeros(5, K);
        Span<double> decay = work[0], running = work[1], y = work[2], decayEnd = work[3], kDecayed = work[4];
        var reads = RowBlock.AlignedZeros(K, V); // scale Σ_i (q_i ∘ exp(b_{i−1})) do_iᵀ: the chunk's reads of its entering state
        for (int chunk = chunks.Length - 1; chunk >= 0; chunk--)
        {
            var (s, e) = chunks[chunk];
            int n = e - s;
            RowBlock start = entering[chunk];
            LocalDecay(g.W, s, n, b);
            // 4. the state handed on: a reader of the chunk's keys and of the entering state.
            VectorKernels.Exp(b[n - 1], decayEnd);
            for (int c = 0; c < K; c++)
            {
                running[c] = decayEnd[c] * VectorKernels.Dot(dS[c], start[c]);
            }
            for (int j = 0; j < n; j++)
            {
                VectorKernels.AddTo(running, g.Dw[s + j]);
                VectorKernels.ExpDifference(b[n - 1], b[j], decay);
                DenseMatrix.TimesTransposed(g.V[s + j], dS.Contiguous(), y); // dS v_j
                VectorKernels.Multiply(decay, g.K[s + j], kDecayed);
                Span<double> dkj = g.Dk[s + j];
                for (int c = 0; c < K; c++)
                {
                    dkj[c] += decay[c] * y[c];
                    running[c] += kDecayed[c] * y[c];
                }
                DenseMatrix.AddWeightedRows(kDecayed, dS.Contiguous(), g.Dv[s + j]);
            }
            reads.Contiguous().Clear();
            for (int i = 0; i < n && g.DO is not null; i++)
            {
                int t = s + i;
                ReadOnlySpan<double> qt = g.Q[t], dOt = g.DO[t];
                // 3. bonus
                BonusBackward(g, t, scale);
                // 1. inter-chunk: dq_t += scale exp(b_{i−1}) ∘ (S_start do_t); its term starts reader t's prefix sum.
                if (i == 0)
                {
                    decay.Fill(1);
                }
                else
                {
                    VectorKernels.Exp(b[i - 1], decay);
                }
                DenseMatrix.TimesTransposed(dOt, start.Contiguous(), y);
                Span<double> dqt = g.Dq[t];
                for (int c = 0; c < K; c++)
                {
                    double read = scale * decay[c] * y[c];
                    dqt[c] += read;
                    running[c] = qt[c] * read;
                    VectorKernels.Axpy(scale * qt[c] * decay[c], dOt, reads[c]);
                }
                // 2. intra-chunk: the chunk's keys j < i.
                for (int j = 0; j < i; j++)
                {
                    VectorKernels.AddTo(running, g.Dw[s + j]);
                    VectorKernels.ExpDifference(b[i - 1], b[j], decay);
                    double da = scale * VectorKernels.Dot(dOt, g.V[s + j]), a = 0;
                    ReadOnlySpan<double> kj = g.K[s + j];
                    Span<double> dkj = g.Dk[s + j];
                    for (int c = 0; c < K; c++)
                    {
                        double term = da * decay[c];
                        a += qt[c] * kj[c] * decay[c];
                        dqt[c] += term * kj[c];
                        dkj[c] += term * qt[c];
                        running[c] += term * qt[c] * kj[c];
                    }
                    VectorKernels.Axpy(scale * a, dOt, g.Dv[s + j]);
                }
            }
            // The gradient of the state entering the chunk.
            for (int c = 0; c < K; c++)
            {
                VectorKernels.Scale(decayEnd[c], dS[c]);
                VectorKernels.AddTo(reads[c], dS[c]);
            }
        }
    }

    /// <summary>
    /// The bonus of step t backward, o_t ∋ scale (Σ_c q_tc u_c k_tc) v_t with β = v_t·do_t: dq_t += scale β u ∘ k_t,
    /// dk_t += scale β u ∘ q_t, du += scale β q_t ∘ k_t, dv_t += scale (Σ_c q_tc u_c k_tc) do_t.
    /// </summary>
    private static void BonusBackward(Rows g, int t, double scale)
    {
        ReadOnlySpan<double> qt = g.Q[t], kt = g.K[t], u = g.U, dOt = g.DO![t];
        Span<double> du = g.Du;
        double β = VectorKernels.Dot(g.V[t], dOt), bonus = 0;
        Span<double> dqt = g.Dq[t], dkt = g.Dk[t];
        for (int c = 0; c < qt.Length; c++)
        {
            dqt[c] += scale * β * u[c] * kt[c];
            dkt[c] += scale * β * u[c] * qt[c];
            du[c] += scale * β * qt[c] * kt[c];
            bonus += qt[c] * u[c] * kt[c];
        }
        VectorKernels.Axpy(scale * bonus, dOt, g.Dv[t]);
    }

    /// <summary>A pair's input rows, its gradient rows and its cotangent do (null: zero).</summary>
    private sealed class Rows(Head head)
    {
        public RowBlock Q { get; } = head.Rows("q");
        public RowBlock K { get; } = head.Rows("k");
        public RowBlock V { get; } = head.Rows("v");
        public RowBlock W { get; } = head.Rows("w");
        public RowBlock Dq { get; } = head.Rows("dq");
        public RowBlock Dk { get; } = head.Rows("dk");
        public RowBlock Dv { get; } = head.Rows("dv");
        public RowBlock Dw { get; } = head.Rows("dw");
        public RowBlock? DO { get; } = head.OptionalRows("do");
        public ReadOnlySpan<double> U => head.Row("u");
        public Span<double> Du => head.Row("du");
    }
}
