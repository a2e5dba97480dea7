using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The kernels of Forms/StateSpace/DiagonalSsm.cs, shared by s4d and h3: the zero-order-hold discretisation of each
/// channel's (or head's) modes, and the convolution kernel of the convolution variants.
/// <code>
///   dt = exp(log_dt_h),  dtA = dt·A_hn,  Ā = exp(dtA),  B̄ = dt·expm1(dtA)/dtA  (dt when dtA = 0)       Discretise
///   K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n)),  exp(l·dtA) = e^{l·Re dtA}·(cos + i sin)(l·Im dtA)        ConvolutionKernel
/// </code>
/// Discretise runs one thread per (h, n); ConvolutionKernel one thread per (l, h), which takes exp(l·dtA) directly at
/// its own l (the reference's angle-addition formulas save evaluations on one core; one thread per lag needs none) and
/// sums over the modes in the reference's order.
/// </summary>
internal static class DiagonalSsmKernels
{
    /// <summary>DiagonalSsm.Of for mode n of channel or head h: dtA, Ā, B̄, C and C·B̄.</summary>
    public static void Discretise<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int h = thread / x.N, n = thread % x.N, hn = x.Mode(h, n);
        Real dt = GpuMath.Exp(x.LogDt[h]);
        Complex<Real> dtA = dt * x.A(h, n);
        x.DtA[hn] = dtA;
        x.ABar[hn] = Complex<Real>.Exp(dtA);
        // ZOH with B = 1: B̄ = dt·(e^{dtA} − 1)/dtA, through an accurate e^z − 1 (tiny dt stays exact)
        Complex<Real> bBar = dtA.IsZero ? new Complex<Real>(dt, Real.Zero) : dt * StateSpaceMath.ExpM1(dtA) / dtA;
        x.BBar[hn] = bBar;
        Complex<Real> c = x.CInput(h, n);
        x.C[hn] = c;
        x.CB[hn] = c * bBar;
    }

    /// <summary>DiagonalSsm.Kernel at lag l for channel or head h: K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n)).</summary>
    public static void ConvolutionKernel<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int l = thread / x.H, h = thread % x.H;
        Real lag = StateSpaceMath.Whole<Real>(l), kernel = Real.Zero;
        for (int n = 0; n < x.N; n++)
        {
            Complex<Real> cb = x.CB[x.Mode(h, n)], dtA = x.DtA[x.Mode(h, n)];
            Real magnitude = GpuMath.Exp(lag * dtA.Re), angle = lag * dtA.Im;
            // Re(C_n B̄_n exp(l·dtA_n))
            kernel += x.PairFactor * ((cb.Re * (magnitude * GpuMath.Cos(angle))) - (cb.Im * (magnitude * GpuMath.Sin(angle))));
        }
        x.Kernel[x.Lag(l, h)] = kernel;
    }
}
