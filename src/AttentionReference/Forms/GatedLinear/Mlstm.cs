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
///   cu_seqlens [N+1] optional (B = 1)
///   → o [B,T,H,V]   final_state [N,H,K,V]   final_normalizer [N,H,K]   final_max [N,H]
///   N = B, or the number of sequences with cu_seqlens.
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
///   parallel   the quadratic form: each row t of the log gate matrix ℓ (T x T, plus the initial-state column)
///              from the cumulative log forget gates of the sequence, its row max m_t, then exp(ℓ − m_t) ≤ 1; row T−1
///              on outer products gives the final state. This is the chunked form with one chunk spanning the sequence.
///   chunked    chunks of C steps (C ≥ 1, the last chunk may be shorter), state (C̃, ñ, m) carried between chunks.
///              In a chunk starting at s, with the local log forget sum b_i = Σ_{r=s}^{s+i} log f_r:
///                1. ℓ_i* = m_start + b_i, ℓ_ij = i_j + b_i − b_j (j ≤ i), m_i = their max
///                2. o_i from the initial-state term (inter-chunk) and the j ≤ i terms (intra-chunk)
///                3. state: C̃ ← exp(ℓ_{n−1,*} − m_{n−1}) C̃ + Σ_j exp(ℓ_{n−1,j} − m_{n−1}) k_j v_jᵀ, ñ alike, m = m_{n−1}
///              Every exponent is ≤ 0 and is a difference of log gates inside one chunk.
/// </summary>
public sealed class Mlstm : Form
{
    /// <summary>eps: added to the stabilised denominator.</summary>
    public static Parameter<double> Eps { get; } = ParameterSpec.Real("eps", 0,
        "added to the stabilised denominator (mlstm_kernels: 1e-6); 0 = the paper's definition", min: 0);

