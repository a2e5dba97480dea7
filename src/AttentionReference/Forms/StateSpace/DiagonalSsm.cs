using System.Numerics;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// The diagonal SSM of one channel (s4d) or head (h3) with N modes, in S4D's parameterisation (state-spaces/s4
/// models/s4/s4d.py): dt = exp(log_dt_h), A_n = A_real + i·A_imag, C_n = C_real + i·C_imag (B folded into C), D (skip;
/// zero if absent), discretised by zero-order hold: Ā = exp(dt·A), B̄ = (exp(dt·A) − 1)/A. With real_a, A_imag and
/// C_imag are absent and the modes are real (S4D-Real): y = C x instead of 2·Re(C x). s4d.py keeps log_A_real and sets
/// A_real = −exp(log_A_real); we take A_real itself, so any sign is accepted (positive A_real grows, as the math says).
/// The convolution kernel K_l = f·Re(Σ_n C_n B̄_n Ā_n^l) (f = 2 for conjugate pairs, 1 for real modes) is written here
/// once, for s4d and h3.
/// </summary>
public sealed class DiagonalSsm
{
    /// <summary>The tensors of a bank of H diagonal SSMs of N modes (s4d's channels, h3's heads).</summary>
    public static IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("log_dt", "H", "log step size: dt = exp(log_dt)"),
        new("A_real", "H,N", "real part of A (s4d.py's −exp(log_A_real))"),
        new("A_imag", "H,N", "imaginary part of A (absent with real_a)", Optional: true),
        new("C_real", "H,N", "real part of C (B folded in)"),
        new("C_imag", "H,N", "imaginary part of C (absent with real_a)", Optional: true),
        new("D", "H", "skip: + D·u (zero if absent)", Optional: true),
    ];

    /// <summary>real_a: real modes (S4D-Real).</summary>
    public static Parameter<bool> RealA { get; } =
        ParameterSpec.Flag("real_a", false, "real modes (S4D-Real): y = C x instead of 2·Re(C x); A_imag, C_imag absent");

    /// <summary>
    /// real_a of a bound call, checked against A_imag and C_imag (the one rule the tensor specs cannot state: with real_a
    /// both are absent, without it both are required).
    /// </summary>
    public static bool ReadRealA(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        bool realA = problem.Get(RealA);
        foreach (string name in new[] { "A_imag", "C_imag" })
        {
            if (realA && problem.Has(name))
            {
                throw new InputException("real_a is set, so A_imag and C_imag must be absent", tensor: name);
            }
            if (!realA && !problem.Has(name))
            {
                throw new InputException("required unless real_a is set", tensor: name);
            }
        }
        return realA;
    }

    private DiagonalSsm(int modes, bool realA)
    {
        (DtA, ABar, BBar, C) = (new Complex[modes], new Complex[modes], new Complex[modes], new Complex[modes]);
        PairFactor = realA ? 1 : 2;
    }

    /// <summary>dt·A_n.</summary>
    public Complex[] DtA { get; }

    /// <summary>Ā_n = exp(dt·A_n).</summary>
    public Complex[] ABar { get; }

    /// <summary>B̄_n = (exp(dt·A_n) − 1)/A_n.</summary>
    public Complex[] BBar { get; }

    /// <summary>C_n.</summary>
    public Complex[] C { get; }

    /// <summary>D, 0 if absent.</summary>
    public double D { get; private init; }

    /// <summary>f: 2 for conjugate pairs (y = 2·Re(C x)), 1 for real modes.</summary>
    public double PairFactor { get; }

    /// <summary>The number of modes N.</summary>
    public int Modes => C.Length;

    /// <summary>The discretised SSM of the pair's channel or head h: log_dt_h, A_h, C_h and D_h read from the call.</summary>
    public static DiagonalSsm Of(Head head, bool realA)
    {
        ArgumentNullException.ThrowIfNull(head);
        Span<double> aReal = head.Row("A_real"), cReal = head.Row("C_real");
        Span<double> aImag = realA ? default : head.Row("A_imag"), cImag = realA ? default : head.Row("C_imag");
        double dt = Math.Exp(head.Scalar("log_dt"));
        var ssm = new DiagonalSsm(aReal.Length, realA) { D = head.ScalarOrZero("D") };
        for (int n = 0; n < ssm.Modes; n++)
        {
            Complex dtA = ssm.DtA[n] = dt * new Complex(aReal[n], realA ? 0 : aImag[n]);
            ssm.ABar[n] = Complex.Exp(dtA);
            // ZOH with B = 1: B̄ = dt·(e^{dtA} − 1)/dtA, through an accurate e^z − 1 (tiny dt stays exact)
            ssm.BBar[n] = dtA == Complex.Zero ? dt : dt * StateSpaceMath.ExpM1(dtA) / dtA;
            ssm.C[n] = new Complex(cReal[n], realA ? 0 : cImag[n]);
        }
        return ssm;
    }

    /// <summary>
    /// The convolution kernel over <paramref name="length"/> steps: K_l = f·Re(Σ_n C_n B̄_n exp(l·dtA_n)), with
    /// exp(l·dtA) taken directly at each l, as s4d.py does (no running product):
    /// exp(l·dtA) = e^{l·Re dtA}·(cos(l·Im dtA) + i sin(l·Im dtA)), the magnitudes for all l at once, the phases from
    /// <see cref="StateSpaceMath.CosSinOfMultiples"/>.
    /// </summary>
    public double[] Kernel(int length)
    {
        var kernel = new double[length];
        double[] magnitude = new double[length], cos = new double[length], sin = new double[length];
        for (int n = 0; n < Modes; n++)
        {
            Complex cb = C[n] * BBar[n];
            ExpOfMultiples(DtA[n], magnitude, cos, sin);
            for (int l = 0; l < length; l++)
            {
                // Re(C_n B̄_n exp(l·dtA_n))
                kernel[l] += PairFactor * ((cb.Real * (magnitude[l] * cos[l])) - (cb.Imaginary * (magnitude[l] * sin[l])));
            }
        }
        return kernel;
    }

    /// <summary>exp(l·ζ) = magnitude_l·(cos_l + i sin_l) for l &lt; magnitude.Length, each l taken directly (no running product).</summary>
    private static void ExpOfMultiples(Complex ζ, double[] magnitude, double[] cos, double[] sin)
    {
        for (int l = 0; l < magnitude.Length; l++)
        {
            magnitude[l] = l * ζ.Real;
        }
        VectorKernels.Exp(magnitude, magnitude);
        StateSpaceMath.CosSinOfMultiples(ζ.Imaginary, cos, sin);
    }

    // ---- the backward pass ----

    /// <summary>
    /// The reverse-time recurrence of <see cref="S4d.Respond"/> for one series u with the cotangent dy of its response
    /// y_t = Σ_n f·Re(C_n x_{t,n}), mode by mode, from the states x_t a forward replay stores; it adds the gradients of
    /// ζ = dt·A, B̄ and C to <paramref name="gradients"/> and returns du. Complex gradients are g = ∂L/∂Re + i·∂L/∂Im,
    /// so that the cotangent of z' = a·z is carried back as conj(a)·g:
    /// <code>
    ///   λ = 0                                       (the gradient of x_t, complex)
    ///   for t = T−1 … 0:
    ///     λ   += f·dy_t·conj(C)                     y_t ∋ f·Re(C x_t)
    ///     g_C += f·dy_t·conj(x_t)
    ///     du_t = Re(conj(λ)·B̄)                      x_t ∋ B̄ u_t
    ///     g_B̄ += λ·u_t
    ///     g_ζ += λ·conj(Ā x_{t−1})                   x_t ∋ Ā x_{t−1},  Ā = exp(ζ)
    ///     λ    = conj(Ā)·λ                          now the gradient of x_{t−1}
    /// </code>
    /// </summary>
    internal double[] RespondBackward(double[] u, double[] dy, ModeGradients gradients)
    {
        var du = new double[u.Length];
        var x = new Complex[u.Length + 1]; // x[t + 1] = x_t, x[0] = x_{−1} = 0
        for (int n = 0; n < Modes; n++)
        {
            for (int t = 0; t < u.Length; t++)
            {
                x[t + 1] = (ABar[n] * x[t]) + (BBar[n] * u[t]);
            }
            Complex λ = Complex.Zero, conjC = Complex.Conjugate(C[n]), conjA = Complex.Conjugate(ABar[n]);
            for (int t = u.Length - 1; t >= 0; t--)
            {
                λ += PairFactor * dy[t] * conjC;
                gradients.C[n] += PairFactor * dy[t] * Complex.Conjugate(x[t + 1]);
                du[t] += (Complex.Conjugate(λ) * BBar[n]).Real;
                gradients.BBar[n] += λ * u[t];
                gradients.Zeta[n] += λ * Complex.Conjugate(ABar[n] * x[t]);
                λ = conjA * λ;
            }
        }
        return du;
    }

    /// <summary>
    /// The gradients of ζ = dt·A, B̄ and C from the cotangent dK of the kernel K_l = f·Re(Σ_n C_n B̄_n exp(l·ζ_n)), added
    /// to <paramref name="gradients"/>: with W_n = Σ_l dK_l exp(l·ζ_n) and V_n = Σ_l l·dK_l exp(l·ζ_n),
    /// g_C = f·conj(B̄ W), g_B̄ = f·conj(C W), g_ζ = f·conj(C B̄ V)   (for L = Re(h(z)), h holomorphic: g = conj(h'(z))).
    /// </summary>
    internal void KernelBackward(double[] dK, ModeGradients gradients)
    {
        int length = dK.Length;
        double[] magnitude = new double[length], cos = new double[length], sin = new double[length];
        for (int n = 0; n < Modes; n++)
        {
            ExpOfMultiples(DtA[n], magnitude, cos, sin);
            Complex W = Complex.Zero, V = Complex.Zero;
            for (int l = 0; l < length; l++)
            {
                var term = new Complex(dK[l] * magnitude[l] * cos[l], dK[l] * magnitude[l] * sin[l]);
                W += term;
                V += l * term;
            }
            gradients.C[n] += PairFactor * Complex.Conjugate(BBar[n] * W);
            gradients.BBar[n] += PairFactor * Complex.Conjugate(C[n] * W);
            gradients.Zeta[n] += PairFactor * Complex.Conjugate(C[n] * BBar[n] * V);
        }
    }

    /// <summary>
    /// Writes the gradients of the pair's parameters from those of ζ, B̄, C and D, through the ZOH discretisation
    /// ζ = dt·A, Ā = e^ζ, B̄ = dt·φ₁(ζ) with φ₁(ζ) = (e^ζ − 1)/ζ, dt = exp(log_dt):
    /// <code>
    ///   g_A     = dt·g_ζ + dt²·conj(φ₁'(ζ))·g_B̄             ∂ζ/∂A = dt,  ∂B̄/∂A = dt²·φ₁'(ζ)
    ///   dL/ddt  = Σ_n Re(conj(g_ζ)·A) + Re(conj(g_B̄)·Ā)      ∂ζ/∂dt = A,  ∂B̄/∂dt = φ₁ + ζφ₁' = e^ζ = Ā
    ///   dlog_dt = dt·dL/ddt,   dA_real + i·dA_imag = g_A,   dC_real + i·dC_imag = g_C
    /// </code>
    /// (with real_a the imaginary parts are zero and absent).
    /// </summary>
    public void WriteGradients(Head head, ModeGradients gradients)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(gradients);
        Problem problem = head.Problem;
        double dt = Math.Exp(head.Scalar("log_dt")), dDt = 0;
        Span<double> aReal = head.Row("A_real"), aImag = problem.Has("A_imag") ? head.Row("A_imag") : default;
        Span<double> dAReal = head.Row("dA_real"), dCReal = head.Row("dC_real");
        Span<double> dAImag = problem.Has("A_imag") ? head.Row("dA_imag") : default;
        Span<double> dCImag = problem.Has("C_imag") ? head.Row("dC_imag") : default;
        for (int n = 0; n < Modes; n++)
        {
            Complex A = new(aReal[n], aImag.IsEmpty ? 0 : aImag[n]), gZeta = gradients.Zeta[n], gBBar = gradients.BBar[n];
            Complex gA = (dt * gZeta) + (dt * dt * Complex.Conjugate(StateSpaceMath.Phi1Derivative(DtA[n])) * gBBar);
            dDt += (Complex.Conjugate(gZeta) * A).Real + (Complex.Conjugate(gBBar) * ABar[n]).Real;
            dAReal[n] += gA.Real;
            dCReal[n] += gradients.C[n].Real;
            if (!dAImag.IsEmpty)
            {
                dAImag[n] += gA.Imaginary;
                dCImag[n] += gradients.C[n].Imaginary;
            }
        }
        head.Row("dlog_dt")[0] += dt * dDt;
        if (problem.Has("D"))
        {
            head.Row("dD")[0] += gradients.D;
        }
    }
}

/// <summary>
/// The gradients of one diagonal SSM's discretised quantities, per mode, as complex gradients g = ∂L/∂Re + i·∂L/∂Im:
/// ζ_n = dt·A_n, B̄_n, C_n; and of its skip D. <see cref="DiagonalSsm.WriteGradients"/> carries them to the parameters.
/// </summary>
public sealed class ModeGradients(int modes)
{
    /// <summary>g_ζ per mode.</summary>
    public Complex[] Zeta { get; } = new Complex[modes];

    /// <summary>g_B̄ per mode.</summary>
    public Complex[] BBar { get; } = new Complex[modes];

    /// <summary>g_C per mode.</summary>
    public Complex[] C { get; } = new Complex[modes];

    /// <summary>dL/dD.</summary>
    public double D { get; set; }
}
