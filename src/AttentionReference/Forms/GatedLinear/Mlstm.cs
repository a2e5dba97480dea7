using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// mLSTM, the matrix-memory cell of xLSTM: exponential input gate, sigmoid (or exponential) forget gate, a
/// normaliser n and a max-stabiliser m, exact, in double, in the convention of NX-AI's mlstm_kernels.
/// <code>
/// Shapes (layout [B,T,H,D]):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]
///   i [B,T,H]     input gate pre-activation (the gate is exp(i))
///   f [B,T,H]     forget gate pre-activation (the gate is sigmoid(f), or exp(f) with forget_gate=exp)
///   initial_state [N,H,K,V]   initial_normalizer [N,H,K]   initial_max [N,H]     (optional, zeros)
///   → o [B,T,H,V]   final_state [N,H,K,V]   final_normalizer [N,H,K]   final_max [N,H]
///   N = B, or the number of sequences with cu_seqlens (B = 1).
///
/// The cell (unstabilised, as in the paper), per sequence and head, C (K x V), n (K):
///   log f_t = logsigmoid(f_t)                 (= f_t with forget_gate=exp)
///   C_t = f_t C_{t−1} + exp(i_t) k_t v_tᵀ
///   n_t = f_t n_{t−1} + exp(i_t) k_t
///   o_t = (scale·q_t)ᵀ C_t / max(|(scale·q_t)ᵀ n_t|, 1)        scale = K^(-1/2) unless given
///
/// What is computed and stored (stabilised, mlstm_kernels' recurrent step), C̃ = C·exp(−m), ñ = n·exp(−m):
///   m_t  = max(log f_t + m_{t−1}, i_t)
///   C̃_t = exp(log f_t + m_{t−1} − m_t) C̃_{t−1} + exp(i_t − m_t) k_t v_tᵀ
///   ñ_t  = exp(log f_t + m_{t−1} − m_t) ñ_{t−1}  + exp(i_t − m_t) k_t
///   o_t  = (scale·q_t)ᵀ C̃_t / (max(|(scale·q_t)ᵀ ñ_t|, exp(−m_t)) + eps)
///   final_state, final_normalizer, final_max = C̃, ñ, m after the last step.
///
/// Unrolled (the parallel and chunked forms), with F_t = Σ_{r≤t} log f_r over the sequence:
///   ℓ_tj = i_j + F_t − F_j (j ≤ t),   ℓ_t* = m_{−1} + F_t (the initial state),   m_t = max(ℓ_t*, max_j ℓ_tj)
///   o_t numerator   = Σ_j exp(ℓ_tj − m_t) (scale·q_t·k_j) v_j + exp(ℓ_t* − m_t) (scale·q_t)ᵀ C̃_{−1}
///   o_t normaliser  = Σ_j exp(ℓ_tj − m_t) (scale·q_t·k_j)     + exp(ℓ_t* − m_t) (scale·q_t)ᵀ ñ_{−1}
/// </code>
/// Stabiliser. m_t is the recurrent step's running max, unrolled (including the initial-state term with
/// m_{−1} = initial_max, 0 by default as mlstm_kernels' zero states), so all three variants compute the same m (up to
/// the rounding of the log-gate sums), the same stored state and the same output. With eps = 0 the output does not depend on m at all: multiplying numerator
/// and denominator by exp(m) gives the paper's o_t = q_tᵀ C_t / max(|q_tᵀ n_t|, 1). Kernels that stabilise
/// differently (xlstm's parallel_stabilized_simple takes the row max without the initial-state term) store a state
/// that differs by a factor exp(m − m'); compare states after unscaling, C̃·exp(m). The eps of mlstm_kernels (1e-6)
/// is added to the stabilised denominator and so does depend on m: we default to eps = 0, the paper's definition,
/// which any stabilisation reproduces; set eps=1e-6 to reproduce mlstm_kernels' recurrent step exactly.
///
/// Orientation. The paper writes C_t = f_t C_{t−1} + i_t v_t k_tᵀ (V x K) and h_t = C_t q_t; the reference code
/// (xlstm's backends.py, mlstm_kernels' native_step.py) stores k vᵀ (K x V) and computes qᵀ C, which is our
/// K x V convention; the numbers are the same, transposed.
///
/// Scaling. mlstm_kernels scales q by K^-1/2 (native_step.py: vecQ_scaled = vecQ · DHQK^-0.5) and stores raw k in
/// C and n; xlstm's older backends.py scales k instead, which gives the same outputs but states K^-1/2 smaller. We
/// follow mlstm_kernels (the state holds raw k), with a `scale` parameter as every form here has.
///
/// Sources: Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory" (arXiv 2405.04517), the mLSTM equations
/// and the stabilisation in its appendix; NX-AI/mlstm_kernels torch/recurrent/native_step.py (the stabilised step,
/// eps placement, the names q, k, v, i, f, c/n/m initial states, zero initial m) and NX-AI/xlstm
/// blocks/mlstm/backends.py (parallel_stabilized_simple, chunkwise_simple). Our choices: eps = 0 by default; the
/// state tensors are called initial_state / initial_normalizer / initial_max (aliases c_initial, n_initial,
/// m_initial as mlstm_kernels names them) and final_state / final_normalizer / final_max; each initial tensor may
/// be given alone (the others default to zero).
///
/// Variants:
///   recurrent  the stabilised step above, token by token.
///   parallel   the quadratic form: the log gate matrix ℓ (T x T, plus the initial-state column) materialised from
///              the cumulative log forget gates, its row max m_t, then exp(ℓ − m_t) ≤ 1.
///   chunked    chunks of C steps (C ≥ 1, the last chunk may be shorter), state (C̃, ñ, m) carried between chunks.
///              In a chunk starting at s, with the local log forget sum b_i = Σ_{r=s}^{s+i} log f_r:
///                1. ℓ_i* = m_start + b_i, ℓ_ij = i_j + b_i − b_j (j ≤ i), m_i = their max
///                2. o_i from the initial-state term (inter-chunk) and the j ≤ i terms (intra-chunk)
///                3. state: C̃ ← exp(ℓ_{n−1,*} − m_{n−1}) C̃ + Σ_j exp(ℓ_{n−1,j} − m_{n−1}) k_j v_jᵀ, ñ alike, m = m_{n−1}
///              Every exponent is ≤ 0 and is a difference of log gates inside one chunk.
/// </summary>
public static class Mlstm
{
    /// <summary>The definition: the stabilised recurrent step, token by token.</summary>
    public static MlstmResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, MlstmOptions? options = null)
    {
        var p = MlstmProblem.Bind(q, k, v, i, f, options ?? new MlstmOptions());
        return p.Run((pair, state) =>
        {
            var (sequence, h) = (pair.Sequence, pair.H);
            int b = sequence.Batch;
            var qs = new double[p.Dk];
            double[] forgets = new double[p.Dk], inputKey = new double[p.Dk];
            for (int t = sequence.Start; t < sequence.Start + sequence.Length; t++)
            {
                ReadOnlySpan<double> kt = p.K(b, t, h), vt = p.V(b, t, h);
                double logF = p.LogForget(b, t, h), it = p.InputGate(b, t, h);
                // m_t = max(log f_t + m_{t−1}, i_t); the gates rescaled by exp(−m_t)
                double m = Math.Max(logF + state.M, it);
                double forget = Math.Exp(logF + state.M - m), input = Math.Exp(it - m);
                // C̃_t = forget·C̃_{t−1} + input·k_t v_tᵀ and its read-out (scale·q_t)ᵀ C̃_t, in one pass over C̃;
                // ñ_t = forget·ñ_{t−1} + input·k_t
                p.Q(b, t, h).CopyTo(qs);
                VectorKernels.Scale(p.Scale, qs);
                Array.Fill(forgets, forget);
                VectorKernels.Multiply(kt, input, inputKey);
                Span<double> ot = pair.O(t - sequence.Start);
                StateStep.DecayWriteAndRead(new FlatRows(state.C, p.Dk, p.Dv), forgets, inputKey, vt, qs, ot);
                VectorKernels.Scale(forget, state.N);
                VectorKernels.Axpy(input, kt, state.N);
                state.M = m;
                // o_t = (scale·q_t)ᵀ C̃_t / (max(|(scale·q_t)ᵀ ñ_t|, exp(−m_t)) + eps)
                VectorKernels.Scale(1 / p.Denominator(VectorKernels.Dot(qs, state.N), m), ot);
            }
        });
    }

    /// <summary>The quadratic form: the log gate matrix from cumulative log forget gates, stabilised by its row max.</summary>
    public static MlstmResult Parallel(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, MlstmOptions? options = null)
    {
        var p = MlstmProblem.Bind(q, k, v, i, f, options ?? new MlstmOptions());
        return p.Run((pair, state) =>
        {
            var (sequence, h) = (pair.Sequence, pair.H);
            int b = sequence.Batch, start = sequence.Start, length = sequence.Length;
            if (length == 0)
            {
                return; // nothing happens: the final state is the initial one
            }
            // F_t = Σ_{r≤t} log f_r, from the sequence start.
            var cumF = new double[length];
            for (int t = 0; t < length; t++)
            {
                cumF[t] = (t == 0 ? 0 : cumF[t - 1]) + p.LogForget(b, start + t, h);
            }
            // ℓ (length x length + 1): column j ≤ t holds i_j + F_t − F_j; the last column the initial state's m + F_t.
            var logD = new double[length, length + 1];
            var rowMax = new double[length];
            for (int t = 0; t < length; t++)
            {
                double m = logD[t, length] = state.M + cumF[t];
                for (int j = 0; j <= t; j++)
                {
                    logD[t, j] = p.InputGate(b, start + j, h) + cumF[t] - cumF[j];
                    m = Math.Max(m, logD[t, j]);
                }
                rowMax[t] = m;
            }

            var qs = new double[p.Dk];
            for (int t = 0; t < length; t++)
            {
                p.Q(b, start + t, h).CopyTo(qs);
                VectorKernels.Scale(p.Scale, qs);
                Span<double> ot = pair.O(t);
                double initial = Math.Exp(logD[t, length] - rowMax[t]);
                double normaliser = initial * VectorKernels.Dot(qs, state.N);
                for (int c = 0; c < p.Dk; c++)
                {
                    VectorKernels.Axpy(initial * qs[c], p.StateRow(state.C, c), ot);
                }
                for (int j = 0; j <= t; j++)
                {
                    double a = Math.Exp(logD[t, j] - rowMax[t]) * VectorKernels.Dot(qs, p.K(b, start + j, h));
                    normaliser += a;
                    VectorKernels.Axpy(a, p.V(b, start + j, h), ot);
                }
                VectorKernels.Scale(1 / p.Denominator(normaliser, rowMax[t]), ot);
            }

            // The final state is row T−1 of the same matrix applied to outer products instead of q.
            int last = length - 1;
            double carried = Math.Exp(logD[last, length] - rowMax[last]);
            VectorKernels.Scale(carried, state.C);
            VectorKernels.Scale(carried, state.N);
            for (int j = 0; j <= last; j++)
            {
                double gate = Math.Exp(logD[last, j] - rowMax[last]);
                ReadOnlySpan<double> kj = p.K(b, start + j, h), vj = p.V(b, start + j, h);
                for (int c = 0; c < p.Dk; c++)
                {
                    VectorKernels.Axpy(gate * kj[c], vj, p.StateRow(state.C, c));
                }
                VectorKernels.Axpy(gate, kj, state.N);
            }
            state.M = rowMax[last];
        });
    }

    /// <summary>Chunks of <paramref name="chunkSize"/> steps, the stabilised state (C̃, ñ, m) carried between them.</summary>
    public static MlstmResult Chunked(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, int chunkSize, MlstmOptions? options = null)
    {
        if (chunkSize < 1)
        {
            throw new InputException($"chunk_size must be ≥ 1, found {chunkSize}");
        }
        var p = MlstmProblem.Bind(q, k, v, i, f, options ?? new MlstmOptions());
        return p.Run((pair, state) =>
        {
            var (sequence, h) = (pair.Sequence, pair.H);
            int b = sequence.Batch, end = sequence.Start + sequence.Length;
            var local = new double[chunkSize]; // b_i = Σ_{r=s}^{s+i} log f_r
            var logGate = new double[chunkSize]; // ℓ_ij of the current row i
            var qs = new double[p.Dk];
            for (int cs = sequence.Start; cs < end; cs += chunkSize)
            {
                int n = Math.Min(chunkSize, end - cs);
                for (int r = 0; r < n; r++)
                {
                    local[r] = (r == 0 ? 0 : local[r - 1]) + p.LogForget(b, cs + r, h);
                }

                double mRow = 0, carried = 0;
                for (int r = 0; r < n; r++)
                {
                    // 1. the log gates of row r and their max
                    double logCarried = state.M + local[r];
                    mRow = logCarried;
                    for (int j = 0; j <= r; j++)
                    {
                        logGate[j] = p.InputGate(b, cs + j, h) + local[r] - local[j];
                        mRow = Math.Max(mRow, logGate[j]);
                    }
                    carried = Math.Exp(logCarried - mRow);

                    // 2. inter-chunk (the carried state) and intra-chunk (j ≤ r) terms of o_r
                    p.Q(b, cs + r, h).CopyTo(qs);
                    VectorKernels.Scale(p.Scale, qs);
                    Span<double> oRow = pair.O(cs + r - sequence.Start);
                    double normaliser = carried * VectorKernels.Dot(qs, state.N);
                    for (int c = 0; c < p.Dk; c++)
                    {
                        VectorKernels.Axpy(carried * qs[c], p.StateRow(state.C, c), oRow);
                    }
                    for (int j = 0; j <= r; j++)
                    {
                        double a = Math.Exp(logGate[j] - mRow) * VectorKernels.Dot(qs, p.K(b, cs + j, h));
                        normaliser += a;
                        VectorKernels.Axpy(a, p.V(b, cs + j, h), oRow);
                    }
                    VectorKernels.Scale(1 / p.Denominator(normaliser, mRow), oRow);
                }

                // 3. state at the chunk's end: row n−1's gates (still in logGate, mRow, carried) on outer products
                VectorKernels.Scale(carried, state.C);
                VectorKernels.Scale(carried, state.N);
                for (int j = 0; j < n; j++)
                {
                    double gate = Math.Exp(logGate[j] - mRow);
                    ReadOnlySpan<double> kj = p.K(b, cs + j, h), vj = p.V(b, cs + j, h);
                    for (int c = 0; c < p.Dk; c++)
                    {
                        VectorKernels.Axpy(gate * kj[c], vj, p.StateRow(state.C, c));
                    }
                    VectorKernels.Axpy(gate, kj, state.N);
                }
                state.M = mRow;
            }
        });
    }
}

