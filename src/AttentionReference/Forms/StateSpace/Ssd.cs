using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// Mamba-2's state space duality (SSD): a scalar-decay SSM per head with a matrix state, exact, in double.
/// <code>
/// Shapes ([B,T,H,...] layout, mamba_chunk_scan_combined's names; P head dim, N state size, G groups for B and C):
///   x [B,T,H,P]   dt [B,T,H]   A [H]   B [B,T,G,N]   C [B,T,G,N]   (head h uses group h / (H/G))
///   D [H] or [H,P] optional   z [B,T,H,P] optional   dt_bias [H] optional
///   initial_state [S,H,P,N] optional   cu_seqlens [S+1] optional (B = 1; S = B without it)
///   →  o [B,T,H,P] (the y below)   final_state [S,H,P,N]
///
/// Per sequence and head h (state h_t is P x N, mamba's orientation: transposed from the linear family's K x V):
///   Δ_t = dt_t + dt_bias_h,  then Δ_t ← softplus(Δ_t) if dt_softplus       (softplus(x) = x for x > 20)
///   a_t = Δ_t A_h                                                           (log decay of step t)
///   h_t = exp(a_t) h_{t−1} + Δ_t x_t B_tᵀ          h_{−1} = initial_state (0 if absent)
///   y_t = h_t C_t + D_h x_t,   then y_t ← y_t · silu(z_t) if z is given
///
/// Variants:
///   recurrent  the recurrence above, step by step
///   quadratic  the segment-sum (attention-like) form, with segsum(t, s) = Σ_{r=s+1..t} a_r summed directly
///              (ssd_minimal.py's stable segsum, never a difference of cumulative sums):
///              y_t = Σ_{s≤t} (C_t·B_s) exp(segsum(t, s)) Δ_s x_s + exp(segsum(t, −1)) h_{−1} C_t + D x_t
///   chunked    ssd_minimal.py's four steps over chunks of Q steps (Q any size ≥ 1; the last chunk may be short);
///              within chunk c, cum_l = Σ_{r≤l} a_r counts from the chunk's start:
///              1. intra-chunk outputs (diagonal blocks): Y_diag_l = Σ_{s≤l} (C_l·B_s) exp(segsum(l, s)) Δ_s x_s
///              2. each chunk's own state (B terms): S_c = Σ_s exp(Σ_{r=s+1..end} a_r) Δ_s x_s B_sᵀ
///              3. inter-chunk recurrence (A terms): h_c = exp(Σ_{chunk} a) h_{c−1} + S_c, from h_{−1}
///              4. state to output (C terms): Y_off_l = exp(cum_l) h_{c−1} C_l
///              The suffix sums of step 2 are summed directly too (ssd_minimal.py subtracts cumulative sums there;
///              same value, less roundoff when decays are strong). Chunk by chunk, step 4 reads h_{c−1} before step 3
///              advances it in place.
///
/// Arithmetic: each (sequence, head) is one unit of work (Heads.Run over H), computed start to end by one thread in a
/// fixed order, so results do not depend on the thread count. The state is P x N row-major; the quadratic and chunked
/// variants gather the pair's x, B and C once as contiguous [T,P], [T,N], [T,N] blocks; every row update, dot
/// product and weighted sum of rows goes through Numerics/VectorKernels.cs and DenseMatrix.cs, and the exps of a
/// row of segment sums are taken at once.
/// </code>
/// Sources: Dao and Gu 2024, "Transformers are SSMs" (SSD, Mamba-2); state-spaces/mamba
/// mamba_ssm/modules/ssd_minimal.py (segsum, ssd_minimal_discrete(X·dt, A·dt, B, C, block_len, initial_states):
/// the four numbered steps, states of shape (b, c, h, p, n)) and mamba_ssm/ops/triton/ssd_combined.py
/// (mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens,
/// dt_softplus, ...): dt + dt_bias then softplus, D of shape (nheads, headdim) or (nheads,), y·silu(z) after D,
/// B and C of shape (batch, seqlen, ngroups, dstate) shared by nheads/ngroups heads; initial_states (batch, nheads,
/// headdim, dstate); varlen: seq_idx restarts the state at each boundary and, with cu_seqlens,
/// return_varlen_states gives one final state per sequence). Our choices: dt_limit (clamping Δ) is not supported;
/// the output is named o, as in every form here, the initial state initial_state (initial_states accepted); varlen
/// goes through cu_seqlens as in every stateful form here, with one initial_state row per sequence (as fla does, and as
/// vLLM's mamba_chunk_scan_combined takes initial_states (num_sequences, nheads, headdim, dstate)); upstream
/// mamba_ssm's seq_idx varlen restarts each sequence from zero: ours with zero initial states. ssd is simple_gla
/// with q = C, k = Δ·B, v = x, g = Δ·A, scale = 1, D = 0 and the state transposed (a tested law).
/// </summary>
public sealed partial class Ssd : Form
{
    /// <summary>dt_softplus: Δ = softplus(dt + dt_bias).</summary>
    public static Parameter<bool> DtSoftplus { get; } = ParameterSpec.Flag("dt_softplus", false, "Δ = softplus(dt + dt_bias)");

    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("ssd", "state space", "Ssd.cs")
    {
        Variants = ["chunked", "quadratic", "recurrent"],
        Inputs =
        [
            new("x", "B,T,H,P", "input per head"),
            new("dt", "B,T,H", "step sizes (before dt_bias and softplus)"),
            new("A", "H", "log decay rate per head (decay exp(Δ·A))"),
            new("B", "B,T,G,N", "input projection, G groups"),
            new("C", "B,T,G,N", "output projection, G groups"),
            new("D", "H | H,P", "skip: + D·x, per head or per channel", Optional: true),
            new("z", "B,T,H,P", "gate: y ← y·silu(z)", Optional: true),
            new("dt_bias", "H", "added to dt", Optional: true),
            new("initial_state", "S,H,P,N", "state before the first step (zeros if absent)", Optional: true, Aliases: ["initial_states"]),
            new("cu_seqlens", "S+1", "varlen sequence boundaries along T (B = 1)", Optional: true, HoldsIndices: true, Varlen: "T"),
        ],
        Outputs =
        [
            new("o", "B,T,H,P", "output y (mamba_chunk_scan_combined's out)"),
            new("final_state", "S,H,P,N", "state after each sequence's last step"),
        ],
        Parameters = [DtSoftplus, Specs.ChunkSize],
        Groups = [new HeadGroup("H", "G", "ngroups of B and C: head h reads group h / (H/G)")],
        SequenceSymbol = "S",
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        var options = SsdOptions.Read(problem);
        return variant switch
        {
            "chunked" => Heads.Run(problem, head => Chunked(head, options)),
            "quadratic" => Heads.Run(problem, head => Quadratic(head, options)),
            "recurrent" => Heads.Run(problem, head => Recurrent(head, options)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The recurrence, step by step: the definition.</summary>
    public static void Recurrent(Head head, SsdOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock x = head.Rows("x"), B = head.Rows("B"), C = head.Rows("C"), o = head.Rows("o"), h = head.State();
        RowBlock? z = head.OptionalRows("z");
        Series dt = head.Series("dt");
        double A = head.Scalar("A"), bias = head.ScalarOrZero("dt_bias");
        ReadOnlySpan<double> D = head.Problem.Has("D") ? head.Row("D") : default;
        for (int t = 0; t < dt.Length; t++)
        {
            double Δ = options.StepSize(dt[t] + bias), decay = Math.Exp(Δ * A);
            for (int p = 0; p < h.Count; p++)
            {
                // h_t[p, :] = exp(Δ_t A) h_{t−1}[p, :] + Δ_t x_t[p] B_t
                VectorKernels.Scale(decay, h[p]);
                VectorKernels.Axpy(Δ * x[t][p], B[t], h[p]);
            }
            // y_t = h_t C_t + D x_t,   o_t = y_t ⊙ silu(z_t)
            DenseMatrix.TimesTransposed(C[t], h.Contiguous(), o[t]);
            SkipAndGate(o[t], x[t], D, z is null ? default : z[t]);
        }
    }

    /// <summary>y ← (y + D x) ⊙ silu(z): the skip (D per head, per channel, or none) and the gate (where z is given).</summary>
    private static void SkipAndGate(Span<double> y, ReadOnlySpan<double> x, ReadOnlySpan<double> D, ReadOnlySpan<double> z)
    {
        for (int p = 0; p < y.Length; p++)
        {
            double skip = D.IsEmpty ? 0 : D.Length == 1 ? D[0] : D[p];
            double value = y[p] + (skip * x[p]);
            y[p] = z.IsEmpty ? value : value * StateSpaceMath.Silu(z[p]);
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        var options = SsdOptions.Read(problem);
        Action<Head, SsdOptions> backward = variant switch
        {
            "chunked" => ChunkedBackward,
            "quadratic" => QuadraticBackward,
            "recurrent" => RecurrentBackward,
            _ => throw UnknownVariant(variant),
        };
        return Heads.Backward(problem, head => backward(head, options));
    }

    /// <summary>
    /// The backward pass of the recurrence, in reverse time, from the states h_t a forward replay stores (the definition
    /// keeps every state; the chunked backward recomputes one per chunk). λ is the gradient of h_t (P x N), f the
    /// step-size map (softplus or the identity):
    /// <code>
    ///   λ = dfinal_state (0 if absent)
    ///   for t = T−1 … 0:
    ///     v_t = y_t + D x_t:  dy_t = do_t ⊙ silu(z_t),  dz_t = do_t ⊙ v_t ⊙ silu'(z_t)      o_t = v_t ⊙ silu(z_t)
    ///     dD += dy_t ⊙ x_t (summed over p for D per head),  dx_t = D dy_t
    ///     λ += dy_t C_tᵀ,  dC_t = h_tᵀ dy_t                                                 y_t = h_t C_t
    ///     dB_t = Δ_t λᵀ x_t,  dx_t += Δ_t λ B_t                                             h_t ∋ Δ_t x_t B_tᵀ
    ///     dΔ_t = x_t·(λ B_t) + A e^{Δ_t A} ⟨λ, h_{t−1}⟩,  dA += Δ_t e^{Δ_t A} ⟨λ, h_{t−1}⟩     h_t ∋ e^{Δ_t A} h_{t−1}
    ///     λ = e^{Δ_t A} λ                                                                    now the gradient of h_{t−1}
    ///     ddt_t = f'(dt_t + dt_bias) dΔ_t,  ddt_bias += ddt_t
    ///   dinitial_state = λ
    /// </code>
    /// </summary>
    public static void RecurrentBackward(Head head, SsdOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock x = head.Rows("x"), B = head.Rows("B"), C = head.Rows("C"), λ = head.StateGradient();
        RowBlock dx = head.Rows("dx"), dB = head.Rows("dB"), dC = head.Rows("dC");
        RowBlock? z = head.OptionalRows("z"), dO = head.OptionalRows("do"), dz = z is null ? null : head.Rows("dz");
        Series dt = head.Series("dt"), ddt = head.Series("ddt");
        double A = head.Scalar("A"), bias = head.ScalarOrZero("dt_bias"), dA = 0, dBias = 0;
        var skip = Skip.Of(head);
        RowBlock[] h = Replay(head, options, dt, x, B); // h[t + 1] = h_t, h[0] = h_{−1}
        double[] y = new double[λ.Count], dy = new double[λ.Count], λB = new double[λ.Count];
        for (int t = dt.Length - 1; t >= 0; t--)
        {
            double Δ = options.StepSize(dt[t] + bias), decay = Math.Exp(Δ * A), overlap = 0;
            DenseMatrix.TimesTransposed(C[t], h[t + 1].Contiguous(), y);
            skip.Backward(y, x[t], z is null ? default : z[t], dO is null ? default : dO[t], dy, dx[t], dz is null ? default : dz[t]);
            for (int p = 0; p < λ.Count; p++)
            {
                VectorKernels.Axpy(dy[p], C[t], λ[p]);                 // λ += dy_t C_tᵀ
                VectorKernels.Axpy(dy[p], h[t + 1][p], dC[t]);         // dC_t = h_tᵀ dy_t
                λB[p] = VectorKernels.Dot(λ[p], B[t]);
                VectorKernels.Axpy(Δ * x[t][p], λ[p], dB[t]);          // dB_t = Δ_t λᵀ x_t
                dx[t][p] += Δ * λB[p];                                 // dx_t += Δ_t λ B_t
                overlap += VectorKernels.Dot(λ[p], h[t][p]);           // ⟨λ, h_{t−1}⟩
                VectorKernels.Scale(decay, λ[p]);                      // λ = e^{Δ_t A} λ
            }
            double dΔ = VectorKernels.Dot(x[t], λB) + (A * decay * overlap);
            dA += Δ * decay * overlap;
            ddt[t] = options.StepSizeDerivative(dt[t] + bias) * dΔ;
            dBias += ddt[t];
        }
        head.Row("dA")[0] += dA;
        if (head.Problem.Has("dt_bias"))
        {
            head.Row("ddt_bias")[0] += dBias;
        }
    }

    /// <summary>The states h_{−1}, h_0, …, h_{T−1} of the recurrence, replayed from the initial state.</summary>
    private static RowBlock[] Replay(Head head, SsdOptions options, Series dt, RowBlock x, RowBlock B)
    {
        double A = head.Scalar("A"), bias = head.ScalarOrZero("dt_bias");
        var h = new RowBlock[dt.Length + 1];
        h[0] = head.InitialState();
        for (int t = 0; t < dt.Length; t++)
        {
            double Δ = options.StepSize(dt[t] + bias);
            h[t + 1] = RowBlock.Zeros(h[t].Count, h[t].Width);
            for (int p = 0; p < h[t].Count; p++)
            {
                VectorKernels.Axpy(Math.Exp(Δ * A), h[t][p], h[t + 1][p]); // h_t = e^{Δ_t A} h_{t−1} + Δ_t x_t B_tᵀ
                VectorKernels.Axpy(Δ * x[t][p], B[t], h[t + 1][p]);
            }
        }
        return h;
    }

    /// <summary>The segment-sum (quadratic) form.</summary>
    public static void Quadratic(Head head, SsdOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        var s = new Packed(head, options);
        RowBlock o = head.Rows("o");
        Span<double> h = head.State().Contiguous();
        double[] h0 = h.ToArray(); // h_{−1}
        var segsum = new double[s.T + 1]; // segsum[s + 1] = Σ_{r=s+1..t} a_r for the current t, s = −1..t
        var decay = new double[s.T + 1];  // exp(segsum)
        var weight = new double[s.T];     // (C_t·B_s) exp(segsum(t, s)) Δ_s for s = 0..t
        var hC = new double[s.P];
        for (int t = 0; t < s.T; t++)
        {
            for (int r = -1; r < t; r++)
            {
                segsum[r + 1] += s.Log[t];
            }
            segsum[t + 1] = 0;
            Span<double> w = weight.AsSpan(0, t + 1), e = decay.AsSpan(0, t + 2);
            VectorKernels.Exp(segsum.AsSpan(0, t + 2), e);
            DenseMatrix.TimesTransposed(s.C(t), s.BRows(0, t + 1), w);
            VectorKernels.Multiply(w, e[1..], w);
            VectorKernels.Multiply(w, s.Dt.AsSpan(0, t + 1), w);
            // y_t = Σ_{s≤t} w_s x_s + exp(segsum(t, −1)) h_{−1} C_t
            DenseMatrix.AddWeightedRows(w, s.XRows(0, t + 1), o[t]);
            AddStateOutput(o[t], h0, s.C(t), e[0], hC);
        }
        // the final state is the same sum read at t = T − 1 against B instead of C
        h.Clear();
        VectorKernels.Exp(segsum, decay);
        VectorKernels.Axpy(decay[0], h0, h);
        for (int r = 0; r < s.T; r++)
        {
            double w = decay[r + 1] * s.Dt[r];
            for (int p = 0; p < s.P; p++)
            {
                VectorKernels.Axpy(w * s.X(r)[p], s.B(r), h.Slice(p * s.N, s.N));
            }
        }
        s.SkipAndGate(head, o);
    }

    /// <summary>
    /// ssd_minimal.py's chunked algorithm with chunks of <see cref="SsdOptions.ChunkSize"/> steps, its numbered steps
    /// chunk by chunk (step 4 before step 3: it reads the state entering the chunk, which step 3 advances in place).
    /// <code>
    /// Legend (ours → ssd_minimal.py's ssd_minimal_discrete):
    ///   Δ_s x_s          X (it is given X·dt)
    ///   s.Log = Δ·A      A (it is given A·dt)
    ///   cum              A_cumsum, within the chunk
    ///   exp(segsum)      L = exp(segsum(A))
    ///   weight           (C·B) ⊙ L, times Δ_s
    ///   chunkState       states[c]
    ///   exp(toEnd)       decay_states
    ///   h                the states between chunks (initial_states in, final_state out)
    ///   exp(cum)         state_decay_out
    ///   o                Y_diag (step 1) + Y_off (step 4)
    /// </code>
    /// </summary>
    public static void Chunked(Head head, SsdOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        var s = new Packed(head, options);
        RowBlock o = head.Rows("o");
        Span<double> h = head.State().Contiguous(); // h_{c−1}: the state entering the chunk, P x N
        int Q = Math.Min(options.ChunkSize, Math.Max(s.T, 1));
        double[] cum = new double[Q], segsum = new double[Q], weight = new double[Q];
        double[] chunkState = new double[s.P * s.N], hC = new double[s.P];
        foreach (var (start, end) in Chunks.Of(s.T, options.ChunkSize))
        {
            int length = end - start;
            for (int l = 0; l < length; l++)
            {
                cum[l] = (l == 0 ? 0 : cum[l - 1]) + s.Log[start + l];
            }
            // 1. intra-chunk outputs (diagonal blocks), with the stable segsum within the chunk
            for (int l = 0; l < length; l++)
            {
                double sum = 0; // segsum(l, r) = Σ_{q=r+1..l} a_q, grown as r goes down from l
                for (int r = l; r >= 0; r--)
                {
                    segsum[r] = sum;
                    sum += s.Log[start + r];
                }
                Span<double> w = weight.AsSpan(0, l + 1), e = segsum.AsSpan(0, l + 1);
                VectorKernels.Exp(e, e);
                DenseMatrix.TimesTransposed(s.C(start + l), s.BRows(start, l + 1), w);
                VectorKernels.Multiply(w, e, w);
                VectorKernels.Multiply(w, s.Dt.AsSpan(start, l + 1), w);
                DenseMatrix.AddWeightedRows(w, s.XRows(start, l + 1), o[start + l]);
            }
            // 2. the chunk's own state (B terms), decays to the chunk's end summed directly
            Array.Clear(chunkState);
            double toEnd = 0; // Σ_{q=r+1..end} a_q
            for (int r = length - 1; r >= 0; r--)
            {
                double w = Math.Exp(toEnd) * s.Dt[start + r];
                for (int p = 0; p < s.P; p++)
                {
                    VectorKernels.Axpy(w * s.X(start + r)[p], s.B(start + r), chunkState.AsSpan(p * s.N, s.N));
                }
                toEnd += s.Log[start + r];
            }
            // 4. state to output (C terms), from the state entering the chunk (before step 3 advances it)
            for (int l = 0; l < length; l++)
            {
                AddStateOutput(o[start + l], h, s.C(start + l), Math.Exp(cum[l]), hC);
            }
            // 3. inter-chunk recurrence (A terms): toEnd now is the chunk's whole log decay
            VectorKernels.Scale(Math.Exp(toEnd), h);
            VectorKernels.Axpy(1, chunkState, h);
        }
        s.SkipAndGate(head, o);
    }

    /// <summary>y += w · h C for h [P,N] row-major; <paramref name="hC"/> (P values) is scratch.</summary>
    private static void AddStateOutput(Span<double> y, ReadOnlySpan<double> h, ReadOnlySpan<double> c, double w, Span<double> hC)
    {
        DenseMatrix.TimesTransposed(c, h, hC);
        VectorKernels.Axpy(w, hC, y);
    }

    /// <summary>
    /// One (sequence, head) packed for the matrix kernels: Δ_t and a_t = Δ_t A_h per step, and its steps' x, B and C
    /// gathered once as contiguous [T,P], [T,N], [T,N] blocks.
    /// </summary>
    private sealed class Packed
    {
        private readonly double[] _x, _b, _c;

        public Packed(Head head, SsdOptions options)
        {
            (T, P, N) = (head.T, head["P"], head["N"]);
            Series dt = head.Series("dt");
            double A = head.Scalar("A"), bias = head.ScalarOrZero("dt_bias");
            (Dt, Log) = (new double[T], new double[T]);
            for (int t = 0; t < T; t++)
            {
                Dt[t] = options.StepSize(dt[t] + bias);
                Log[t] = Dt[t] * A;
            }
            (_x, _b, _c) = (Pack(head.Rows("x")), Pack(head.Rows("B")), Pack(head.Rows("C")));
        }

        public int T { get; }
        public int P { get; }
        public int N { get; }
        public double[] Dt { get; }
        public double[] Log { get; }

        public ReadOnlySpan<double> X(int s) => _x.AsSpan(s * P, P);
        public ReadOnlySpan<double> XRows(int from, int count) => _x.AsSpan(from * P, count * P);
        public ReadOnlySpan<double> B(int s) => _b.AsSpan(s * N, N);
        public ReadOnlySpan<double> BRows(int from, int count) => _b.AsSpan(from * N, count * N);
        public ReadOnlySpan<double> C(int s) => _c.AsSpan(s * N, N);
        public ReadOnlySpan<double> CRows(int from, int count) => _c.AsSpan(from * N, count * N);

        /// <summary>The skip and the gate on every output row, once the variant has written y.</summary>
        public void SkipAndGate(Head head, RowBlock o)
        {
            RowBlock? z = head.OptionalRows("z");
            ReadOnlySpan<double> D = head.Problem.Has("D") ? head.Row("D") : default;
            for (int t = 0; t < T; t++)
            {
                Ssd.SkipAndGate(o[t], X(t), D, z is null ? default : z[t]);
            }
        }

        private static double[] Pack(RowBlock rows)
        {
            var packed = new double[rows.Count * rows.Width];
            for (int t = 0; t < rows.Count; t++)
            {
                rows[t].CopyTo(packed.AsSpan(t * rows.Width));
            }
            return packed;
        }
    }
}

/// <summary>ssd's options, read once from a bound call (shared by the CPU form and the OpenCL host).</summary>
public sealed record SsdOptions(bool DtSoftplus, int ChunkSize)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static SsdOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(problem.Get(Ssd.DtSoftplus), problem.Get(Specs.ChunkSize));
    }

    /// <summary>Δ from dt + dt_bias: its softplus with dt_softplus, else itself.</summary>
    public double StepSize(double dtPlusBias) => DtSoftplus ? StateSpaceMath.Softplus(dtPlusBias) : dtPlusBias;

    /// <summary>dΔ/d(dt + dt_bias): softplus' (the sigmoid) with dt_softplus, else 1.</summary>
    public double StepSizeDerivative(double dtPlusBias) => DtSoftplus ? StateSpaceMath.SoftplusDerivative(dtPlusBias) : 1;
}
