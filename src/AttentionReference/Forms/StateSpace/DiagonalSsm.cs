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
            Complex cb = C[n] * BBar[n], dtA = DtA[n];
            for (int l = 0; l < length; l++)
            {
                magnitude[l] = l * dtA.Real;
            }
            VectorKernels.Exp(magnitude, magnitude);
            StateSpaceMath.CosSinOfMultiples(dtA.Imaginary, cos, sin);
            for (int l = 0; l < length; l++)
            {
                // Re(C_n B̄_n exp(l·dtA_n))
                kernel[l] += PairFactor * ((cb.Real * (magnitude[l] * cos[l])) - (cb.Imaginary * (magnitude[l] * sin[l])));
            }
        }
        return kernel;
    }
}
