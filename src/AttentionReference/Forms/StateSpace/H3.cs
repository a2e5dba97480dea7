using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// H3 (Hungry Hungry Hippos): per head, o = q · SSM_diag(SSM_shift(k) ⊗ v), exact, in double. The projections
/// (q_proj, k_proj, v_proj, output_linear) are outside the form: it starts from q, k, v and both SSMs' parameters.
/// <code>
/// Shapes (H heads of head_dim d, d_model = H·d split as H3's 'b (h d) l'; M shift taps; N diagonal modes):
///   q, k, v [B,T,H,d]
///   shift_kernel [H,d,M]   shift_D [H,d] optional          the shift SSM, one per d_model channel
///   log_dt [H]  A_real, A_imag, C_real, C_imag [H,N]  D [H] optional     the diagonal SSM (S4D), one per head
///   →  o [B,T,H,d]
///
/// 1. Shift SSM on k, per channel (h, i): the state holds the last M inputs (A = shift matrix, B = e_0), so its
///    kernel is its C read as taps:  k̃_t = Σ_{m=0..M−1} shift_kernel_m k_{t−m} + shift_D k_t   (k_{&lt;0} = 0)
/// 2. Outer product per head and step:  kv_t[i,j] = k̃_t[i] v_t[j]                     (i, j = 0..d−1)
/// 3. Diagonal SSM of head h on each of the d·d channels kv[i,j] (the same parameters for all of them), as s4d:
///    s_t = Ā s_{t−1} + B̄ kv_t,  y_t[i,j] = 2·Re(C s_t) + D_h kv_t[i,j]     (Ā, B̄ by ZOH, see S4d.cs)
/// 4. o_t[j] = Σ_i q_t[i] y_t[i,j]
///
/// real_a = true: the diagonal SSM's modes are real (S4D-Real, as in s4d): A_imag, C_imag absent, y = C s.
///
/// Variants: recurrent (both SSMs step by step: a shift register and s4d's recurrence on each channel (i, j)) and
/// convolution (both as causal convolutions: the shift kernel padded with zeros, and K_l = 2·Re(C B̄ Ā^l) of
/// DiagonalSsm.Kernel, shared with s4d). Each (batch entry, head) is one unit of work (Heads.Run over H).
/// </code>
/// Sources: Fu, Dao, Saab, Thomas, Rudra, Ré 2022, "Hungry Hungry Hippos: Towards Language Modeling with State Space
/// Models" (H3 layer: Q ⊙ SSM_diag(SSM_shift(K) ⊙ V), multi-head with the outer product K Vᵀ per head), and its
/// reference HazyResearch/H3 src/models/ssm/h3.py (H3.forward: ssm_k_kernel (mode 'shift', d_model channels) and
/// ssm_k_D on k; kv = rearrange(k, 'b (h d1) l -> b d1 1 h l') * rearrange(v, 'b (h d2) l -> b 1 d2 h l'); the
/// diagonal kernel (H = d_model/head_dim channels) and D per head shared over (d1, d2); y = (y·q).sum over d1).
/// Our choices: both SSM kernels' parameters are given inputs — the shift SSM as its taps (its kernel, which for a
/// shift SSM is its C vector), the diagonal SSM in S4D's parameterisation (SSKernel's default for H3 is diagonal
/// with ZOH); the output is [B,T,H,d] per head, whereas h3.py flattens it as '(d2 h)' before output_linear (a
/// fixed permutation of channels); no inference state.
/// </summary>
public sealed class H3 : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("h3", "state space", "H3.cs")
    {
        Variants = ["recurrent", "convolution"],
        Inputs =
        [
            new("q", "B,T,H,d", "queries"),
            new("k", "B,T,H,d", "keys (input of the shift SSM)"),
            new("v", "B,T,H,d", "values"),
            new("shift_kernel", "H,d,M", "taps of the shift SSM on k (its C)"),
            new("shift_D", "H,d", "skip of the shift SSM (zero if absent)", Optional: true),
            .. DiagonalSsm.Inputs,
        ],
        Outputs = [new("o", "B,T,H,d", "output")],
        Parameters = [DiagonalSsm.RealA],
        SequenceSymbol = "S",
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        bool realA = DiagonalSsm.ReadRealA(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, realA)),
            "convolution" => Heads.Run(problem, head => Convolution(head, realA)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>Both SSMs step by step (a shift register, then s4d's recurrence): the definition.</summary>
    public static void Recurrent(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        var ssm = DiagonalSsm.Of(head, realA);
        Layer(head, ssm, ShiftRegister, kv => S4d.Respond(ssm, kv));
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        bool realA = DiagonalSsm.ReadRealA(problem);
        Action<Head, bool> backward = variant switch
        {
            "recurrent" => RecurrentBackward,
            "convolution" => ConvolutionBackward,
            _ => throw UnknownVariant(variant),
        };
        return Heads.Backward(problem, head => backward(head, realA));
    }

    /// <summary>
    /// The backward pass with both SSMs step by step in reverse time: steps 4 to 1 of <see cref="LayerBackward"/>, the
    /// diagonal SSM's reverse-time recurrence on each channel (i, j) (<see cref="DiagonalSsm.RespondBackward"/>, its
    /// parameter gradients summed over the d·d channels) and the shift register's (<see cref="ShiftRegisterBackward"/>).
    /// </summary>
    public static void RecurrentBackward(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        var ssm = DiagonalSsm.Of(head, realA);
        var gradients = new ModeGradients(ssm.Modes);
        LayerBackward(head, ssm, gradients, ShiftRegister, ShiftRegisterBackward,
            kv => S4d.Respond(ssm, kv), (kv, dy) => ssm.RespondBackward(kv, dy, gradients));
        ssm.WriteGradients(head, gradients);
    }

    /// <summary>
    /// The backward pass of steps 1–4 for one (batch entry, head), in reverse order, the two SSMs given as what they do
    /// to one series and what their backward passes do (each adding its parameters' gradients where it keeps them):
    /// <code>
    ///   4. o_t[j] = Σ_i q_t[i] (y_t[i,j] + D kv_t[i,j]):  dq_t[i] = Σ_j do_t[j] (y_t[i,j] + D kv_t[i,j]),
    ///      dy_t[i,j] = q_t[i] do_t[j],  dD += Σ dy ⊙ kv
    ///   3. y[i,j] = SSM_diag(kv[i,j]):  dkv[i,j] = SSM_diagᵀ(dy[i,j]) + D dy[i,j]
    ///   2. kv_t[i,j] = k̃_t[i] v_t[j]:  dk̃_t[i] = Σ_j dkv_t[i,j] v_t[j],  dv_t[j] = Σ_i dkv_t[i,j] k̃_t[i]
    ///   1. k̃_i = SSM_shift(k_i) + shift_D_i k_i:  dk_i = SSM_shiftᵀ(dk̃_i) + shift_D_i dk̃_i,
    ///      dshift_D_i = Σ_t dk̃_t[i] k_t[i],  dshift_kernel_i from the shift SSM's backward
    /// </code>
    /// </summary>
    private static void LayerBackward(Head head, DiagonalSsm ssm, ModeGradients gradients,
        Func<double[], double[], double[]> shiftSsm, Func<double[], double[], double[], (double[] DTaps, double[] Dk)> shiftBackward,
        Func<double[], double[]> diagonalSsm, Func<double[], double[], double[]> diagonalBackward)
    {
        int d = head["d"], M = head["M"], T = head.T;
        double[][] q = Channels(head.Rows("q")), k = Channels(head.Rows("k")), v = Channels(head.Rows("v"));
        double[][] dO = head.OptionalRows("do") is { } rows ? Channels(rows) : Zeros(d, T);
        Span<double> taps = head.Row("shift_kernel"), shiftD = ShiftSkip(head);
        double[][] kShifted = ShiftedKeys(head, shiftSsm, k); // 1. k̃ again
        double[][] dq = Zeros(d, T), dv = Zeros(d, T), dkShifted = Zeros(d, T);
        double[] kv = new double[T], dy = new double[T];
        for (int j = 0; j < d; j++)
        {
            for (int i = 0; i < d; i++)
            {
                for (int t = 0; t < T; t++)
                {
                    kv[t] = kShifted[i][t] * v[j][t];
                }
                double[] y = diagonalSsm(kv);
                for (int t = 0; t < T; t++)
                {
                    dq[i][t] += dO[j][t] * (y[t] + (ssm.D * kv[t])); // 4.
                    dy[t] = q[i][t] * dO[j][t];
                    gradients.D += dy[t] * kv[t];
                }
                double[] dkv = diagonalBackward(kv, dy); // 3.
                for (int t = 0; t < T; t++)
                {
                    dkv[t] += ssm.D * dy[t];
                    dkShifted[i][t] += dkv[t] * v[j][t]; // 2.
                    dv[j][t] += dkv[t] * kShifted[i][t];
                }
            }
        }
        // 1. the shift SSM and its skip, per channel i
        Span<double> dTaps = head.Row("dshift_kernel"), dShiftD = shiftD.IsEmpty ? default : head.Row("dshift_D");
        var dk = new double[d][];
        for (int i = 0; i < d; i++)
        {
            (double[] dTap, dk[i]) = shiftBackward(taps.Slice(i * M, M).ToArray(), k[i], dkShifted[i]);
            dTap.CopyTo(dTaps.Slice(i * M, M));
            double skip = shiftD.IsEmpty ? 0 : shiftD[i];
            for (int t = 0; t < T; t++)
            {
                dk[i][t] += skip * dkShifted[i][t];
                if (!dShiftD.IsEmpty)
                {
                    dShiftD[i] += dkShifted[i][t] * k[i][t];
                }
            }
        }
        WriteChannels(dq, head.Rows("dq"));
        WriteChannels(dk, head.Rows("dk"));
        WriteChannels(dv, head.Rows("dv"));
    }

    /// <summary>
    /// The shift register's reverse-time recurrence: with s_{t,m} = k_{t−m} (0 before the start) and λ the gradient of
    /// the register s_t,
    /// <code>
    ///   for t = T−1 … 0:
    ///     λ_m += taps_m dk̃_t,   dtaps_m += dk̃_t s_{t,m}          k̃_t = Σ_m taps_m s_{t,m}
    ///     dk_t = λ_0,   λ ← (λ_1, …, λ_{M−1}, 0)                  s_t = (k_t, s_{t−1,0}, …, s_{t−1,M−2})
    /// </code>
    /// </summary>
    private static (double[] DTaps, double[] Dk) ShiftRegisterBackward(double[] taps, double[] k, double[] dkShifted)
    {
        int M = taps.Length;
        double[] λ = new double[M], dTaps = new double[M], dk = new double[k.Length];
        for (int t = k.Length - 1; t >= 0; t--)
        {
            for (int m = 0; m < M; m++)
            {
                λ[m] += taps[m] * dkShifted[t];
                dTaps[m] += t - m >= 0 ? dkShifted[t] * k[t - m] : 0;
            }
            if (M > 0)
            {
                dk[t] = λ[0];
                Array.Copy(λ, 1, λ, 0, M - 1);
                λ[M - 1] = 0;
            }
        }
        return (dTaps, dk);
    }

    /// <summary>
    /// The backward pass with both SSMs as convolutions: their transposes, the correlations dK_l = Σ_{t≥l} dy_t kv_{t−l}
    /// (summed over the d·d channels, then carried to the parameters by <see cref="DiagonalSsm.KernelBackward"/>) and
    /// dkv = correlate(dy, K); the shift kernel's likewise, its taps past T getting no gradient.
    /// </summary>
    public static void ConvolutionBackward(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        var ssm = DiagonalSsm.Of(head, realA);
        var gradients = new ModeGradients(ssm.Modes);
        int T = head.T;
        double[] kernel = ssm.Kernel(T), dK = new double[T];
        LayerBackward(head, ssm, gradients,
            (taps, k) => StateSpaceMath.DirectConvolve(Padded(taps, T), k),
            (taps, k, dkShifted) => (Padded(StateSpaceMath.Correlate(dkShifted, k), taps.Length), StateSpaceMath.Correlate(dkShifted, Padded(taps, T))),
            kv => StateSpaceMath.DirectConvolve(kernel, kv),
            (kv, dy) =>
            {
                Numerics.VectorKernels.AddTo(StateSpaceMath.Correlate(dy, kv), dK); // dK summed over the d·d channels
                return StateSpaceMath.Correlate(dy, kernel);
            });
        ssm.KernelBackward(dK, gradients);
        ssm.WriteGradients(head, gradients);
    }

    /// <summary>d arrays of T zeros.</summary>
    private static double[][] Zeros(int d, int T) => Enumerable.Range(0, d).Select(_ => new double[T]).ToArray();

    /// <summary>rows[t][i] = channels[i][t].</summary>
    private static void WriteChannels(double[][] channels, RowBlock rows)
    {
        for (int i = 0; i < channels.Length; i++)
        {
            for (int t = 0; t < rows.Count; t++)
            {
                rows[t][i] = channels[i][t];
            }
        }
    }

    /// <summary>
    /// Steps 1–4 of the doc comment for one (batch entry, head), with the two SSMs given as what they do to one series:
    /// the shift SSM (its taps and k_i ↦ its response) and the diagonal SSM (kv ↦ its response, without D).
    /// </summary>
    private static void Layer(Head head, DiagonalSsm ssm, Func<double[], double[], double[]> shiftSsm, Func<double[], double[]> diagonalSsm)
    {
        int d = head["d"], T = head.T;
        double[][] q = Channels(head.Rows("q")), k = Channels(head.Rows("k")), v = Channels(head.Rows("v"));
        double[][] kShifted = ShiftedKeys(head, shiftSsm, k); // 1. k̃_i = SSM_shift(k_i) + shift_D_i k_i
        RowBlock o = head.Rows("o");
        double[] kv = new double[T], oj = new double[T]; // kv[i,j] and o[:, j] over the steps
        for (int j = 0; j < d; j++)
        {
            Array.Clear(oj);
            for (int i = 0; i < d; i++)
            {
                for (int t = 0; t < T; t++)
                {
                    kv[t] = kShifted[i][t] * v[j][t]; // 2. kv_t[i,j] = k̃_t[i] v_t[j]
                }
                double[] y = diagonalSsm(kv); // 3. the diagonal SSM on channel (i, j)
                for (int t = 0; t < T; t++)
                {
                    oj[t] += q[i][t] * (y[t] + (ssm.D * kv[t])); // 4. o_t[j] = Σ_i q_t[i] (y_t[i,j] + D kv_t[i,j])
                }
            }
            for (int t = 0; t < T; t++)
            {
                o[t][j] = oj[t];
            }
        }
    }

    /// <summary>Step 1 for every channel i: k̃_i = SSM_shift(k_i) + shift_D_i k_i, the shift SSM given as what it does to one series.</summary>
    private static double[][] ShiftedKeys(Head head, Func<double[], double[], double[]> shiftSsm, double[][] k)
    {
        int M = head["M"];
        Span<double> taps = head.Row("shift_kernel"), shiftD = ShiftSkip(head);
        var kShifted = new double[k.Length][];
        for (int i = 0; i < k.Length; i++)
        {
            kShifted[i] = shiftSsm(taps.Slice(i * M, M).ToArray(), k[i]);
            double skip = shiftD.IsEmpty ? 0 : shiftD[i];
            for (int t = 0; t < k[i].Length; t++)
            {
                kShifted[i][t] += skip * k[i][t];
            }
        }
        return kShifted;
    }

    /// <summary>shift_D of the pair's head (d values), or empty where it was left out.</summary>
    private static Span<double> ShiftSkip(Head head) => head.Problem.Has("shift_D") ? head.Row("shift_D") : default;

    /// <summary>The shift SSM step by step: s_t = (k_t, s_{t−1,0}, …, s_{t−1,M−2}), k̃_t = Σ_m taps_m s_{t,m}.</summary>
    private static double[] ShiftRegister(double[] taps, double[] k)
    {
        var state = new double[taps.Length];
        var y = new double[k.Length];
        for (int t = 0; t < k.Length; t++)
        {
            for (int m = taps.Length - 1; m > 0; m--)
            {
                state[m] = state[m - 1];
            }
            if (taps.Length > 0)
            {
                state[0] = k[t];
            }
            for (int m = 0; m < taps.Length; m++)
            {
                y[t] += taps[m] * state[m];
            }
        }
        return y;
    }

    /// <summary>Channel i of the rows as one series: result[i][t] = rows[t][i].</summary>
    private static double[][] Channels(RowBlock rows)
    {
        var channels = new double[rows.Width][];
        for (int i = 0; i < rows.Width; i++)
        {
            channels[i] = new double[rows.Count];
            for (int t = 0; t < rows.Count; t++)
            {
                channels[i][t] = rows[t][i];
            }
        }
        return channels;
    }

    /// <summary>Both SSMs as direct causal convolutions with their kernels.</summary>
    public static void Convolution(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        var ssm = DiagonalSsm.Of(head, realA);
        double[] kernel = ssm.Kernel(head.T);
        Layer(head, ssm, (taps, k) => StateSpaceMath.DirectConvolve(Padded(taps, k.Length), k),
            kv => StateSpaceMath.DirectConvolve(kernel, kv));
    }

    /// <summary>The taps as a kernel of <paramref name="length"/> steps (zeros past M, cut at T).</summary>
    private static double[] Padded(double[] taps, int length)
    {
        var kernel = new double[length];
        Array.Copy(taps, kernel, Math.Min(taps.Length, length));
        return kernel;
    }
}