/// <summary>How the forget gate's pre-activation becomes a gate.</summary>
public enum MlstmForgetGate
{
    /// <summary>f = sigmoid(pre-activation), log f = logsigmoid (xLSTM's default, mlstm_kernels).</summary>
    Sigmoid,
    /// <summary>f = exp(pre-activation): the pre-activation is the log gate itself (the paper's alternative).</summary>
    Exponential,
}

/// <summary>The options of <see cref="Mlstm"/>.</summary>
public sealed record MlstmOptions
{
    /// <summary>Query scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>Added to the stabilised denominator (mlstm_kernels uses 1e-6); 0 = the paper's definition.</summary>
    public double Eps { get; init; }

    /// <summary>Sigmoid (default) or exponential forget gate.</summary>
    public MlstmForgetGate ForgetGate { get; init; } = MlstmForgetGate.Sigmoid;

    /// <summary>Stabilised memory C̃ before the first step, [N,H,K,V]; null = zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>Stabilised normaliser ñ before the first step, [N,H,K]; null = zeros.</summary>
    public Tensor? InitialNormalizer { get; init; }

    /// <summary>Stabiliser m before the first step, [N,H]; null = zeros.</summary>
    public Tensor? InitialMax { get; init; }

    /// <summary>Packed sequence boundaries [N+1] (int32/int64, B = 1); null = one sequence per batch entry.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of mLSTM: o [B,T,H,V] and the stabilised final state C̃ [N,H,K,V], ñ [N,H,K], m [N,H].</summary>
public sealed record MlstmResult(Tensor O, Tensor FinalState, Tensor FinalNormalizer, Tensor FinalMax);

/// <summary>The validated inputs of one mLSTM call, row accessors, and the per-(sequence, head) driver.</summary>
internal sealed class MlstmProblem
{
    private readonly Tensor _q, _k, _v, _i, _f;
    private readonly MlstmOptions _options;
    private readonly IReadOnlyList<SequenceSlice> _sequences;

