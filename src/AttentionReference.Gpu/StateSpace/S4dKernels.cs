using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The kernels of Forms/StateSpace/S4d.cs, after DiagonalSsmKernels.Discretise (and ConvolutionKernel for the
/// convolution and fft variants). Per channel h and mode n, f = 2 for conjugate pairs (1 with real_a):
/// <code>
///   recurrent    x_t = Ā x_{t−1} + B̄ u_t,  x_{−1} = 0,   o_t = Σ_n f·Re(C_n x_{t,n}) + D u_t        Recurrent
///   convolution  o_t = Σ_{l=0..t} K_l u_{t−l} + D u_t                                              Convolution
///   fft          the same sum as IFFT(FFT(u ⊕ 0)·FFT(K ⊕ 0))[t] over n ≥ 2T points (radix 2)       FftTwiddles, FftConvolution
/// </code>
/// Recurrent is one thread per (b, h), which runs the modes one after another as the reference's Respond does, adding
/// each mode's term to o_t (so every o_t sums the modes in the reference's order) and then D u_t. Convolution is one
/// thread per (b, t, h), summing over the lags l = 0..t in order. The fft variant is one thread per (b, h) too, which
/// runs the reference's radix-2 transform (StateSpaceMath.Fft: bit reversal, then stages of butterflies with the
/// twiddles of the exact angles), its transforms laid out [n, B·H] so that neighbouring threads touch neighbouring
/// addresses.
/// </summary>
internal static class S4dKernels
{
    /// <summary>S4d.Recurrent for batch entry b, channel h: Respond mode by mode into o, then o_t += D u_t.</summary>
    public static void Recurrent<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int b = thread / x.H, h = thread % x.H;
        for (int n = 0; n < x.N; n++)
        {
            int hn = x.Mode(h, n);
            Complex<Real> ABar = x.ABar[hn], BBar = x.BBar[hn], C = x.C[hn], state = Complex<Real>.Zero;
            for (int t = 0; t < x.T; t++)
            {
                long bth = x.Channel(b, t, h);
                // x_{t,n} = Ā_n x_{t−1,n} + B̄_n u_t,   y_t += f·Re(C_n x_{t,n})
                state = (ABar * state) + (BBar * x.U[bth]);
                x.O[bth] += x.PairFactor * (C * state).Re;
            }
        }
        for (int t = 0; t < x.T; t++)
        {
            long bth = x.Channel(b, t, h);
            x.O[bth] = x.O[bth] + (x.Skip(h) * x.U[bth]); // o_t = y_t + D u_t
        }
    }

    /// <summary>S4d.Convolution at step t of batch entry b, channel h: o_t = Σ_{l=0..t} K_l u_{t−l} + D u_t.</summary>
    public static void Convolution<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int h = thread % x.H, t = thread / x.H % x.T, b = thread / x.H / x.T;
        Real y = Real.Zero;
        for (int l = 0; l <= t; l++)
        {
            y += x.Kernel[x.Lag(l, h)] * x.U[x.Channel(b, t - l, h)];
        }
        x.O[x.Channel(b, t, h)] = y + (x.Skip(h) * x.U[x.Channel(b, t, h)]);
    }

    /// <summary>
    /// StateSpaceMath.Twiddles of the n-point transform, w_j = exp(∓2πi·j/n) for j &lt; n/2, forward (−) then inverse
    /// (+), each from cos and sin of its exact angle: one thread per j.
    /// </summary>
    public static void FftTwiddles<Real>(Index1D j, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real n = StateSpaceMath.Whole<Real>(x.FftLength), forward = -Real.Tau * StateSpaceMath.Whole<Real>(j) / n, inverse = -forward;
        x.Twiddles[j] = new Complex<Real>(GpuMath.Cos(forward), GpuMath.Sin(forward));
        x.Twiddles[(x.FftLength / 2) + j] = new Complex<Real>(GpuMath.Cos(inverse), GpuMath.Sin(inverse));
    }

    /// <summary>
    /// FftConvolution.Convolve for batch entry b, channel h: u and K zero-padded to n points and placed in bit-reversed
    /// order, both transformed, multiplied, transformed back (placed in bit-reversed order again, with the inverse
    /// twiddles, divided by n), and o_t = Re(y_t) + D u_t.
    /// </summary>
    public static void FftConvolution<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int b = thread / x.H, h = thread % x.H, n = x.FftLength, bits = Log2(n);
        for (int i = 0; i < n; i++)
        {
            long r = x.Spectrum(thread, Reverse(i, bits));
            x.UF[r] = new Complex<Real>(i < x.T ? x.U[x.Channel(b, i, h)] : Real.Zero, Real.Zero);
            x.KF[r] = new Complex<Real>(i < x.T ? x.Kernel[x.Lag(i, h)] : Real.Zero, Real.Zero);
        }
        Stages(x, x.UF, thread, 0);
        Stages(x, x.KF, thread, 0);
        for (int i = 0; i < n; i++)
        {
            long at = x.Spectrum(thread, i);
            x.KF[at] = x.UF[at] * x.KF[at]; // FFT(u)·FFT(K)
        }
        for (int i = 0; i < n; i++)
        {
            x.UF[x.Spectrum(thread, Reverse(i, bits))] = x.KF[x.Spectrum(thread, i)];
        }
        Stages(x, x.UF, thread, n / 2);
        Real length = StateSpaceMath.Whole<Real>(n);
        for (int t = 0; t < x.T; t++)
        {
            long bth = x.Channel(b, t, h);
            x.O[bth] = (x.UF[x.Spectrum(thread, t)] / length).Re + (x.Skip(h) * x.U[bth]);
        }
    }

    /// <summary>
    /// The butterfly stages of StateSpaceMath.Fft on the bit-reversed transform <paramref name="v"/> of (b, h), with
    /// the twiddles from <paramref name="twiddles"/> on (0 forward, n/2 inverse): the stage of length L uses w_{m·n/L}.
    /// </summary>
    private static void Stages<Real>(DiagonalSsmProblem<Real> x, ArrayView<Complex<Real>> v, int bh, int twiddles)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int n = x.FftLength;
        for (int length = 2; length <= n; length <<= 1)
        {
            int half = length / 2, stride = n / length;
            for (int start = 0; start < n; start += length)
            {
                for (int m = 0; m < half; m++)
                {
                    Butterfly(v, x.Spectrum(bh, start + m), x.Spectrum(bh, start + m + half), x.Twiddles[twiddles + (m * stride)]);
                }
            }
        }
    }

    /// <summary>(x_e, x_o) ← (x_e + w·x_o, x_e − w·x_o).</summary>
    private static void Butterfly<Real>(ArrayView<Complex<Real>> v, long e, long o, Complex<Real> w) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Complex<Real> even = v[e], odd = w * v[o];
        v[e] = even + odd;
        v[o] = even - odd;
    }

    /// <summary>log2 of the power of two <paramref name="n"/>.</summary>
    private static int Log2(int n)
    {
        int bits = 0;
        while ((1 << bits) < n)
        {
            bits++;
        }
        return bits;
    }

    /// <summary>The lowest <paramref name="bits"/> bits of <paramref name="i"/> in reverse order.</summary>
    private static int Reverse(int i, int bits)
    {
        int r = 0;
        for (int k = 0; k < bits; k++)
        {
            r = (r << 1) | ((i >> k) & 1);
        }
        return r;
    }
}
