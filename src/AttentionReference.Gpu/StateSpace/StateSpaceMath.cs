using System.Numerics;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The scalar functions of Forms/StateSpace/StateSpaceMath.cs on the device, written as the reference writes them (the
/// same branches and operations, through <see cref="GpuMath"/>): softplus and SiLU as mamba computes them, Goldberg's
/// log(1 + x) and Kahan's e^x − 1 (real and complex) for the ZOH discretisation at tiny steps.
/// </summary>
internal static class StateSpaceMath
{
    /// <summary>
    /// <paramref name="n"/> as a real number, exactly (|n| &lt; 2^24 in float): its binary digits' powers of two summed.
    /// CoreLib's generic conversions box their argument, which ILGPU cannot compile.
    /// </summary>
    public static Real Whole<Real>(int n) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real value = Real.Zero, power = Real.One;
        for (int m = Math.Abs(n); m > 0; m >>= 1)
        {
            if ((m & 1) != 0)
            {
                value += power;
            }
            power += power;
        }
        return n < 0 ? -value : value;
    }

    /// <summary>softplus(x) = log(1 + e^x), and x itself above 20 (torch's and mamba's threshold).</summary>
    public static Real Softplus<Real>(Real x) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        x > Whole<Real>(20) ? x : x > Real.Zero ? x + Log1p(GpuMath.Exp(-x)) : Log1p(GpuMath.Exp(x));

    /// <summary>silu(z) = z · sigmoid(z).</summary>
    public static Real Silu<Real>(Real z) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        z >= Real.Zero ? z / (Real.One + GpuMath.Exp(-z)) : z * GpuMath.Exp(z) / (Real.One + GpuMath.Exp(z));

    /// <summary>log(1 + x) accurate for small x (Goldberg's trick: the rounding of 1 + x is divided back out).</summary>
    public static Real Log1p<Real>(Real x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real w = Real.One + x;
        return w == Real.One ? x : GpuMath.Log(w) * x / (w - Real.One);
    }

    /// <summary>e^x − 1 accurate for small x (Kahan's trick).</summary>
    public static Real ExpM1<Real>(Real x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real w = GpuMath.Exp(x);
        if (w == Real.One)
        {
            return x;
        }
        Real wm1 = w - Real.One;
        return wm1 == Real.NegativeOne ? Real.NegativeOne : Real.IsInfinity(w) ? w : wm1 * x / GpuMath.Log(w);
    }

    /// <summary>e^z − 1 for complex z = a + ib without cancellation near 0: Re = expm1(a)·cos b − 2 sin²(b/2), Im = e^a sin b.</summary>
    public static Complex<Real> ExpM1<Real>(Complex<Real> z) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real two = Whole<Real>(2), half = GpuMath.Sin(z.Im / two);
        return new((ExpM1(z.Re) * GpuMath.Cos(z.Im)) - (two * half * half), GpuMath.Exp(z.Re) * GpuMath.Sin(z.Im));
    }
}
