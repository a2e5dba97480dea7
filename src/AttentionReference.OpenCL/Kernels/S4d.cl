// S4D — the OpenCL twin of Forms/StateSpace/S4d.cs and DiagonalSsm.cs, same symbols (h = channel, n = mode).
//   u [B,T,H]   log_dt [H]   A_real, A_imag, C_real, C_imag [H,N]   D [H]   →   o [B,T,H]
//   dtA = exp(log_dt_h)·A_hn      ZOH:  Ā = exp(dtA)      B̄ = dt·expm1(dtA)/dtA   (dt when dtA = 0)
//   x_t = Ā x_{t−1} + B̄ u_t,  x_{−1} = 0        o_t = Σ_n f·Re(C_n x_{t,n}) + D u_t
//   K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n))        o_t = Σ_{l=0..t} K_l u_{t−l} + D u_t
// f = 2 for conjugate pairs, 1 with real_a (the host passes A_imag = C_imag = 0 then: every complex operation
// below gives the real arithmetic of the reference exactly, as .NET's Complex does with zero imaginary parts).
//
// Complex arithmetic is written as System.Numerics.Complex does it (the reference's type): a·b = (ac − bd, bc + ad),
// a/b by Smith's formula, exp(z) = (e^re cos im, e^re sin im); e^z − 1 as StateSpaceMath.ExpM1 (Kahan's real expm1,
// Re = expm1(re)·cos im − 2 sin²(im/2), Im = e^re sin im), so tiny dt loses no digits here either.
//
// Parallel decomposition.
//   s4d_discretise  one item per (h, n): dtA, Ā, B̄ and C·B̄ into disc[(h·N + n)·8 ..].
//   s4d_recurrent   one item per (b, h), streaming over t once per block of ≤ S4D_MODE_BLOCK modes held in private
//                   memory: for each t, y_t += f·Re(C_n x_{t,n}) for the block's n in order (o is y's buffer), so
//                   every o_t is summed over n = 0..N−1 in the reference's order; then o_t = y_t + D u_t.
//   s4d_kernel      one item per (l, h): K_l, summed over n in the reference's order; K is stored [L,H] so that
//                   neighbouring items (channels) read neighbouring addresses.
//   s4d_convolve    one item per (b, t, h): the causal sum over l = 0..t in the reference's order, + D u_t.
// The convolution variant is quadratic in T by its definition; the recurrent one is linear.

#define S4D_MODE_BLOCK 8

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

// disc[(h·N + n)·8 + ..] = dtA (0, 1), Ā (2, 3), B̄ (4, 5), C·B̄ (6, 7).
__kernel void s4d_discretise(
    __global const real* logDt, __global const real* aReal, __global const real* aImag,
    __global const real* cReal, __global const real* cImag, __global real* disc, const int H, const int N)
{
    const long id = get_global_id(0);
    if (id >= (long)H * N) return;
    const int h = (int)(id / N);
    const real dt = exp(logDt[h]);
    const cplx dtA = c_scale(dt, c_make(aReal[id], aImag[id]));
    const cplx aBar = c_exp(dtA);
    const cplx bBar = dtA.re == (real)0 && dtA.im == (real)0 ? c_make(dt, 0) : c_div(c_scale(dt, c_expm1(dtA)), dtA);
    const cplx cb = c_mul(c_make(cReal[id], cImag[id]), bBar);
    __global real* m = disc + id * 8;
    m[0] = dtA.re; m[1] = dtA.im; m[2] = aBar.re; m[3] = aBar.im; m[4] = bBar.re; m[5] = bBar.im; m[6] = cb.re; m[7] = cb.im;
}

// o holds zeros on entry.
__kernel void s4d_recurrent(
    __global const real* u, __global const real* disc, __global const real* cReal, __global const real* cImag,
    __global const real* D, __global real* o, const int B, const int T, const int H, const int N, const real f)
{
    const long id = get_global_id(0);
    if (id >= (long)B * H) return;
    const int h = (int)(id % H), b = (int)(id / H);
    __global const real* ub = u + (long)b * T * H + h;      // u_t = ub[t·H]
    __global real* ob = o + (long)b * T * H + h;
    cplx aBar[S4D_MODE_BLOCK], bBar[S4D_MODE_BLOCK], c[S4D_MODE_BLOCK], x[S4D_MODE_BLOCK];
    for (int n0 = 0; n0 < N; n0 += S4D_MODE_BLOCK) {
        const int count = min(S4D_MODE_BLOCK, N - n0);
        for (int m = 0; m < count; m++) {
            const long hn = (long)h * N + n0 + m;
            aBar[m] = c_make(disc[hn * 8 + 2], disc[hn * 8 + 3]);
            bBar[m] = c_make(disc[hn * 8 + 4], disc[hn * 8 + 5]);
            c[m] = c_make(cReal[hn], cImag[hn]);
            x[m] = c_make(0, 0);
        }
        for (int t = 0; t < T; t++) {
            const real ut = ub[(long)t * H];
            real y = ob[(long)t * H];
            for (int m = 0; m < count; m++) {
                x[m] = c_add(c_mul(aBar[m], x[m]), c_scale(ut, bBar[m]));
                y += f * c_mul(c[m], x[m]).re;
            }
            ob[(long)t * H] = y;
        }
    }
    for (int t = 0; t < T; t++) {
        ob[(long)t * H] = ob[(long)t * H] + D[h] * ub[(long)t * H];
    }
}

// K[l·H + h] = Σ_n f·Re(C_n B̄_n exp(l·dtA_n)), l < L.
__kernel void s4d_kernel(__global const real* disc, __global real* K, const int H, const int N, const int L, const real f)
{
    const long id = get_global_id(0);
    if (id >= (long)L * H) return;
    const int h = (int)(id % H), l = (int)(id / H);
    real k = 0;
    for (int n = 0; n < N; n++) {
        __global const real* m = disc + ((long)h * N + n) * 8;
        const cplx dtA = c_make(m[0], m[1]), cb = c_make(m[6], m[7]);
        k += f * c_mul(cb, c_exp(c_scale((real)l, dtA))).re;
    }
    K[id] = k;
}

__kernel void s4d_convolve(
    __global const real* u, __global const real* K, __global const real* D, __global real* o,
    const int B, const int T, const int H)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H) return;
    const int h = (int)(id % H), t = (int)(id / H % T), b = (int)(id / H / T);
    __global const real* ub = u + (long)b * T * H + h;
    real y = 0;
    for (int l = 0; l <= t; l++) {
        y += K[(long)l * H + h] * ub[(long)(t - l) * H];
    }
    o[id] = y + D[h] * ub[(long)t * H];
}
