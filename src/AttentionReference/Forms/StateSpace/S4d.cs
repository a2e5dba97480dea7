using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// S4D: a bank of diagonal linear time-invariant SSMs, complex A, zero-order-hold discretisation, exact, in double.
/// <code>
/// Shapes (time-major, our [B,T,H] layout; s4d.py's own layout (B,H,L) is --layout bhtd):
///   u [B,T,H]   log_dt [H]   A_real [H,N]   A_imag [H,N]   C_real [H,N]   C_imag [H,N]   D [H] optional
///   →  o [B,T,H]
///
/// Per channel h and mode n (dt = exp(log_dt_h), A = A_real + i·A_imag, C = C_real + i·C_imag, B = 1):
///   ZOH:  Ā = exp(dt·A)        B̄ = (exp(dt·A) − 1)/A
///   x_t = Ā x_{t−1} + B̄ u_t    x_{−1} = 0
///   o_t = 2·Re(Σ_n C_n x_{t,n}) + D u_t          (conjugate pairs: each stored mode stands for itself and its
///                                                 conjugate, so the real output is twice the real part)
///   Equivalently a causal convolution  o_t = Σ_{l=0..t} K_l u_{t−l} + D u_t  with
///   K_l = 2·Re(Σ_n C_n B̄_n Ā_n^l)
///
/// real_a = true (S4D-Real): A_imag and C_imag absent, the N modes are real, o_t = Σ_n C_n x_{t,n} + D u_t.
///
/// Variants:
///   recurrent    the recurrence above, step by step (complex state per channel and mode)
///   convolution  K_l for l &lt; T (Ā^l as exp(l·dt·A), as s4d.py), then the causal sum, directly
///                (exp(l·dtA) = e^{l·Re dtA}·(cos + i sin)(l·Im dtA): the magnitudes for all l at once, the phase
///                of l = mS + j, S = ⌈√T⌉, from the directly-taken phases of mS and j by the angle-addition formulas:
///                a few ε per value whatever l, never a running product; see StateSpaceMath.CosSinOfMultiples;
///                the kernel is DiagonalSsm.Kernel, shared with h3)
///   fft          the same convolution through a radix-2 complex FFT of size n = the power of two ≥ 2T (zero
///                padding, so no wrap-around): o = IFFT(FFT(u)·FFT(K))[0,T). The FFT is written here in a few
///                readable lines (StateSpaceMath.Fft, in double, twiddles from cos/sin of the exact angle) rather
///                than taken from a package: the reference must need no dependency and be readable end to end.
///                Its roundoff is about log2(n)·ε·‖K‖₂·‖u‖₂ per output (ε = 2^-53), unlike the direct sum's
///                t·ε·max|K|·max|u|; the tests hold fft to convolution within 16·log2(n)·ε·‖K‖₂‖u‖₂.
/// Each (batch entry, channel) is one unit of work, computed start to end by one thread (Heads.Run over H).
/// </code>
/// Sources: Gu, Gupta, Goel, Ré 2022, "On the Parameterization and Initialization of Diagonal State Space Models"
/// (S4D; the kernel K = 2·Re(C̃ ⊙ B̄) · V_L(Ā), ZOH) and its reference code state-spaces/s4 models/s4/s4d.py
/// (S4DKernel: dt = exp(log_dt), A = −exp(log_A_real) + i·A_imag, C complex with B folded in,
/// dtA = dt·A, K = 2·Re(C·(exp(dtA) − 1)/A · exp(dtA·l)), y = irfft(rfft(u, 2L)·rfft(K, 2L))[:L] + D·u).
/// Our choices: we take A_real itself (s4d.py's −exp(log_A_real)), so any A is accepted; B̄ is computed as
/// dt·expm1(dt·A)/(dt·A) with an accurate complex expm1 so that tiny dt loses nothing; no initial state (s4d.py's
/// kernel has none); s4d.py's activation, dropout and output linear layer are outside the form.
/// </summary>
public sealed class S4d : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("s4d", "state space", "S4d.cs")
    {
        Variants = ["recurrent", "convolution", "fft"],
        Inputs = [new("u", "B,T,H", "input sequence, one channel per H"), .. DiagonalSsm.Inputs],
        Outputs = [new("o", "B,T,H", "output")],
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
            "fft" => Fft(problem, realA),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The recurrence, step by step: the definition.</summary>
    public static void Recurrent(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        var ssm = DiagonalSsm.Of(head, realA);
        Series u = head.Series("u"), o = head.Series("o");
        double[] y = Respond(ssm, u.ToArray());
        for (int t = 0; t < y.Length; t++)
        {
            o[t] = y[t] + (ssm.D * u[t]); // o_t = y_t + D u_t
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        bool realA = DiagonalSsm.ReadRealA(problem);
        return variant switch
        {
            "recurrent" => Heads.Backward(problem, head => RecurrentBackward(head, realA)),
            "convolution" => Heads.Backward(problem, head => ConvolutionBackward(head, realA, StateSpaceMath.Correlate)),
            "fft" => FftBackward(problem, realA),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>
    /// The backward pass of the recurrence. o_t = y_t + D u_t gives dy = do, dD = Σ_t do_t u_t and du_t = D do_t plus
    /// the SSM's own reverse-time recurrence (<see cref="DiagonalSsm.RespondBackward"/>, per mode:
    /// λ = conj(Ā)·λ + f·do_t·conj(C), du_t += Re(conj(λ)·B̄), ...), whose gradients of ζ = dt·A, B̄ and C reach
    /// log_dt, A_real, A_imag, C_real and C_imag through the ZOH discretisation (<see cref="DiagonalSsm.WriteGradients"/>).
    /// </summary>
    public static void RecurrentBackward(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        var ssm = DiagonalSsm.Of(head, realA);
        double[] u = head.Series("u").ToArray(), dO = Cotangent(head);
        var gradients = new ModeGradients(ssm.Modes);
        SkipBackward(head, ssm, u, dO, ssm.RespondBackward(u, dO, gradients), gradients);
        ssm.WriteGradients(head, gradients);
    }

    /// <summary>The cotangent do of the pair's output as a series (zeros where it was left out).</summary>
    private static double[] Cotangent(Head head) => head.OptionalSeries("do")?.ToArray() ?? new double[head.T];

    /// <summary>du_t = (the SSM's du)_t + D do_t and dD = Σ_t do_t u_t, written to the pair's du.</summary>
    private static void SkipBackward(Head head, DiagonalSsm ssm, double[] u, double[] dO, double[] du, ModeGradients gradients)
    {
        Series dU = head.Series("du");
        for (int t = 0; t < u.Length; t++)
        {
            dU[t] = du[t] + (ssm.D * dO[t]);
            gradients.D += dO[t] * u[t];
        }
    }

    /// <summary>
    /// The backward pass of the convolution o = K * u + D u: its transpose, dK_l = Σ_{t≥l} do_t u_{t−l} and
    /// du_s = Σ_{t≥s} K_{t−s} do_t (+ D do_s), by <paramref name="correlate"/> (summed directly, or through the FFT);
    /// dK reaches the parameters through the kernel (<see cref="DiagonalSsm.KernelBackward"/>) and the ZOH discretisation.
    /// </summary>
    private static void ConvolutionBackward(Head head, bool realA, Func<double[], double[], double[]> correlate)
    {
        var ssm = DiagonalSsm.Of(head, realA);
        double[] u = head.Series("u").ToArray(), dO = Cotangent(head);
        var gradients = new ModeGradients(ssm.Modes);
        ssm.KernelBackward(correlate(dO, u), gradients);
        SkipBackward(head, ssm, u, dO, correlate(dO, ssm.Kernel(u.Length)), gradients);
        ssm.WriteGradients(head, gradients);
    }

    /// <summary>The convolution's backward through the FFT of size ≥ 2T (twiddles taken once per call).</summary>
    private static IReadOnlyDictionary<string, Tensor> FftBackward(Problem problem, bool realA)
    {
        var fft = new FftConvolution(problem["T"]);
        return Heads.Backward(problem, head => ConvolutionBackward(head, realA, fft.Correlate));
    }

    /// <summary>
    /// The SSM's response to the series <paramref name="u"/>, mode by mode:
    /// x_{t,n} = Ā_n x_{t−1,n} + B̄_n u_t from x_{−1,n} = 0, and y_t = Σ_n f·Re(C_n x_{t,n}) (f = 2 for conjugate pairs).
    /// </summary>
    internal static double[] Respond(DiagonalSsm ssm, double[] u)
    {
        var y = new double[u.Length];
        for (int n = 0; n < ssm.Modes; n++)
        {
            var x = System.Numerics.Complex.Zero;
            for (int t = 0; t < u.Length; t++)
            {
                x = (ssm.ABar[n] * x) + (ssm.BBar[n] * u[t]);
                y[t] += ssm.PairFactor * (ssm.C[n] * x).Real;
            }
        }
        return y;
    }

    /// <summary>The causal convolution with K_l = 2·Re(C B̄ Ā^l), summed directly.</summary>
    public static void Convolution(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        var ssm = DiagonalSsm.Of(head, realA);
        double[] u = head.Series("u").ToArray();
        AddSkip(head, ssm, StateSpaceMath.DirectConvolve(ssm.Kernel(u.Length), u));
    }

    /// <summary>The same convolution through a radix-2 FFT of size ≥ 2T (twiddles taken once per call).</summary>
    private static IReadOnlyDictionary<string, Tensor> Fft(Problem problem, bool realA)
    {
        var fft = new FftConvolution(problem["T"]);
        return Heads.Run(problem, head =>
        {
            var ssm = DiagonalSsm.Of(head, realA);
            double[] u = head.Series("u").ToArray();
            AddSkip(head, ssm, fft.Convolve(ssm.Kernel(u.Length), u));
        });
    }

    /// <summary>o_t = y_t + D u_t.</summary>
    private static void AddSkip(Head head, DiagonalSsm ssm, double[] y)
    {
        Series u = head.Series("u"), o = head.Series("o");
        for (int t = 0; t < y.Length; t++)
        {
            o[t] = y[t] + (ssm.D * u[t]);
        }
    }
}
