using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// Mamba's selective scan (Mamba-1, S6), with the arguments, names and layout of mamba's <c>selective_scan_ref</c>,
/// exact, in double.
/// <code>
/// Shapes (mamba's channel-first layout [B, D, L], accepted as mamba takes it: D channels, L steps, N state size):
///   u [B,D,L]   delta [B,D,L]   A [D,N]
///   B, C: [B,N,L] (selective, shared by all channels)  or  [B,G,N,L] (selective, G groups; channel d uses group
///         d / (D/G), mamba's 'B G N L -> B (G H) N L')  or  [D,N] (time-invariant)
///   D [D] optional   z [B,D,L] optional   delta_bias [D] optional
///   cu_seqlens [S+1] optional (B = 1: sequences packed along L)   initial_state [S,D,N] optional (ours)
///   →  o [B,D,L] (selective_scan_ref's out)   final_state [S,D,N] (its last_state, always returned)
///   (S = B without cu_seqlens, the number of sequences with it)
///
/// Per sequence, channel d, state index n:
///   Δ_t = delta_t + delta_bias_d,  then Δ_t ← softplus(Δ_t) if delta_softplus     (softplus(x) = x for x > 20)
///   x_t[n] = exp(Δ_t A_dn) x_{t−1}[n] + Δ_t B_t[n] u_t       x_{−1} = initial_state (0 if absent)
///   y_t = Σ_n C_t[n] x_t[n] + D_d u_t
///   o_t = y_t · silu(z_t)  if z is given
///   (with cu_seqlens, every sequence starts afresh from its own initial_state row and ends in its own final_state row)
///
/// Variants:
///   recurrent  the loop above (selective_scan_ref)
///   scan       each (sequence, d, n) is a first-order recurrence x_t = a_t x_{t−1} + b_t, and the pairs (a, b)
///              compose associatively: (a₁,b₁) then (a₂,b₂) = (a₂a₁, a₂b₁ + b₂). Blocked parallel scan, blocks of
///              block_size steps (any size ≥ 1; the last block may be short):
///              1. each block scans its pairs locally from the identity (1, 0): (α_t, β_t)   (independent blocks)
///              2. the block carries combine in order: c_0 = x_{−1}, c_{j+1} = α_last(j) c_j + β_last(j)
///              3. every step is fixed up with its block's carry: x_t = α_t c_j + β_t   (independent steps)
///              α is a product of exp(Δ A) factors, never divided by, so strong decay only underflows to 0.
///
/// Arithmetic: each (sequence, channel) is one unit of work (Heads.Run over D), computed start to end by one thread in
/// a fixed order, so results do not depend on the thread count. The recurrence updates the state vector x [N] per step
/// (exp(Δ_t A_d) for all n at once, B_t and C_t read as rows: a selective B or C is transposed once per call to
/// [B,G,L,N] by the runner); the scan runs each n along contiguous series of steps (a selective B or C is already
/// [.., N, L], read in place).
/// </code>
/// Sources: state-spaces/mamba mamba_ssm/ops/selective_scan_interface.py, <c>selective_scan_ref(u, delta, A, B, C,
/// D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False)</c>: delta + delta_bias[..., None],
/// F.softplus, deltaA = exp(einsum('bdl,dn->bdln', delta, A)), deltaB_u = einsum('bdl,bnl,bdl->bdln', delta, B, u)
/// (grouped B repeated over channels), x = deltaA·x + deltaB_u, y = einsum('bdn,bn->bd', x, C), out = y + u·D,
/// out·silu(z), last_state = x after the last step. Softplus's threshold 20: torch's F.softplus default and mamba's
/// CUDA kernel (selective_scan_fwd_kernel.cuh).
/// Varlen: selective_scan_ref on mamba's main branch has no cu_seqlens and no initial state. The open pull request
/// state-spaces/mamba#244 adds cu_seqlens (B = 1) to it and to the CUDA kernel: at each boundary x = deltaB_u, i.e. the
/// state restarts from 0, and last_state is the last step's only. vLLM's selective_scan_fn (query_start_loc,
/// has_initial_state, ssm_states) gives each sequence its own initial and final state. Ours is vLLM's: one
/// initial_state row and one final_state row per sequence; with zero initial states it is #244's restart.
/// Our choices: real A, B, C only (selective_scan_ref also takes complex ones, for S4D-style use: not supported
/// here); <c>initial_state</c> [S,D,N] is ours (zero reproduces selective_scan_ref exactly; it enables state passing);
/// the final state is always returned, one row per sequence; the output is named o and the state final_state, as the
/// other forms name them; block_size is the scan's, not an upstream argument.
/// </summary>
public sealed class Mamba : Form
{
    /// <summary>delta_softplus: Δ = softplus(delta + delta_bias).</summary>
    public static Parameter<bool> DeltaSoftplus { get; } = ParameterSpec.Flag("delta_softplus", false, "Δ = softplus(delta + delta_bias)");

