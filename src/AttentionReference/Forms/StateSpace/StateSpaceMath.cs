using System.Numerics;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// The scalar functions the state-space forms share: softplus and SiLU as mamba computes them, an accurate e^x − 1
/// (real and complex) for the ZOH discretisation at tiny Δ, and a radix-2 FFT for s4d's fft variant.
/// </summary>
internal static class StateSpaceMath
{
    /// <summary>The pair's value of an optional per-channel tensor (D, delta_bias, dt_bias): 0 where it was left out.</summary>
    public static double ScalarOrZero(this Head head, string name) => head.Problem.Has(name) ? head.Scalar(name) : 0;

    /// <summary>y · silu(z), mamba's output gate; y itself where there is no z.</summary>
    public static double Gated(double y, double? z) => z is { } gate ? y * Silu(gate) : y;

    /// <summary>
    /// softplus(x) = log(1 + e^x), and x itself above 20: torch's F.softplus (threshold 20) and mamba's CUDA kernels
    /// (<c>delta &lt;= 20 ? log1pf(expf(delta)) : delta</c>) both switch there.
    /// </summary>
    public static double Softplus(double x) => x > 20 ? x : x > 0 ? x + Log1p(Math.Exp(-x)) : Log1p(Math.Exp(x));

    /// <summary>silu(z) = z · sigmoid(z).</summary>
    public static double Silu(double z) => z >= 0 ? z / (1 + Math.Exp(-z)) : z * Math.Exp(z) / (1 + Math.Exp(z));

