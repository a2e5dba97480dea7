using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// One call of a bank of H diagonal SSMs of N modes (s4d's channels, h3's heads) as the kernels read it
/// (DiagonalSsmKernels.cs, S4dKernels.cs, H3Kernels.cs): the sizes, a view of every tensor in the inputs' layout, the
/// discretisation and the convolution kernel, and the index arithmetic, named.
/// <code>
/// log_dt [H]   A_real, C_real [H,N]   A_imag, C_imag [H,N] (absent with real_a: 0)   D [H] (absent: 0)
/// dtA, Ā, B̄, C, C·B̄ [H,N] (complex, from Discretise)   K [T,H] (the convolution kernel K_l of channel or head h)
/// s4d: u, o [B,T,H]; fft: the twiddles [2, n/2] (forward, inverse) and the transforms of u and K [n, B·H]
/// h3:  q, k, v, k̃, o [B,T,H,d]   shift_kernel [H,d,M]   shift_D [H,d] (absent: 0)   y [T,B,H,d] (responses, see H3Kernels)
/// </code>
/// </summary>
internal struct DiagonalSsmProblem<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    /// <summary>The batch B, the steps T, the SSMs H (s4d's channels, h3's heads) and the modes N.</summary>
    public int B, T, H, N;

    /// <summary>h3: the head dimension d and the shift taps M.</summary>
    public int Dh, M;

    /// <summary>fft: the transform length n, a power of two ≥ 2T.</summary>
    public int FftLength;

    /// <summary>f: 2 for conjugate pairs (y = 2·Re(C x)), 1 for real modes (real_a).</summary>
    public Real PairFactor;

    /// <summary>The SSMs' parameters.</summary>
    public ArrayView<Real> LogDt, AReal, AImag, CReal, CImag, D;

    /// <summary>The discretisation, per (h, n): dt·A, Ā = exp(dt·A), B̄ = (exp(dt·A) − 1)/A, C and C·B̄.</summary>
    public ArrayView<Complex<Real>> DtA, ABar, BBar, C, CB;

    /// <summary>K_l = f·Re(Σ_n C_n B̄_n exp(l·dtA_n)), [T,H].</summary>
    public ArrayView<Real> Kernel;

    /// <summary>s4d's input and every form's output o.</summary>
    public ArrayView<Real> U, O;

    /// <summary>fft: the twiddles (forward then inverse) and the transforms of u and K, per (b, h).</summary>
    public ArrayView<Complex<Real>> Twiddles, UF, KF;

    /// <summary>h3's inputs, k̃ = SSM_shift(k) + shift_D k, and the scratch y of the recurrent variant.</summary>
    public ArrayView<Real> Q, K, V, Taps, ShiftD, KShifted, Y;

    /// <summary>The index of (h, n) in the [H,N] tensors.</summary>
    public readonly int Mode(int h, int n) => h * N + n;

    /// <summary>A_hn as a complex number (its imaginary part 0 with real_a).</summary>
    public readonly Complex<Real> A(int h, int n) => new(AReal[Mode(h, n)], AImag.Length > 0 ? AImag[Mode(h, n)] : Real.Zero);

    /// <summary>C_hn as a complex number (its imaginary part 0 with real_a).</summary>
    public readonly Complex<Real> CInput(int h, int n) => new(CReal[Mode(h, n)], CImag.Length > 0 ? CImag[Mode(h, n)] : Real.Zero);

    /// <summary>D_h, 0 if absent.</summary>
    public readonly Real Skip(int h) => D.Length > 0 ? D[h] : Real.Zero;

    /// <summary>The index of u_t and o_t of batch entry b, channel h (s4d, [B,T,H]).</summary>
    public readonly long Channel(int b, int t, int h) => ((long)b * T + t) * H + h;

    /// <summary>The index of K_l of channel or head h ([T,H]).</summary>
    public readonly int Lag(int l, int h) => l * H + h;

    /// <summary>The index of q_t[i], k_t[i], v_t[i], k̃_t[i] and o_t[i] of batch entry b, head h (h3, [B,T,H,d]).</summary>
    public readonly long Row(int b, int t, int h, int i) => (((long)b * T + t) * H + h) * Dh + i;

    /// <summary>The index of shift_kernel[h, i, m].</summary>
    public readonly int Tap(int h, int i, int m) => (h * Dh + i) * M + m;

    /// <summary>
    /// The index of y_t of h3's value column j of (b, h), item = (b·H + h)·d + j ([T,B,H,d]: neighbouring items, which
    /// neighbouring threads own, at neighbouring addresses).
    /// </summary>
    public readonly long Response(int item, int t) => (long)t * B * H * Dh + item;

    /// <summary>The index of element i of the fft transforms of (b, h), bh = b·H + h ([n, B·H]).</summary>
    public readonly long Spectrum(int bh, int i) => (long)i * B * H + bh;
}
