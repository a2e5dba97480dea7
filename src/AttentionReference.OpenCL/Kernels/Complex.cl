// Complex arithmetic for the diagonal SSMs (Kernels/S4d.cl, Kernels/H3.cl, Kernels/DiagonalSsm.cl), included with
// `#include "Complex.cl"` (the host expands it). Written as System.Numerics.Complex does it (the reference's type):
// a·b = (ac − bd, bc + ad), a/b by Smith's formula, exp(z) = (e^re cos im, e^re sin im); e^z − 1 as
// StateSpaceMath.ExpM1 (Kahan's real expm1, Re = expm1(re)·cos im − 2 sin²(im/2), Im = e^re sin im), so tiny dt loses
// no digits here either.
#ifndef COMPLEX_CL
#define COMPLEX_CL

typedef struct { real re, im; } cplx;

inline cplx c_make(real re, real im) { cplx z; z.re = re; z.im = im; return z; }
inline cplx c_add(cplx a, cplx b) { return c_make(a.re + b.re, a.im + b.im); }
inline cplx c_mul(cplx a, cplx b) { return c_make(a.re * b.re - a.im * b.im, a.im * b.re + a.re * b.im); }
inline cplx c_scale(real s, cplx a) { return c_make(s * a.re, s * a.im); }
inline cplx c_exp(cplx z) { const real e = exp(z.re); return c_make(e * cos(z.im), e * sin(z.im)); }

// Smith's division, as System.Numerics.Complex's operator /.
inline cplx c_div(cplx a, cplx b)
{
    if (fabs(b.im) < fabs(b.re)) {
        const real doc = b.im / b.re, den = b.re + b.im * doc;
        return c_make((a.re + a.im * doc) / den, (a.im - a.re * doc) / den);
    }
    const real cod = b.re / b.im, den = b.im + b.re * cod;
    return c_make((a.im + a.re * cod) / den, (-a.re + a.im * cod) / den);
}

// e^x − 1, Kahan's trick (StateSpaceMath.ExpM1).
inline real expm1_kahan(real x)
{
    const real w = exp(x);
    if (w == (real)1) return x;
    const real wm1 = w - (real)1;
    if (wm1 == (real)-1) return (real)-1;
    if (isinf(w)) return w;
    return wm1 * x / log(w);
}

// e^z − 1 without cancellation near 0 (StateSpaceMath.ExpM1(Complex)).
inline cplx c_expm1(cplx z)
{
    const real sinHalf = sin(z.im / (real)2);
    return c_make(expm1_kahan(z.re) * cos(z.im) - (real)2 * sinHalf * sinHalf, exp(z.re) * sin(z.im));
}

#endif