    /// <summary>forget_gate: sigmoid or exp.</summary>
    public static Parameter<string> ForgetGate { get; } = ParameterSpec.Choice("forget_gate", "sigmoid",
        "sigmoid (log f = logsigmoid(f)) or exp (log f = f)", "sigmoid", "exp");

    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("mlstm", "gated linear", "Mlstm.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs =
        [
            Specs.Q, Specs.K, Specs.V,
            new("i", "B,T,H", "input gate pre-activation (gate exp(i))"),
            new("f", "B,T,H", "forget gate pre-activation (gate sigmoid(f), or exp(f) with forget_gate=exp)"),
            new("initial_state", "N,H,K,V", "stabilised memory C̃ before the first step (zeros if absent)", Optional: true, Aliases: ["c_initial"]),
            new("initial_normalizer", "N,H,K", "stabilised normaliser ñ before the first step (zeros if absent)", Optional: true, Aliases: ["n_initial"]),
            new("initial_max", "N,H", "stabiliser m before the first step (zero if absent)", Optional: true, Aliases: ["m_initial"]),
            Specs.CuSeqlens,
        ],
        Outputs =
        [
            new("o", "B,T,H,V", "output (h in xLSTM)"),
            new("final_state", "N,H,K,V", "stabilised memory C̃ = C·exp(−m) after the last step"),
            new("final_normalizer", "N,H,K", "stabilised normaliser ñ = n·exp(−m) after the last step"),
            new("final_max", "N,H", "stabiliser m after the last step"),
        ],
        Parameters = [Specs.Scale, Eps, ForgetGate, Specs.ChunkSizeOf(16)],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        MlstmOptions options = MlstmOptions.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, options)),
            "parallel" => Heads.Run(problem, head => Chunked(head, options, Math.Max(head.T, 1))),
            "chunked" => Heads.Run(problem, head => Chunked(head, options, options.ChunkSize)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The definition: the stabilised recurrent step, token by token.</summary>
    public static void Recurrent(Head head, MlstmOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o"), C = head.State();
        Span<double> n = head.State("normalizer")[0], m = head.State("max")[0]; // m[0] = m_{t−1}
        Series i = head.Series("i"), f = head.Series("f");
        var qs = new double[C.Count]; // scale·q_t
        for (int t = 0; t < head.T; t++)
        {
            // m_t = max(log f_t + m_{t−1}, i_t); the gates rescaled by exp(−m_t)
            double logF = options.LogForget(f[t]), mt = Math.Max(logF + m[0], i[t]);
            double forget = Math.Exp(logF + m[0] - mt), input = Math.Exp(i[t] - mt);
            VectorKernels.Multiply(q[t], options.Scale, qs);
            for (int a = 0; a < C.Count; a++)
            {
                // C̃_t = forget·C̃_{t−1} + input·k_t v_tᵀ, read by (scale·q_t)ᵀ C̃_t
                VectorKernels.Scale(forget, C[a]);
                VectorKernels.Axpy(input * k[t][a], v[t], C[a]);
                VectorKernels.Axpy(qs[a], C[a], o[t]);
            }
            // ñ_t = forget·ñ_{t−1} + input·k_t
            VectorKernels.Scale(forget, n);
            VectorKernels.Axpy(input, k[t], n);
            m[0] = mt;
            // o_t = (scale·q_t)ᵀ C̃_t / (max(|(scale·q_t)ᵀ ñ_t|, exp(−m_t)) + eps)
            VectorKernels.Scale(1 / options.Denominator(VectorKernels.Dot(qs, n), mt), o[t]);
        }
    }

    /// <summary>Chunks of <paramref name="chunkSize"/> steps, the stabilised state (C̃, ñ, m) carried between them: steps 1–3 per chunk.</summary>
    private static void Chunked(Head head, MlstmOptions options, int chunkSize)
    {
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o"), C = head.State();
        Span<double> n = head.State("normalizer")[0], m = head.State("max")[0];
        Series i = head.Series("i"), f = head.Series("f");
        int width = Math.Min(chunkSize, Math.Max(head.T, 1));
        var local = new double[width];   // b_r = Σ_{r'=s}^{s+r} log f_r'
        var logGate = new double[width]; // ℓ_rj of the current row r
        var qs = new double[C.Count];
        foreach (var (s, e) in Chunks.Of(head.T, chunkSize))
        {
            int length = e - s;
            for (int r = 0; r < length; r++)
            {
                local[r] = (r == 0 ? 0 : local[r - 1]) + options.LogForget(f[s + r]);
            }
            double mRow = 0, carried = 0;
            for (int r = 0; r < length; r++)
            {
                // 1. the log gates of row r and their max
                double logCarried = m[0] + local[r];
                mRow = logCarried;
                for (int j = 0; j <= r; j++)
                {
                    logGate[j] = i[s + j] + local[r] - local[j];
                    mRow = Math.Max(mRow, logGate[j]);
                }
                carried = Math.Exp(logCarried - mRow);

                // 2. inter-chunk (the carried state) and intra-chunk (j ≤ r) terms of o_r
                q[s + r].CopyTo(qs);
                VectorKernels.Scale(options.Scale, qs);
                Span<double> oRow = o[s + r];
                double normaliser = carried * VectorKernels.Dot(qs, n);
                for (int a = 0; a < C.Count; a++)
                {
                    VectorKernels.Axpy(carried * qs[a], C[a], oRow);
                }
                for (int j = 0; j <= r; j++)
                {
                    double score = Math.Exp(logGate[j] - mRow) * VectorKernels.Dot(qs, k[s + j]);
                    normaliser += score;
                    VectorKernels.Axpy(score, v[s + j], oRow);
                }
                VectorKernels.Scale(1 / options.Denominator(normaliser, mRow), oRow);
            }

            // 3. state at the chunk's end: row length−1's gates (still in logGate, mRow, carried) on outer products
            for (int a = 0; a < C.Count; a++)
            {
                VectorKernels.Scale(carried, C[a]);
            }
            VectorKernels.Scale(carried, n);
            for (int j = 0; j < length; j++)
            {
                double gate = Math.Exp(logGate[j] - mRow);
                for (int a = 0; a < C.Count; a++)
                {
                    VectorKernels.Axpy(gate * k[s + j][a], v[s + j], C[a]);
                }
                VectorKernels.Axpy(gate, k[s + j], n);
            }
            m[0] = mRow;
        }
    }
}

/// <summary>The options of an mLSTM call, read once from the bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Scale">The query scale (K^(-1/2) unless given).</param>
/// <param name="Eps">Added to the stabilised denominator (mlstm_kernels uses 1e-6); 0 = the paper's definition.</param>
/// <param name="ExponentialForgetGate">f = exp(pre-activation) instead of sigmoid.</param>
/// <param name="ChunkSize">The chunked variant's C.</param>
public sealed record MlstmOptions(double Scale, double Eps, bool ExponentialForgetGate, int ChunkSize)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static MlstmOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(Specs.ScaleOf(problem), problem.Get(Mlstm.Eps), problem.Get(Mlstm.ForgetGate) == "exp", problem.Get(Specs.ChunkSize));
    }

    /// <summary>log f_t: logsigmoid of the pre-activation, or the pre-activation itself for the exponential gate.</summary>
    public double LogForget(double preActivation) => ExponentialForgetGate ? preActivation : LogSigmoid(preActivation);

    /// <summary>max(|(scale·q)ᵀ ñ|, exp(−m)) + eps: the stabilised form of max(|(scale·q)ᵀ n|, 1).</summary>
    public double Denominator(double normaliser, double m) => Math.Max(Math.Abs(normaliser), Math.Exp(-m)) + Eps;

    /// <summary>log(1 / (1 + e^−x)) without overflow or cancellation for either sign of x.</summary>
    public static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));
}