    private MlstmProblem(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, Dims dims, MlstmOptions options,
        IReadOnlyList<SequenceSlice> sequences)
    {
        (_q, _k, _v, _i, _f, _options, _sequences) = (q, k, v, i, f, options, sequences);
        (Batch, Time, Heads, Dk, Dv) = (dims["B"], dims["T"], dims["H"], dims["K"], dims["V"]);
        Scale = options.Scale ?? 1 / Math.Sqrt(Dk);
    }

    public int Batch { get; }
    public int Time { get; }
    public int Heads { get; }
    public int Dk { get; }
    public int Dv { get; }
    public double Scale { get; }

    public static MlstmProblem Bind(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, MlstmOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        dims.Bind("i", Dims.RequireFloat("i", i), "B,T,H");
        dims.Bind("f", Dims.RequireFloat("f", f), "B,T,H");
        var sequences = Sequences.Slices(dims["B"], dims["T"], options.CuSeqlens);
        dims.Set("N", Sequences.StateCount(sequences));
        if (options.InitialState is { } c0)
        {
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", c0), "N,H,K,V");
        }
        if (options.InitialNormalizer is { } n0)
        {
            dims.Bind("initial_normalizer", Dims.RequireFloat("initial_normalizer", n0), "N,H,K");
        }
        if (options.InitialMax is { } m0)
        {
            dims.Bind("initial_max", Dims.RequireFloat("initial_max", m0), "N,H");
        }
        if (!(options.Eps >= 0))
        {
            throw new InputException($"eps must be ≥ 0, found {options.Eps}");
        }
        return new MlstmProblem(q, k, v, i, f, dims, options, sequences);
    }

