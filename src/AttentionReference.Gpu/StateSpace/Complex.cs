using System.Numerics;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// A complex number re + i·im in the kernels' real type, for the diagonal SSMs of s4d and h3, with the arithmetic of
/// System.Numerics.Complex (the reference's type) operation for operation: a·b = (ac − bd, bc + ad), a real factor on
/// each part, a/b by Smith's formula, exp(z) = (e^re cos im, e^re sin im). So the kernels round where the reference
/// rounds, and with real_a (every imaginary part 0) the arithmetic is the real one, as the reference's is.
/// </summary>
internal readonly struct Complex<Real>(Real re, Real im) where Real : unmanaged, IFloatingPointIeee754<Real>
{
    /// <summary>The real part.</summary>
    public Real Re { get; } = re;

    /// <summary>The imaginary part.</summary>
    public Real Im { get; } = im;

    /// <summary>0.</summary>
    public static Complex<Real> Zero => new(Real.Zero, Real.Zero);

    public static Complex<Real> operator +(Complex<Real> a, Complex<Real> b) => new(a.Re + b.Re, a.Im + b.Im);

    public static Complex<Real> operator -(Complex<Real> a, Complex<Real> b) => new(a.Re - b.Re, a.Im - b.Im);

    public static Complex<Real> operator *(Complex<Real> a, Complex<Real> b) => new((a.Re * b.Re) - (a.Im * b.Im), (a.Im * b.Re) + (a.Re * b.Im));

    public static Complex<Real> operator *(Real s, Complex<Real> a) => new(s * a.Re, s * a.Im);

    public static Complex<Real> operator *(Complex<Real> a, Real s) => new(a.Re * s, a.Im * s);

    public static Complex<Real> operator /(Complex<Real> a, Real s) => new(a.Re / s, a.Im / s);

    /// <summary>a/b by Smith's formula, as System.Numerics.Complex divides (no overflow of c² + d²).</summary>
    public static Complex<Real> operator /(Complex<Real> a, Complex<Real> b)
    {
        if (Real.Abs(b.Im) < Real.Abs(b.Re))
        {
            Real doc = b.Im / b.Re, den = b.Re + (b.Im * doc);
            return new((a.Re + (a.Im * doc)) / den, (a.Im - (a.Re * doc)) / den);
        }
        Real cod = b.Re / b.Im, scale = b.Im + (b.Re * cod);
        return new((a.Im + (a.Re * cod)) / scale, (-a.Re + (a.Im * cod)) / scale);
    }

    /// <summary>Whether both parts are 0.</summary>
    public bool IsZero => Re == Real.Zero && Im == Real.Zero;

    /// <summary>e^z = e^re·(cos im + i sin im).</summary>
    public static Complex<Real> Exp(Complex<Real> z)
    {
        Real magnitude = GpuMath.Exp(z.Re);
        return new(magnitude * GpuMath.Cos(z.Im), magnitude * GpuMath.Sin(z.Im));
    }
}