    /// <summary>block_size: the scan's block length.</summary>
    public static Parameter<int> BlockSize { get; } =
        ParameterSpec.WholeNumber("block_size", 16, "block length ≥ 1 of the scan variant (need not divide L)", min: 1);

    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("mamba", "state space", "Mamba.cs")
    {
        Variants = ["recurrent", "scan"],
        Inputs =
        [
            new("u", "B,D,L", "input, channel-first as mamba"),
            new("delta", "B,D,L", "step sizes (before delta_bias and softplus)"),
            new("A", "D,N", "state matrix (diagonal per channel)"),
            new("B", "B,N,L | B,G,N,L | D,N", "input projection: shared, grouped or time-invariant"),
            new("C", "B,N,L | B,G,N,L | D,N", "output projection: shared, grouped or time-invariant"),
            new("D", "D", "skip: + D·u", Optional: true),
            new("z", "B,D,L", "gate: o = y·silu(z)", Optional: true),
            new("delta_bias", "D", "added to delta", Optional: true),
            new("initial_state", "S,D,N", "state before each sequence's first step (zeros if absent; not in selective_scan_ref)", Optional: true),
            new("cu_seqlens", "S+1", "varlen sequence boundaries along L (B = 1)", Optional: true, HoldsIndices: true, Varlen: "L"),
        ],
        Outputs =
        [
            new("o", "B,D,L", "output (selective_scan_ref's out)"),
            new("final_state", "S,D,N", "state after each sequence's last step (selective_scan_ref's last_state)"),
        ],
        Parameters = [DeltaSoftplus, BlockSize],
        Groups = [new HeadGroup("D", "G", "mamba's B/C groups, 'B G N L -> B (G H) N L'")],
        SequenceSymbol = "S",
        TimeSymbols = ["L"],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        var options = MambaOptions.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, options), "D"),
            "scan" => Heads.Run(problem, head => Scan(head, options), "D"),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>selective_scan_ref's loop over time, for one (sequence, channel d): the definition.</summary>
    public static void Recurrent(Head head, MambaOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        Series u = head.Series("u"), delta = head.Series("delta"), o = head.Series("o");
        Series? z = head.OptionalSeries("z");
        StepRows B = new(head, "B"), C = new(head, "C");
        ReadOnlySpan<double> A = head.Row("A");
        Span<double> x = head.State()[0];
        double bias = head.ScalarOrZero("delta_bias"), skip = head.ScalarOrZero("D");
        var decay = new double[x.Length]; // exp(Δ_t A_dn) for all n
        var ΔB = new double[x.Length];    // Δ_t B_t[n] for all n
        for (int t = 0; t < u.Length; t++)
        {
            double Δ = options.StepSize(delta[t] + bias);
            // x_t[n] = exp(Δ_t A_dn) x_{t−1}[n] + Δ_t B_t[n] u_t
            VectorKernels.Multiply(A, Δ, decay);
            VectorKernels.Exp(decay, decay);
            VectorKernels.Multiply(decay, x, x);
            VectorKernels.Multiply(B[t], Δ, ΔB);
            VectorKernels.Axpy(u[t], ΔB, x);
            // y_t = Σ_n C_t[n] x_t[n] + D_d u_t,   o_t = y_t · silu(z_t)
            o[t] = StateSpaceMath.Gated(VectorKernels.Dot(C[t], x) + (skip * u[t]), z?[t]);
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        var options = MambaOptions.Read(problem);
        var shared = new ChannelSharedGradients(problem);
        var gradients = variant switch
        {
            "recurrent" => Heads.Backward(problem, head => RecurrentBackward(head, options, shared), "D"),
            "scan" => Heads.Backward(problem, head => ScanBackward(head, options, shared), "D"),
            _ => throw UnknownVariant(variant),
        };
        shared.AddTo(gradients);
        return gradients;
    }

    /// <summary>
    /// The backward pass of the loop, in reverse time, from the states x_t a forward replay stores (the definition keeps
    /// every state; the scan recomputes them). λ is the gradient of x_t (N values), f the step-size map (softplus or the
    /// identity), a_t = exp(Δ_t A_d):
    /// <code>
    ///   λ = dfinal_state (0 if absent)
    ///   for t = L−1 … 0:
    ///     dy_t = do_t·silu(z_t),  dz_t = do_t·y_t·silu'(z_t)        o_t = y_t·silu(z_t)  (dy_t = do_t without z)
    ///     dD  += dy_t u_t,        du_t = D dy_t                      y_t = C_t·x_t + D u_t
    ///     λ   += dy_t C_t,        dC_t = dy_t x_t
    ///     dB_t = Δ_t u_t λ,       du_t += Δ_t λ·B_t                   x_t ∋ Δ_t B_t u_t
    ///     dΔ_t = λ·(A ⊙ a_t ⊙ x_{t−1}) + u_t λ·B_t,  dA += Δ_t λ ⊙ a_t ⊙ x_{t−1}     x_t ∋ exp(Δ_t A) ⊙ x_{t−1}
    ///     λ    = a_t ⊙ λ                                              now the gradient of x_{t−1}
    ///     ddelta_t = f'(delta_t + delta_bias) dΔ_t,  ddelta_bias += ddelta_t
    ///   dinitial_state = λ
    /// </code>
    /// A, D and delta_bias are shared by the batch and the steps, a selective B or C by the channels of its group: their
    /// gradients are sums.
    /// </summary>
    public static void RecurrentBackward(Head head, MambaOptions options, ChannelSharedGradients shared)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(shared);
        Series u = head.Series("u"), delta = head.Series("delta"), du = head.Series("du"), dDelta = head.Series("ddelta");
        Series? z = head.OptionalSeries("z"), dO = head.OptionalSeries("do"), dz = z is null ? null : head.Series("dz");
        StepRows B = new(head, "B"), C = new(head, "C");
        StepGradient dB = new(head, "B", shared), dC = new(head, "C", shared);
        ReadOnlySpan<double> A = head.Row("A");
        Span<double> λ = head.StateGradient()[0], dA = head.Row("dA");
        double bias = head.ScalarOrZero("delta_bias"), skip = head.ScalarOrZero("D"), dSkip = 0, dBias = 0;
        double[][] x = Replay(head, options, u, delta, B);
        double[] decay = new double[λ.Length], decayed = new double[λ.Length]; // a_t, and λ ⊙ a_t ⊙ x_{t−1}
        for (int t = u.Length - 1; t >= 0; t--)
        {
            double Δ = options.StepSize(delta[t] + bias);
            double y = VectorKernels.Dot(C[t], x[t + 1]) + (skip * u[t]);
            (double dy, double dGate) = StateSpaceMath.GatedBackward(y, z?[t], dO?[t] ?? 0);
            if (dz is { } gate)
            {
                gate[t] = dGate;
            }
            dSkip += dy * u[t];
            VectorKernels.Axpy(dy, C[t], λ);
            dC.Axpy(t, dy, x[t + 1]);
            dB.Axpy(t, Δ * u[t], λ);
            double λB = VectorKernels.Dot(λ, B[t]);
            du[t] = (skip * dy) + (Δ * λB);
            VectorKernels.Multiply(A, Δ, decay);
            VectorKernels.Exp(decay, decay);
            VectorKernels.Multiply(decay, x[t], decayed);
            VectorKernels.Multiply(decayed, λ, decayed);
            double dΔ = VectorKernels.Dot(decayed, A) + (u[t] * λB);
            VectorKernels.Axpy(Δ, decayed, dA);
            VectorKernels.Multiply(decay, λ, λ);
            dDelta[t] = options.StepSizeDerivative(delta[t] + bias) * dΔ;
            dBias += dDelta[t];
        }
        AddToScalar(head, "dD", dSkip);
        AddToScalar(head, "ddelta_bias", dBias);
    }

    /// <summary>The states x_{−1}, x_0, …, x_{L−1} of the loop (x[t + 1] = x_t), replayed from the initial state.</summary>
    private static double[][] Replay(Head head, MambaOptions options, Series u, Series delta, StepRows B)
    {
        ReadOnlySpan<double> A = head.Row("A");
        double bias = head.ScalarOrZero("delta_bias");
        var x = new double[u.Length + 1][];
        x[0] = head.InitialState()[0].ToArray();
        for (int t = 0; t < u.Length; t++)
        {
            double Δ = options.StepSize(delta[t] + bias);
            x[t + 1] = new double[x[0].Length];
            VectorKernels.Multiply(A, Δ, x[t + 1]);
            VectorKernels.Exp(x[t + 1], x[t + 1]);
            VectorKernels.Multiply(x[t + 1], x[t], x[t + 1]);   // exp(Δ_t A) ⊙ x_{t−1}
            VectorKernels.Axpy(Δ * u[t], B[t], x[t + 1]);       // + Δ_t B_t u_t
        }
        return x;
    }

    /// <summary>Adds <paramref name="value"/> to the pair's gradient of a per-channel input (dD, ddelta_bias) where the call gave it.</summary>
    private static void AddToScalar(Head head, string gradient, double value)
    {
        if (head.Problem.Has(gradient[1..]))
        {
            head.Row(gradient)[0] += value;
        }
    }

    /// <summary>Whether B or C is selective ([B,N,L] or [B,G,N,L]) rather than time-invariant ([D,N]).</summary>
    internal static bool IsSelective(Problem problem, string name) => problem.ShapeOf(name).Contains("L");

    /// <summary>
    /// B_t (or C_t) of the pair as rows, one per step: a selective B in place (the runner transposes it once per call to
    /// [.., L, N]), or the channel's time-invariant row B_d at every step.
    /// </summary>
    private readonly ref struct StepRows
    {
        private readonly RowBlock? _rows;
        private readonly ReadOnlySpan<double> _invariant;

        public StepRows(Head head, string name)
        {
            if (IsSelective(head.Problem, name))
            {
                _rows = head.Rows(name);
            }
            else
            {
                _invariant = head.Row(name);
            }
        }

        public ReadOnlySpan<double> this[int t] => _rows is null ? _invariant : _rows[t];
    }

    /// <summary>The blocked associative scan with blocks of block_size steps, each state index n along all the steps.</summary>
    public static void Scan(Head head, MambaOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        int length = head.T;
        Series delta = head.Series("delta"), o = head.Series("o");
        Series? z = head.OptionalSeries("z");
        double bias = head.ScalarOrZero("delta_bias"), skip = head.ScalarOrZero("D");
        var Δ = new double[length];
        for (int t = 0; t < length; t++)
        {
            Δ[t] = options.StepSize(delta[t] + bias);
        }
        ReadOnlySpan<double> u = head.Rows("u").Contiguous(), A = head.Row("A");
        Span<double> state = head.State()[0]; // x_{−1}[n] in, x_{L−1}[n] out
        StepSeries B = new(head, "B"), C = new(head, "C");
        // per state index n: a_t = exp(Δ_t A_dn), b_t = Δ_t B_t[n] u_t, the scan's scratch, and y = Σ_n C_t[n] x_t[n]
        double[] a = new double[length], bu = new double[length], x = new double[length], c = new double[length];
        double[] alpha = new double[length], beta = new double[length], carry = new double[length], y = new double[length];
        for (int n = 0; n < state.Length; n++)
        {
            ScanState(Δ, u, A[n], B.Of(n, bu), state[n], options.BlockSize, a, bu, alpha, beta, carry, x);
            // y_t += C_t[n] x_t[n]
            VectorKernels.Multiply(C.Of(n, c), x, c);
            VectorKernels.Axpy(1, c, y);
            if (length > 0)
            {
                state[n] = x[length - 1];
            }
        }
        for (int t = 0; t < length; t++)
        {
            o[t] = StateSpaceMath.Gated(y[t] + (skip * u[t]), z?[t]);
        }
    }

    /// <summary>
    /// x_t = a_t x_{t−1} + b_t from x_{−1} = <paramref name="x0"/> into <paramref name="x"/>, by the three steps of the
    /// doc comment, with the local scans α, β and the block carries in caller-owned scratch (each at least as long as a).
    /// </summary>
    internal static void BlockedScan(ReadOnlySpan<double> a, ReadOnlySpan<double> b, double x0, int blockSize,
        Span<double> alpha, Span<double> beta, Span<double> carry, Span<double> x)
    {
        int length = a.Length;
        // A block longer than the sequence is one block: clamping keeps (j + 1)·blockSize from overflowing int.
        blockSize = Math.Min(blockSize, Math.Max(length, 1));
        int blocks = (length + blockSize - 1) / blockSize;
        // 1. local inclusive scans, each block from the identity (1, 0)
        for (int j = 0; j < blocks; j++)
        {
            double accA = 1, accB = 0;
            for (int t = j * blockSize; t < Math.Min(length, (j + 1) * blockSize); t++)
            {
                (accA, accB) = (a[t] * accA, (a[t] * accB) + b[t]);
                (alpha[t], beta[t]) = (accA, accB);
            }
        }
        // 2. block carries, in order
        double c = x0;
        for (int j = 0; j < blocks; j++)
        {
            carry[j] = c;
            int lastStep = Math.Min(length, (j + 1) * blockSize) - 1;
            c = (alpha[lastStep] * c) + beta[lastStep];
        }
        // 3. fix-up
        for (int t = 0; t < length; t++)
        {
            x[t] = (alpha[t] * carry[t / blockSize]) + beta[t];
        }
    }

    /// <summary>
    /// The backward pass of the scan. The gradient λ_t of x_t[n] obeys λ_t = a_{t+1} λ_{t+1} + g_t with g_t = dy_t C_t[n],
    /// from λ_{L−1} = dfinal_state[n] + g_{L−1}: a first-order linear recurrence like the forward's, run backwards. So the
    /// same blocked scan (its steps 1–3) computes it on the reversed steps s = L−1−t, with coefficients
    /// (1, a_{L−1}, …, a_1) and inputs (g_{L−1}, …, g_0), from dfinal_state[n]:
    /// <code>
    ///   1. y again (the forward scan for every n), then the gate's and the skip's backward: dy, dz, dD, du = D dy
    ///   2. per state index n: x again (the forward scan), λ by the blocked scan on the reversed steps, then each step:
    ///        dC_t[n] = dy_t x_t,  dB_t[n] = Δ_t u_t λ_t,  du_t += Δ_t B_t[n] λ_t,
    ///        dΔ_t += λ_t (A_n a_t x_{t−1} + B_t[n] u_t),  dA_n = Σ_t Δ_t λ_t a_t x_{t−1},  dinitial_state[n] = a_0 λ_0
    ///   3. ddelta_t = f'(delta_t + delta_bias) dΔ_t,  ddelta_bias = Σ_t ddelta_t
    /// </code>
    /// </summary>
    public static void ScanBackward(Head head, MambaOptions options, ChannelSharedGradients shared)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(shared);
        int length = head.T;
        Series delta = head.Series("delta");
        Series? z = head.OptionalSeries("z"), dO = head.OptionalSeries("do"), dz = z is null ? null : head.Series("dz");
        double bias = head.ScalarOrZero("delta_bias"), skip = head.ScalarOrZero("D");
        var Δ = new double[length];
        for (int t = 0; t < length; t++)
        {
            Δ[t] = options.StepSize(delta[t] + bias);
        }
        ReadOnlySpan<double> u = head.Rows("u").Contiguous(), A = head.Row("A");
        Span<double> du = head.Rows("du").Contiguous(), dA = head.Row("dA");
        Span<double> λEnd = head.StateGradient()[0]; // dfinal_state in, dinitial_state out
        double[] x0 = head.InitialState()[0].ToArray();
        StepSeries B = new(head, "B"), C = new(head, "C");
        StepGradient dB = new(head, "B", shared), dC = new(head, "C", shared);
        double[] a = new double[length], bu = new double[length], x = new double[length], c = new double[length];
        double[] alpha = new double[length], beta = new double[length], carry = new double[length], work = new double[length];
        double[] y = new double[length], dy = new double[length], dΔ = new double[length], λ = new double[length];
        double[] reversedA = new double[length], reversedG = new double[length], previous = new double[length];
        // 1. y again, then the gate's and the skip's backward
        for (int n = 0; n < x0.Length; n++)
        {
            ScanState(Δ, u, A[n], B.Of(n, bu), x0[n], options.BlockSize, a, bu, alpha, beta, carry, x);
            VectorKernels.Multiply(C.Of(n, c), x, c);
            VectorKernels.Axpy(1, c, y);
        }
        double dSkip = 0;
        for (int t = 0; t < length; t++)
        {
            (dy[t], double dGate) = StateSpaceMath.GatedBackward(y[t] + (skip * u[t]), z?[t], dO?[t] ?? 0);
            if (dz is { } gate)
            {
                gate[t] = dGate;
            }
            dSkip += dy[t] * u[t];
            du[t] = skip * dy[t];
        }
        // 2. per state index n: x again, λ by the blocked scan on the reversed steps, then every step at once
        for (int n = 0; n < x0.Length; n++)
        {
            ScanState(Δ, u, A[n], B.Of(n, bu), x0[n], options.BlockSize, a, bu, alpha, beta, carry, x);
            VectorKernels.Multiply(dy, C.Of(n, c), c); // g_t = dy_t C_t[n]
            for (int s = 0; s < length; s++)
            {
                reversedA[s] = s == 0 ? 1 : a[length - s];
                reversedG[s] = c[length - 1 - s];
            }
            BlockedScan(reversedA, reversedG, λEnd[n], options.BlockSize, alpha, beta, carry, work);
            for (int t = 0; t < length; t++)
            {
                λ[t] = work[length - 1 - t];
                previous[t] = t == 0 ? x0[n] : x[t - 1];
            }
            VectorKernels.Multiply(dy, x, work);
            dC.AddSeries(n, work);                            // dC_t[n] = dy_t x_t
            ReadOnlySpan<double> Bn = B.Of(n, bu);
            VectorKernels.Multiply(Δ, λ, work);               // Δ_t λ_t
            VectorKernels.Multiply(work, u, c);
            dB.AddSeries(n, c);                               // dB_t[n] = Δ_t u_t λ_t
            VectorKernels.Multiply(work, Bn, c);
            VectorKernels.AddTo(c, du);                       // du_t += Δ_t B_t[n] λ_t
            VectorKernels.Multiply(λ, Bn, c);
            VectorKernels.Multiply(c, u, c);
            VectorKernels.AddTo(c, dΔ);                       // dΔ_t += λ_t B_t[n] u_t
            VectorKernels.Multiply(λ, a, c);
            VectorKernels.Multiply(c, previous, c);           // λ_t a_t x_{t−1}
            VectorKernels.Axpy(A[n], c, dΔ);                  // dΔ_t += A_n λ_t a_t x_{t−1}
            dA[n] += VectorKernels.Dot(Δ, c);
            if (length > 0)
            {
                λEnd[n] = a[0] * λ[0];                        // dinitial_state[n] = a_0 λ_0
            }
        }
        // 3. through the step-size map
        Series dDelta = head.Series("ddelta");
        double dBias = 0;
        for (int t = 0; t < length; t++)
        {
            dDelta[t] = options.StepSizeDerivative(delta[t] + bias) * dΔ[t];
            dBias += dDelta[t];
        }
        AddToScalar(head, "dD", dSkip);
        AddToScalar(head, "ddelta_bias", dBias);
    }

    /// <summary>
    /// The forward scan of state index n: a_t = exp(Δ_t A_n), b_t = Δ_t B_t[n] u_t and x_t = a_t x_{t−1} + b_t from
    /// <paramref name="x0"/>, into <paramref name="a"/>, <paramref name="b"/> and <paramref name="x"/> (the others are
    /// the scan's scratch); <paramref name="Bn"/> may be <paramref name="b"/> itself.
    /// </summary>
    private static void ScanState(double[] Δ, ReadOnlySpan<double> u, double An, ReadOnlySpan<double> Bn, double x0, int blockSize,
        double[] a, double[] b, double[] alpha, double[] beta, double[] carry, double[] x)
    {
        Δ.CopyTo(a);
        VectorKernels.Scale(An, a);
        VectorKernels.Exp(a, a);
        VectorKernels.Multiply(Δ, Bn, b);
        VectorKernels.Multiply(b, u, b);
        BlockedScan(a, b, x0, blockSize, alpha, beta, carry, x);
    }

    /// <summary>
    /// B_t[n] (or C_t[n]) of the pair along its steps, one n at a time: a selective B is [.., N, L] as mamba lays it out,
    /// so each n's steps are contiguous and read in place; a time-invariant B_dn is repeated into the scratch.
    /// </summary>
    private readonly ref struct StepSeries
    {
        private readonly ReadOnlySpan<double> _values; // selective: the pair's (batch, group) block [N, L]; else the row B_d
        private readonly int _steps, _start;           // L, and the sequence's first step
        private readonly bool _selective;

        public StepSeries(Head head, string name)
        {
            Problem problem = head.Problem;
            _selective = IsSelective(problem, name);
            if (!_selective)
            {
                _values = head.Row(name);
                return;
            }
            Tensor x = problem.Input(name);
            int groups = x.Rank == 4 ? problem["G"] : 1, group = head.Index / (problem["D"] / groups);
            (_steps, _start) = (problem["L"], head.Sequence.Steps("L").Start);
            int block = problem["N"] * _steps;
            _values = x.Data.AsSpan(((head.Sequence.Batch * groups) + group) * block, block);
        }

        /// <summary>(B_t[n] for the pair's steps t = 0 … scratch.Length − 1).</summary>
        public ReadOnlySpan<double> Of(int n, Span<double> scratch)
        {
            if (_selective)
            {
                return _values.Slice((n * _steps) + _start, scratch.Length);
            }
            scratch.Fill(_values[n]);
            return scratch;
        }
    }
}

/// <summary>mamba's options, read once from a bound call (shared by the CPU form and the OpenCL host).</summary>
public sealed record MambaOptions(bool DeltaSoftplus, int BlockSize)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static MambaOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(problem.Get(Mamba.DeltaSoftplus), problem.Get(Mamba.BlockSize));
    }

    /// <summary>Δ from delta + delta_bias: its softplus with delta_softplus, else itself.</summary>
    public double StepSize(double deltaPlusBias) => DeltaSoftplus ? StateSpaceMath.Softplus(deltaPlusBias) : deltaPlusBias;

    /// <summary>dΔ/d(delta + delta_bias): softplus' (the sigmoid) with delta_softplus, else 1.</summary>
    public double StepSizeDerivative(double deltaPlusBias) => DeltaSoftplus ? StateSpaceMath.SoftplusDerivative(deltaPlusBias) : 1;
}