    /// <summary>The stabilised state of one (sequence, head): C̃ (K x V, row-major), ñ (K), m; its three state rows.</summary>
    public sealed class State(SequenceHead pair)
    {
        private readonly double[] _m = pair.State(2);

        public double[] C { get; } = pair.State(0);
        public double[] N { get; } = pair.State(1);
        public double M { get => _m[0]; set => _m[0] = value; }
    }

    /// <summary>Runs <paramref name="body"/> once per (sequence, head), the state (C̃, ñ, m) in and out.</summary>
    public MlstmResult Run(Action<SequenceHead, State> body)
    {
        var result = SequenceHeads.Run(_sequences, Batch, Time, Heads, Dv,
            [new StateTensor(_options.InitialState, Dk, Dv), new StateTensor(_options.InitialNormalizer, Dk), new StateTensor(_options.InitialMax)],
            pair => body(pair, new State(pair)));
        return new MlstmResult(result.O, result.FinalStates[0], result.FinalStates[1], result.FinalStates[2]);
    }

    /// <summary>max(|(scale·q)ᵀ ñ|, exp(−m)) + eps: the stabilised form of max(|(scale·q)ᵀ n|, 1).</summary>
    public double Denominator(double normaliser, double m) => Math.Max(Math.Abs(normaliser), Math.Exp(-m)) + _options.Eps;

