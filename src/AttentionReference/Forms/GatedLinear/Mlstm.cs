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
public sealed partial class Mlstm : Form
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

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        if (!Variants.Contains(variant))
        {
            throw UnknownVariant(variant);
        }
        MlstmOptions options = MlstmOptions.Read(problem);
        // The parallel form is the chunked one with one chunk spanning the sequence, its backward too (MlstmBackward.cs).
        return Heads.Backward(problem, head =>
        {
            if (variant == "recurrent")
            {
                RecurrentBackward(head, options);
            }
            else
            {
                ChunkedBackward(head, options, variant == "parallel" ? Math.Max(head.T, 1) : options.ChunkSize);
            }
        });
    }

    /// <summary>
    /// The backward pass of the stabilised step, in reverse time, from the states (C̃_t, ñ_t, m_t) a forward replay stores.
    /// <code>
    /// Derivation. In the unstabilised cell C_t = C̃_t e^{m_t}, n_t = ñ_t e^{m_t} (the paper's):
    ///   C_t = f_t C_{t−1} + e^{i_t} k_t v_tᵀ,   n_t alike,   o_t = (scale·q_t)ᵀ C_t / (max(|(scale·q_t)ᵀ n_t|, 1) + eps e^{m_t})
    ///   final_state = C_{T−1} e^{−m_{T−1}},  final_normalizer = n_{T−1} e^{−m_{T−1}},  final_max = m_{T−1},
    ///   initial: C_{−1} = C̃_{−1} e^{m_{−1}}, n_{−1} alike;   m_t = max(log f_t + m_{t−1}, i_t), a path of its own.
    /// So o_t depends on m only through eps (with eps = 0 the stabiliser cancels from o exactly: no gradient flows into m from
    /// o), the final outputs through m_{T−1}, and the initial state through m_{−1}. The gradients of C_t, n_t are carried
    /// stabilised, D_t = e^{m_t} ∂L/∂C_t, Dn_t = e^{m_t} ∂L/∂n_t, so every factor is a gate of the forward (≤ 1). With
    /// α_t = e^{log f_t + m_{t−1} − m_t}, β_t = e^{i_t − m_t}, qs = scale·q_t, and o_t's stabilised read h̃ = qsᵀ C̃_t,
    /// ñ = qs·ñ_t, den = max(|ñ|, e^{−m_t}) + eps, g = do_t / den, γ = −⟨do_t, o_t⟩ σ / den (σ = ∂max(|ñ|, e^{−m_t})/∂ñ):
    ///   D, Dn = dfinal_state, dfinal_normalizer;   dm = dfinal_max − ⟨D, C̃_{T−1}⟩ − ⟨Dn, ñ_{T−1}⟩
    ///   for t = T−1 … 0:
    ///     dq_t = scale (C̃_t g + γ ñ_t);   D += qs gᵀ;   Dn += γ qs;   dm += −eps ⟨do_t, o_t⟩ / den       o_t's read
    ///     dk_t = β_t (D v_t + Dn),   dv_t = β_t Dᵀ k_t,   di_t = β_t (k_tᵀ D v_t + k_t·Dn)               C_t ∋ e^{i_t} k_t v_tᵀ
    ///     dlogf_t = α_t (⟨D, C̃_{t−1}⟩ + ⟨Dn, ñ_{t−1}⟩)                                                  C_t ∋ f_t C_{t−1}
    ///     m_t = max(log f_t + m_{t−1}, i_t): dm goes to log f_t and on to m_{t−1} when the first is larger, to i_t when
    ///       the second is; at a tie half to each (PyTorch's torch.maximum; the central finite difference agrees)
    ///     D, Dn = α_t D, α_t Dn                                                                          now of step t − 1
    ///     df_t = dlogf_t · σ(−f_t) (logsigmoid's derivative; 1 for the exponential gate)
    ///   dinitial_state, dinitial_normalizer = D, Dn;   dinitial_max = dm + ⟨D, C̃_{−1}⟩ + ⟨Dn, ñ_{−1}⟩
    /// σ is sign(ñ) where |ñ| &gt; e^{−m_t}, 0 where the clamp holds, sign(ñ)/2 at the tie.
    /// </code>
    /// </summary>
    public static void RecurrentBackward(Head head, MlstmOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        if (head.T == 0)
        {
            return; // the final state is the initial one: the cotangents pass through unchanged, bit for bit
        }
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv");
        RowBlock? dO = head.OptionalRows("do");
        Series i = head.Series("i"), f = head.Series("f"), di = head.Series("di"), df = head.Series("df");
        var (C, n, m) = Replay(head, options); // C[t + 1], n[t + 1], m[t + 1] = C̃_t, ñ_t, m_t; index 0 the initial state
        RowBlock D = head.StateGradient();
        Span<double> Dn = head.StateGradient("normalizer")[0], dm = head.StateGradient("max")[0];
        dm[0] -= Overlap(D, Dn, C[head.T], n[head.T]);
        var (qs, Cdo) = (new double[D.Count], new double[D.Count]);
        for (int t = head.T - 1; t >= 0; t--)
        {
            double logF = options.LogForget(f[t]), α = Math.Exp(logF + m[t] - m[t + 1]), β = Math.Exp(i[t] - m[t + 1]);
            if (dO is not null)
            {
                // o_t's read of C̃_t, ñ_t: g = do_t / den, so C̃_t g = (C̃_t do_t) / den and ⟨do_t, h̃⟩ = qs·(C̃_t do_t).
                VectorKernels.Multiply(q[t], options.Scale, qs);
                for (int a = 0; a < D.Count; a++)
                {
                    Cdo[a] = VectorKernels.Dot(C[t + 1][a], dO[t]);
                }
                var (inverse, γ, dmRead) = options.ReadGradients(VectorKernels.Dot(qs, n[t + 1]), m[t + 1], VectorKernels.Dot(qs, Cdo));
                for (int a = 0; a < D.Count; a++)
                {
                    dq[t][a] = options.Scale * (inverse * Cdo[a] + γ * n[t + 1][a]);
                    VectorKernels.Axpy(qs[a] * inverse, dO[t], D[a]);
                }
                VectorKernels.Axpy(γ, qs, Dn);
                dm[0] += dmRead;
            }
            // The step's input e^{i_t} k_t v_tᵀ and the carried state f_t C_{t−1}.
            double dLogF = α * Overlap(D, Dn, C[t], n[t]);
            for (int a = 0; a < D.Count; a++)
            {
                dk[t][a] = β * (VectorKernels.Dot(D[a], v[t]) + Dn[a]);
                VectorKernels.Axpy(β * k[t][a], D[a], dv[t]);
            }
            di[t] = VectorKernels.Dot(k[t], dk[t]);
            // The stabiliser m_t = max(log f_t + m_{t−1}, i_t).
            var (toCarried, toInput) = MlstmOptions.MaxSlopes(logF + m[t], i[t]);
            dLogF += toCarried * dm[0];
            di[t] += toInput * dm[0];
            dm[0] *= toCarried;
            for (int a = 0; a < D.Count; a++)
            {
                VectorKernels.Scale(α, D[a]);
            }
            VectorKernels.Scale(α, Dn);
            df[t] = dLogF * options.LogForgetSlope(f[t]);
        }
        dm[0] += Overlap(D, Dn, C[0], n[0]);
    }

    /// <summary>⟨D, C̃⟩ + ⟨Dn, ñ⟩: the gradient of a stabiliser that scales the state C̃, ñ by e^{−m}, with the sign flipped.</summary>
    private static double Overlap(RowBlock D, ReadOnlySpan<double> Dn, RowBlock C, ReadOnlySpan<double> n)
    {
        double overlap = VectorKernels.Dot(Dn, n);
        for (int a = 0; a < D.Count; a++)
        {
            overlap += VectorKernels.Dot(D[a], C[a]);
        }
        return overlap;
    }

    /// <summary>The states (C̃_t, ñ_t, m_t) for t = −1 … T−1, replayed by the stabilised step from the initial state.</summary>
    private static (RowBlock[] C, double[][] N, double[] M) Replay(Head head, MlstmOptions options)
    {
        RowBlock k = head.Rows("k"), v = head.Rows("v");
        Series i = head.Series("i"), f = head.Series("f");
        var (C, n, m) = (new RowBlock[head.T + 1], new double[head.T + 1][], new double[head.T + 1]);
        (C[0], n[0], m[0]) = (head.InitialState(), head.InitialState("normalizer")[0].ToArray(), head.InitialState("max")[0][0]);
        for (int t = 0; t < head.T; t++)
        {
            double logF = options.LogForget(f[t]);
            m[t + 1] = Math.Max(logF + m[t], i[t]);
            double forget = Math.Exp(logF + m[t] - m[t + 1]), input = Math.Exp(i[t] - m[t + 1]);
            (C[t + 1], n[t + 1]) = (RowBlock.Zeros(C[t].Count, C[t].Width), new double[C[t].Count]);
            for (int a = 0; a < C[t].Count; a++)
            {
                VectorKernels.Axpy(forget, C[t][a], C[t + 1][a]);     // C̃_t = forget·C̃_{t−1} + input·k_t v_tᵀ
                VectorKernels.Axpy(input * k[t][a], v[t], C[t + 1][a]);
            }
            VectorKernels.Axpy(forget, n[t], n[t + 1]);              // ñ_t = forget·ñ_{t−1} + input·k_t
            VectorKernels.Axpy(input, k[t], n[t + 1]);
        }
        return (C, n, m);
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
            LocalLogForget(f, options, s, length, local);
            double mRow = 0, carried = 0;
            for (int r = 0; r < length; r++)
            {
                // 1. the log gates of row r and their max
                (mRow, carried) = RowGates(i, m[0], local, s, r, logGate);

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
            AdvanceState(C, n, carried, logGate, mRow, k, v, s, length);
            m[0] = mRow;
        }
    }

    /// <summary>b_r = Σ_{r'=s}^{s+r} log f_r' for r &lt; length: the chunk's local log forget sums.</summary>
    private static void LocalLogForget(Series f, MlstmOptions options, int s, int length, Span<double> local)
    {
        for (int r = 0; r < length; r++)
        {
            local[r] = (r == 0 ? 0 : local[r - 1]) + options.LogForget(f[s + r]);
        }
    }

    /// <summary>
    /// Step 1 for row r of the chunk from s: logGate[j] = ℓ_rj = i_{s+j} + b_r − b_j for j ≤ r; returns m_r, the max of
    /// them and of ℓ_r* = m_start + b_r, and exp(ℓ_r* − m_r), the carried state's weight.
    /// </summary>
    private static (double M, double Carried) RowGates(Series i, double mStart, ReadOnlySpan<double> local, int s, int r, Span<double> logGate)
    {
        double logCarried = mStart + local[r], mRow = logCarried;
        for (int j = 0; j <= r; j++)
        {
            logGate[j] = i[s + j] + local[r] - local[j];
            mRow = Math.Max(mRow, logGate[j]);
        }
        return (mRow, Math.Exp(logCarried - mRow));
    }

    /// <summary>Step 3: C̃ ← carried·C̃ + Σ_j exp(ℓ_{n−1,j} − m) k_j v_jᵀ and ñ ← carried·ñ + Σ_j exp(ℓ_{n−1,j} − m) k_j.</summary>
    private static void AdvanceState(RowBlock C, Span<double> n, double carried, ReadOnlySpan<double> logGate, double mRow,
        RowBlock k, RowBlock v, int s, int length)
    {
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

    /// <summary>d log f / d f: σ(−f), logsigmoid's derivative, without overflow; 1 for the exponential gate.</summary>
    public double LogForgetSlope(double preActivation) => ExponentialForgetGate ? 1
        : preActivation >= 0 ? Math.Exp(-preActivation) / (1 + Math.Exp(-preActivation)) : 1 / (1 + Math.Exp(preActivation));

    /// <summary>
    /// The read o = h̃ / den backward, den = max(|ñ|, e^{−m}) + eps, from ñ = (scale·q)·ñ, m and ⟨do, h̃⟩: the gradient at
    /// h̃ is do / den (returned as 1/den), at ñ it is γ = −⟨do, o⟩ σ / den, at m (through eps, the stabiliser's only part in
    /// o) −eps ⟨do, o⟩ / den. σ = ∂max(|ñ|, e^{−m})/∂ñ: sign(ñ) above the clamp, 0 below, sign(ñ)/2 at the tie.
    /// </summary>
    public (double InverseDenominator, double Normaliser, double Max) ReadGradients(double normaliser, double m, double doNumerator)
    {
        double denominator = Denominator(normaliser, m), doOutput = doNumerator / denominator;
        double clamp = Math.Exp(-m), size = Math.Abs(normaliser), σ = Math.Sign(normaliser) * (size > clamp ? 1.0 : size < clamp ? 0 : 0.5);
        return (1 / denominator, -doOutput * σ / denominator, -Eps * doOutput / denominator);
    }

    /// <summary>
    /// The slopes of max(a, b) at a and b: (1, 0) when a is larger, (0, 1) when b is, (½, ½) at a tie (PyTorch's
    /// torch.maximum, and what a central finite difference measures at the kink).
    /// </summary>
    public static (double A, double B) MaxSlopes(double a, double b) => a > b ? (1, 0) : a < b ? (0, 1) : (0.5, 0.5);

    /// <summary>log(1 / (1 + e^−x)) without overflow or cancellation for either sign of x.</summary>
    public static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));
}