    /// <summary>sigmoid(x) = 1/(1 + e^−x), without overflow for either sign.</summary>
    public static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));

    /// <summary>d softplus(x)/dx: sigmoid(x), and 1 above 20, where <see cref="Softplus"/> is x itself.</summary>
    public static double SoftplusDerivative(double x) => x > 20 ? 1 : Sigmoid(x);

    /// <summary>silu'(z) = σ(z)·(1 + z·(1 − σ(z))).</summary>
    public static double SiluDerivative(double z)
    {
        double s = Sigmoid(z);
        return s * (1 + (z * (1 - s)));
    }

    /// <summary>
    /// The gate's backward at one value: o = y·silu(z) gives dy = do·silu(z) and dz = do·y·silu'(z); without z (null),
    /// dy = do and dz = 0.
    /// </summary>
    public static (double Dy, double Dz) GatedBackward(double y, double? z, double dO) =>
        z is { } gate ? (dO * Silu(gate), dO * y * SiluDerivative(gate)) : (dO, 0);

    /// <summary>
    /// φ₁'(ζ) for φ₁(ζ) = (e^ζ − 1)/ζ, the ZOH factor of B̄ = dt·φ₁(dt·A): (e^ζ(ζ − 1) + 1)/ζ², whose numerator cancels
    /// to ζ²/2 near 0, so for |ζ| &lt; 1 its Taylor series Σ_k (k+1)/(k+2)!·ζ^k instead (20 terms: the next is below
    /// 1e-19 of the first).
    /// </summary>
    public static Complex Phi1Derivative(Complex ζ)
    {
        if (Complex.Abs(ζ) >= 1)
        {
            return ((Complex.Exp(ζ) * (ζ - 1)) + 1) / (ζ * ζ);
        }
        Complex sum = Complex.Zero;
        for (int k = Phi1DerivativeSeries.Length - 1; k >= 0; k--)
        {
            sum = (sum * ζ) + Phi1DerivativeSeries[k]; // Horner
        }
        return sum;
    }

    /// <summary>c_k = (k+1)/(k+2)! for k &lt; 20, the Taylor coefficients of φ₁'.</summary>
    private static readonly double[] Phi1DerivativeSeries = Enumerable.Range(0, 20)
        .Select(k => (k + 1) / Enumerable.Range(2, k + 1).Aggregate(1.0, (f, i) => f * i)).ToArray();

    /// <summary>log(1 + x) accurate for small x (Goldberg's trick: the rounding of 1 + x is divided back out).</summary>
    public static double Log1p(double x)
    {
        double w = 1 + x;
        return w == 1 ? x : Math.Log(w) * x / (w - 1);
    }

    /// <summary>e^x − 1 accurate for small x (Kahan's trick), which .NET's Math lacks.</summary>
    public static double ExpM1(double x)
    {
        double w = Math.Exp(x);
        if (w == 1)
        {
            return x;
        }
        double wm1 = w - 1;
        return wm1 == -1 ? -1 : double.IsInfinity(w) ? w : wm1 * x / Math.Log(w);
    }

    /// <summary>
    /// e^z − 1 for complex z = a + ib without cancellation near 0:
    /// Re = expm1(a)·cos b − 2 sin²(b/2),  Im = e^a sin b.
    /// </summary>
    public static Complex ExpM1(Complex z)
    {
        double half = Math.Sin(z.Imaginary / 2);
        return new Complex(ExpM1(z.Real) * Math.Cos(z.Imaginary) - 2 * half * half, Math.Exp(z.Real) * Math.Sin(z.Imaginary));
    }

    /// <summary>
    /// cos(l·θ) and sin(l·θ) for l = 0 … L−1 (L = cos.Length), each from two directly-taken angles rather than a
    /// running product: with S = ⌈√L⌉ and l = mS + j (j &lt; S), the angle-addition formulas on cos/sin(mS·θ) and
    /// cos/sin(j·θ), about 2√L evaluations instead of L. Each value is off by a few ε (the two angles round separately
    /// as l·θ rounds once, and one product of unit values rounds once more), whatever l: the error does not grow.
    /// θ = 0 gives cos = 1, sin = 0 exactly.
    /// </summary>
    public static void CosSinOfMultiples(double θ, Span<double> cos, Span<double> sin)
    {
        int length = cos.Length;
        if (θ == 0)
        {
            cos.Fill(1);
            sin.Clear();
            return;
        }
        int S = Math.Max(1, (int)Math.Ceiling(Math.Sqrt(length)));
        var (cosJ, sinJ) = (new double[S], new double[S]);
        for (int j = 0; j < S; j++)
        {
            (sinJ[j], cosJ[j]) = Math.SinCos(j * θ);
        }
        for (int m = 0; m * S < length; m++)
        {
            var (sinM, cosM) = Math.SinCos((double)(m * S) * θ);
            for (int j = 0, l = m * S; j < S && l < length; j++, l++)
            {
                // cos(a + b) = cos a cos b − sin a sin b,  sin(a + b) = sin a cos b + cos a sin b
                cos[l] = (cosM * cosJ[j]) - (sinM * sinJ[j]);
                sin[l] = (sinM * cosJ[j]) + (cosM * sinJ[j]);
            }
        }
    }

    /// <summary>
    /// The twiddles of an n-point transform, w_j = exp(∓2πi·j/n) for j &lt; n/2 (− forward, + inverse), each from
    /// cos/sin of its exact angle. Stage <c>length</c> of the transform uses w_{m·n/length} = exp(∓2πi·m/length):
    /// n/length is a power of two, so the angle ∓2π·(m·n/length)/n is bit for bit the angle ∓2π·m/length.
    /// </summary>
    public static Complex[] Twiddles(int n, bool inverse)
    {
        double sign = inverse ? 1 : -1;
        var w = new Complex[n / 2];
        for (int j = 0; j < w.Length; j++)
        {
            double angle = sign * 2 * Math.PI * j / n;
            w[j] = new Complex(Math.Cos(angle), Math.Sin(angle));
        }
        return w;
    }

    /// <summary>
    /// In-place radix-2 complex FFT (iterative Cooley–Tukey, bit reversal first) of a power-of-two length, with the
    /// <paramref name="twiddles"/> of <see cref="Twiddles"/> for that length and direction; the inverse
    /// (<paramref name="inverse"/>) divides by the length. Twiddles are cos/sin of the exact angle rather than
    /// repeated products, so the roundoff of the whole transform stays about log2(n)·ε relative to ‖x‖₂.
    /// </summary>
    public static void Fft(Complex[] x, Complex[] twiddles, bool inverse)
    {
        int n = x.Length;
        if (n == 0 || (n & (n - 1)) != 0)
        {
            throw new ArgumentException("FFT length must be a power of two", nameof(x));
        }
        if (twiddles.Length != n / 2)
        {
            throw new ArgumentException("the twiddles must be those of the FFT length", nameof(twiddles));
        }
        for (int i = 1, j = 0; i < n; i++)
        {
            int bit = n >> 1;
            for (; (j & bit) != 0; bit >>= 1)
            {
                j ^= bit;
            }
            j |= bit;
            if (i < j)
            {
                (x[i], x[j]) = (x[j], x[i]);
            }
        }
        for (int length = 2; length <= n; length <<= 1)
        {
            int stride = n / length; // w_{m·stride} = exp(∓2πi·m/length)
            for (int start = 0; start < n; start += length)
            {
                for (int m = 0; m < length / 2; m++)
                {
                    Complex w = twiddles[m * stride];
                    Complex even = x[start + m], odd = w * x[start + m + length / 2];
                    x[start + m] = even + odd;
                    x[start + m + length / 2] = even - odd;
                }
            }
        }
        if (inverse)
        {
            for (int i = 0; i < n; i++)
            {
                x[i] /= n;
            }
        }
    }

    /// <summary>The smallest power of two ≥ <paramref name="atLeast"/>.</summary>
    public static int PowerOfTwo(int atLeast)
    {
        int n = 1;
        while (n < atLeast)
        {
            n <<= 1;
        }
        return n;
    }

    /// <summary>
    /// The transpose of the causal convolution, summed directly: r_l = Σ_{t=l..T−1} a_t b_{t−l} for l &lt; T. With
    /// y = K * u and its cotangent dy: dK = Correlate(dy, u) and du = Correlate(dy, K).
    /// </summary>
    public static double[] Correlate(double[] a, double[] b)
    {
        var r = new double[a.Length];
        for (int l = 0; l < a.Length; l++)
        {
            r[l] = VectorKernels.Dot(a.AsSpan(l), b.AsSpan(0, a.Length - l));
        }
        return r;
    }

    /// <summary>
    /// Causal convolution y_t = Σ_{l=0..t} K_l u_{t−l}, summed directly: for l = 0, 1, … in turn, y[l..] += K_l·u[..T−l],
    /// so every y_t still adds its terms in the order l = 0, 1, …, t.
    /// </summary>
    public static double[] DirectConvolve(double[] kernel, double[] u)
    {
        var y = new double[u.Length];
        for (int l = 0; l < u.Length; l++)
        {
            VectorKernels.Axpy(kernel[l], u.AsSpan(0, u.Length - l), y.AsSpan(l));
        }
        return y;
    }
}

