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
///                a few ε per value whatever l, never a running product; see StateSpaceMath.CosSinOfMultiples)
///   fft          the same convolution through a radix-2 complex FFT of size n = the power of two ≥ 2T (zero
///                padding, so no wrap-around): o = IFFT(FFT(u)·FFT(K))[0,T). The FFT is written here in a few
///                readable lines (StateSpaceMath.Fft, in double, twiddles from cos/sin of the exact angle) rather
///                than taken from a package: the reference must need no dependency and be readable end to end.
///                Its roundoff is about log2(n)·ε·‖K‖₂·‖u‖₂ per output (ε = 2^-53), unlike the direct sum's
///                t·ε·max|K|·max|u|; the tests hold fft to convolution within 16·log2(n)·ε·‖K‖₂‖u‖₂.
/// </code>
/// Sources: Gu, Gupta, Goel, Ré 2022, "On the Parameterization and Initialization of Diagonal State Space Models"
/// (S4D; the kernel K = 2·Re(C̃ ⊙ B̄) · V_L(Ā), ZOH) and its reference code state-spaces/s4 models/s4/s4d.py
/// (S4DKernel: dt = exp(log_dt), A = −exp(log_A_real) + i·A_imag, C complex with B folded in,
/// dtA = dt·A, K = 2·Re(C·(exp(dtA) − 1)/A · exp(dtA·l)), y = irfft(rfft(u, 2L)·rfft(K, 2L))[:L] + D·u).
/// Our choices: we take A_real itself (s4d.py's −exp(log_A_real)), so any A is accepted; B̄ is computed as
/// dt·expm1(dt·A)/(dt·A) with an accurate complex expm1 so that tiny dt loses nothing; no initial state (s4d.py's
/// kernel has none); s4d.py's activation, dropout and output linear layer are outside the form.
/// </summary>
public static class S4d
{
    /// <summary>The recurrence, step by step: the definition.</summary>
    public static Tensor Recurrent(Tensor u, DiagonalSsm ssm) =>
        PerChannel(u, ssm, (h, series) => ssm.Recur(h, series));

    /// <summary>The causal convolution with K_l = 2·Re(C B̄ Ā^l), summed directly.</summary>
    public static Tensor Convolution(Tensor u, DiagonalSsm ssm) =>
        PerChannel(u, ssm, (h, series) => StateSpaceMath.DirectConvolve(ssm.Kernel(h, series.Length), series));

    /// <summary>The same convolution through a radix-2 FFT of size ≥ 2T.</summary>
    public static Tensor Fft(Tensor u, DiagonalSsm ssm)
    {
        var fft = new FftConvolution(Bind(u, ssm)["T"]);
        return PerChannel(u, ssm, (h, series) => fft.Convolve(ssm.Kernel(h, series.Length), series));
    }

    /// <summary>The convolution kernel K [H, L] (K_l = 2·Re(Σ_n C_n B̄_n Ā_n^l), or Σ_n C_n B̄_n Ā_n^l with real_a).</summary>
    public static Tensor Kernel(DiagonalSsm ssm, int length)
    {
        ArgumentNullException.ThrowIfNull(ssm);
        ssm.Bind(new Dims());
        int channels = ssm.LogDt.Dim(0);
        var kernel = Tensor.Zeros(channels, length);
        for (int h = 0; h < channels; h++)
        {
            ssm.Kernel(h, length).CopyTo(kernel.Data, h * length);
        }
        return kernel;
    }

    /// <summary>Checks every input's shape; the bound symbols B, T, H, N.</summary>
    internal static Dims Bind(Tensor u, DiagonalSsm ssm)
    {
        ArgumentNullException.ThrowIfNull(ssm);
        var dims = new Dims();
        dims.Bind("u", Dims.RequireFloat("u", u), "B,T,H");
        ssm.Bind(dims);
        return dims;
    }

    /// <summary>Runs <paramref name="channel"/> on every (batch entry, channel) series of u and adds D u.</summary>
    private static Tensor PerChannel(Tensor u, DiagonalSsm ssm, Func<int, double[], double[]> channel)
    {
        var dims = Bind(u, ssm);
        int batch = dims["B"], time = dims["T"], channels = dims["H"];
        var o = Tensor.Zeros(batch, time, channels);
        Parallel.For(0, batch * channels, index =>
        {
            int b = index / channels, h = index % channels;
            var series = new double[time]; // u[b, :, h]
            for (int t = 0; t < time; t++)
            {
                series[t] = u.Data[(((b * time) + t) * channels) + h];
            }
            double[] y = channel(h, series);
            double skip = ssm.Skip(h);
            for (int t = 0; t < time; t++)
            {
                o.Data[(((b * time) + t) * channels) + h] = y[t] + skip * series[t];
            }
        });
        return o;
    }
}