    /// <summary>log f_t: logsigmoid of the pre-activation, or the pre-activation itself for the exponential gate.</summary>
    public double LogForget(int b, int t, int h)
    {
        double x = _f.Data[(b * Time + t) * Heads + h];
        return _options.ForgetGate == MlstmForgetGate.Exponential ? x : LogSigmoid(x);
    }

    /// <summary>i_t, the log of the exponential input gate.</summary>
    public double InputGate(int b, int t, int h) => _i.Data[(b * Time + t) * Heads + h];

    /// <summary>log(1 / (1 + e^−x)) without overflow or cancellation for either sign of x.</summary>
    public static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));

    public ReadOnlySpan<double> Q(int b, int t, int h) => _q.Data.AsSpan(((b * Time + t) * Heads + h) * Dk, Dk);

    public ReadOnlySpan<double> K(int b, int t, int h) => _k.Data.AsSpan(((b * Time + t) * Heads + h) * Dk, Dk);

    public ReadOnlySpan<double> V(int b, int t, int h) => _v.Data.AsSpan(((b * Time + t) * Heads + h) * Dv, Dv);

    /// <summary>Row c (key channel) of a K x V state.</summary>
    public Span<double> StateRow(double[] state, int c) => state.AsSpan(c * Dv, Dv);
}