/// <summary>
/// Causal convolutions y_t = Σ_{l=0..t} K_l u_{t−l} of series of <c>length</c> T steps through an FFT of size n ≥ 2T
/// (no wrap-around): y = IFFT(FFT(u ⊕ 0) · FFT(K ⊕ 0))[0, T), the twiddles of both directions taken once for all.
/// </summary>
internal sealed class FftConvolution
{
    private readonly int _n;
    private readonly Complex[] _forward, _inverse;

    public FftConvolution(int length)
    {
        _n = StateSpaceMath.PowerOfTwo(2 * Math.Max(length, 1));
        (_forward, _inverse) = (StateSpaceMath.Twiddles(_n, inverse: false), StateSpaceMath.Twiddles(_n, inverse: true));
    }

    /// <summary>The convolution of one channel's <paramref name="u"/> (T steps) with its <paramref name="kernel"/>.</summary>
    public double[] Convolve(double[] kernel, double[] u)
    {
        var uf = new Complex[_n];
        var kf = new Complex[_n];
        for (int t = 0; t < u.Length; t++)
        {
            uf[t] = u[t];
            kf[t] = kernel[t];
        }
        StateSpaceMath.Fft(uf, _forward, inverse: false);
        StateSpaceMath.Fft(kf, _forward, inverse: false);
        for (int i = 0; i < _n; i++)
        {
            uf[i] *= kf[i];
        }
        StateSpaceMath.Fft(uf, _inverse, inverse: true);
        return uf.Take(u.Length).Select(c => c.Real).ToArray();
    }

    /// <summary>
    /// The transpose of <see cref="Convolve"/>, r_l = Σ_{t≥l} a_t b_{t−l} (see <see cref="StateSpaceMath.Correlate"/>),
    /// through the same transforms: with a reversed in time it is a convolution, r = reverse(b * reverse(a)).
    /// </summary>
    public double[] Correlate(double[] a, double[] b)
    {
        double[] reversed = a.Reverse().ToArray();
        return Convolve(b, reversed).Reverse().ToArray();
    }
}
