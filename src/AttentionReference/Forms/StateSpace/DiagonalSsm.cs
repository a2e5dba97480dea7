using System.Numerics;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// The parameters of a bank of H diagonal SSMs with N modes each, in S4D's parameterisation (state-spaces/s4
/// models/s4/s4d.py): dt = exp(log_dt) [H], A = A_real + i·A_imag [H,N], C = C_real + i·C_imag [H,N] (B folded
/// into C), D [H] (skip; zero if absent). With <see cref="RealA"/>, A_imag and C_imag are absent and the modes are
/// real (S4D-Real): y = C x instead of 2·Re(C x). s4d.py keeps log_A_real and sets A_real = −exp(log_A_real); we
/// take A_real itself, so any sign is accepted (positive A_real grows, as the math says).
/// </summary>
public sealed record DiagonalSsm(Tensor LogDt, Tensor AReal, Tensor? AImag, Tensor CReal, Tensor? CImag, Tensor? D = null, bool RealA = false)
{
    /// <summary>Checks the shapes against the channel count H (bound in <paramref name="dims"/> or bound here).</summary>
    internal void Bind(Dims dims)
    {
        dims.Bind("log_dt", Dims.RequireFloat("log_dt", LogDt), "H");
        dims.Bind("A_real", Dims.RequireFloat("A_real", AReal), "H,N");
        dims.Bind("C_real", Dims.RequireFloat("C_real", CReal), "H,N");
        if (RealA)
        {
            if (AImag is not null || CImag is not null)
            {
                throw new InputException("real_a is set, so A_imag and C_imag must be absent", tensor: AImag is not null ? "A_imag" : "C_imag");
            }
        }
        else
        {
            dims.Bind("A_imag", Dims.RequireFloat("A_imag", AImag ?? throw new InputException("required unless real_a is set", tensor: "A_imag")), "H,N");
            dims.Bind("C_imag", Dims.RequireFloat("C_imag", CImag ?? throw new InputException("required unless real_a is set", tensor: "C_imag")), "H,N");
        }
        if (D is not null)
        {
            dims.Bind("D", Dims.RequireFloat("D", D), "H");
        }
    }

    /// <summary>2 for conjugate pairs (y = 2·Re(C x)), 1 for real modes.</summary>
    internal double PairFactor => RealA ? 1 : 2;

    /// <summary>dtA = exp(log_dt_h)·A_hn.</summary>
    internal Complex DtA(int h, int n, int modes) =>
        Math.Exp(LogDt.Data[h]) * new Complex(AReal.Data[(h * modes) + n], AImag?.Data[(h * modes) + n] ?? 0);

    /// <summary>ZOH: Ā = exp(dtA).</summary>
    internal Complex ABar(int h, int n, int modes) => Complex.Exp(DtA(h, n, modes));

    /// <summary>ZOH with B = 1: B̄ = (exp(dtA) − 1)/A = dt·(e^{dtA} − 1)/dtA, through an accurate e^z − 1 (tiny dt stays exact).</summary>
    internal Complex BBar(int h, int n, int modes)
    {
        Complex dtA = DtA(h, n, modes);
        double dt = Math.Exp(LogDt.Data[h]);
        return dtA == Complex.Zero ? dt : dt * StateSpaceMath.ExpM1(dtA) / dtA;
    }

    /// <summary>C_hn.</summary>
    internal Complex C(int h, int n, int modes) => new(CReal.Data[(h * modes) + n], CImag?.Data[(h * modes) + n] ?? 0);

    /// <summary>D_h, 0 if absent.</summary>
    internal double Skip(int h) => D?.Data[h] ?? 0;

    /// <summary>
    /// The convolution kernel of channel h over L steps: K_l = f·Re(Σ_n C_n B̄_n exp(l·dtA_n)), f = 2 (pairs) or 1,
    /// with exp(l·dtA) taken directly at each l, as s4d.py does (no running product):
    /// exp(l·dtA) = e^{l·Re dtA}·(cos(l·Im dtA) + i sin(l·Im dtA)), the magnitudes for all l at once, the phases from
    /// <see cref="StateSpaceMath.CosSinOfMultiples"/>.
    /// </summary>
    internal double[] Kernel(int h, int length)
    {
        int modes = AReal.Dim(1);
        var kernel = new double[length];
        double[] magnitude = new double[length], cos = new double[length], sin = new double[length];
        for (int n = 0; n < modes; n++)
        {
            Complex cb = C(h, n, modes) * BBar(h, n, modes), dtA = DtA(h, n, modes);
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

    /// <summary>
    /// The recurrence of channel h over one input sequence: x_t = Ā x_{t−1} + B̄ u_t, y_t = f·Re(C x_t) (no D),
    /// x_{−1} = 0.
    /// </summary>
    internal double[] Recur(int h, double[] u)
    {
        int modes = AReal.Dim(1);
        var y = new double[u.Length];
        for (int n = 0; n < modes; n++)
        {
            Complex aBar = ABar(h, n, modes), bBar = BBar(h, n, modes), c = C(h, n, modes), x = Complex.Zero;
            for (int t = 0; t < u.Length; t++)
            {
                x = aBar * x + bBar * u[t];
                y[t] += PairFactor * (c * x).Real;
            }
        }
        return y;
    }
}
