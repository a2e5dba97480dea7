// H3 — the OpenCL twin of Forms/StateSpace/H3.cs, same symbols (h = head, i = key channel, j = value channel,
// m = shift tap, n = mode of the diagonal SSM).
//   q, k, v [B,T,H,d]   shift_kernel [H,d,M]   shift_D [H,d]   log_dt [H]   A_*, C_* [H,N]   D [H]  →  o [B,T,H,d]
//   1. k̃_t[i] = Σ_{m=0..min(M,t+1)−1} shift_kernel[h,i,m] k_{t−m}[i] + shift_D[h,i] k_t[i]
//   2. kv_t[i,j] = k̃_t[i] v_t[j]
//   3. s_t = Ā s_{t−1} + B̄ kv_t,  y_t[i,j] = Σ_n f·Re(C_n s_{t,n}[i,j])           (recurrent)
//      y_t[i,j] = Σ_{l=0..t} K_l kv_{t−l}[i,j],  K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n))   (convolution)
//   4. o_t[j] = Σ_i q_t[i] (y_t[i,j] + D_h kv_t[i,j])
// Ā, B̄, K and the complex arithmetic are S4d.cl's (the same functions, repeated here: each kernel file is built as
// one program); f = 2 (conjugate pairs) or 1 (real_a, with A_imag = C_imag = 0 passed by the host).
//
// Parallel decomposition.
//   h3_shift        one item per (b, t, h, i): step 1. The shift register's state at t is k_{t}, …, k_{t−M+1}
//                   (zeros before the start), so the item reads them from k; the sum runs over m in the reference's
//                   order, which is also the direct convolution's order with the taps padded by zeros.
//   h3_discretise   one item per (h, n): dtA, Ā, B̄, C·B̄ (as s4d_discretise).
//   h3_recurrent    one item per (b, h, j), for each i in order: streams over t once per block of ≤ H3_MODE_BLOCK
//                   modes held in private memory, adding the block's terms to y_t[i,j] (a scratch column of T reals
//                   per item, stored [T][items] so that neighbouring items touch neighbouring addresses) in the
//                   reference's order over n; then o_t[j] += q_t[i] (y_t + D kv_t). State: one block of modes of one
//                   (i, j) at a time, the rest of H3's N·d·d state per head is never held.
//   h3_kernel       one item per (l, h): K_l (as s4d_kernel), stored [L,H].
//   h3_convolve     one item per (b, t, h, j): for each i in order, y = Σ_{l=0..t} K_l k̃_{t−l}[i] v_{t−l}[j], then
//                   o_t[j] += q_t[i] (y + D kv_t[i,j]). Quadratic in T, as the convolution is by definition.

#define H3_MODE_BLOCK 8

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

__kernel void h3_shift(
    __global const real* k, __global const real* taps, __global const real* shiftD, __global real* kTilde,
    const int B, const int T, const int H, const int d, const int M)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * d) return;
    const int hi = (int)(id % ((long)H * d)), t = (int)(id / ((long)H * d) % T);   // hi = h·d + i
    const long step = (long)H * d;                                                   // k_{t−m} = k[id − m·step]
    real y = 0;
    for (int m = 0; m < M && m <= t; m++) {
        y += taps[(long)hi * M + m] * k[id - m * step];
    }
    kTilde[id] = y + shiftD[hi] * k[id];
}

// disc[(h·N + n)·8 + ..] = dtA (0, 1), Ā (2, 3), B̄ (4, 5), C·B̄ (6, 7).
__kernel void h3_discretise(
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

// o holds zeros on entry; y is scratch of T·B·H·d reals.
__kernel void h3_recurrent(
    __global const real* q, __global const real* kTilde, __global const real* v, __global const real* disc,
    __global const real* cReal, __global const real* cImag, __global const real* D, __global real* y, __global real* o,
    const int B, const int T, const int H, const int d, const int N, const real f)
{
    const long items = (long)B * H * d, id = get_global_id(0);
    if (id >= items) return;
    const int j = (int)(id % d), h = (int)(id / d % H), b = (int)(id / d / H);
    const long step = (long)H * d;                                          // row (b, t, h) starts at base + t·step
    const long base = (long)b * T * step + (long)h * d;
    __global real* yj = y + id;                                             // y_t = yj[t·items]
    cplx aBar[H3_MODE_BLOCK], bBar[H3_MODE_BLOCK], c[H3_MODE_BLOCK], s[H3_MODE_BLOCK];
    for (int i = 0; i < d; i++) {
        for (int t = 0; t < T; t++) {
            yj[t * items] = 0;
        }
        for (int n0 = 0; n0 < N; n0 += H3_MODE_BLOCK) {
            const int count = min(H3_MODE_BLOCK, N - n0);
            for (int m = 0; m < count; m++) {
                const long hn = (long)h * N + n0 + m;
                aBar[m] = c_make(disc[hn * 8 + 2], disc[hn * 8 + 3]);
                bBar[m] = c_make(disc[hn * 8 + 4], disc[hn * 8 + 5]);
                c[m] = c_make(cReal[hn], cImag[hn]);
                s[m] = c_make(0, 0);
            }
            for (int t = 0; t < T; t++) {
                const long row = base + t * step;
                const real kv = kTilde[row + i] * v[row + j];
                real yt = yj[t * items];
                for (int m = 0; m < count; m++) {
                    s[m] = c_add(c_mul(aBar[m], s[m]), c_scale(kv, bBar[m]));
                    yt += f * c_mul(c[m], s[m]).re;
                }
                yj[t * items] = yt;
            }
        }
        for (int t = 0; t < T; t++) {
            const long row = base + t * step;
            const real kv = kTilde[row + i] * v[row + j];
            o[row + j] += q[row + i] * (yj[t * items] + D[h] * kv);
        }
    }
}

// K[l·H + h] = Σ_n f·Re(C_n B̄_n exp(l·dtA_n)), l < L.
__kernel void h3_kernel(__global const real* disc, __global real* K, const int H, const int N, const int L, const real f)
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

__kernel void h3_convolve(
    __global const real* q, __global const real* kTilde, __global const real* v, __global const real* K,
    __global const real* D, __global real* o, const int B, const int T, const int H, const int d)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * d) return;
    const int j = (int)(id % d), h = (int)(id / d % H), t = (int)(id / d / H % T);
    const long step = (long)H * d, row = id - j;                            // row (b, t, h); row − l·step is t − l
    real out = 0;
    for (int i = 0; i < d; i++) {
        real y = 0;
        for (int l = 0; l <= t; l++) {
            const long r = row - l * step;
            y += K[(long)l * H + h] * (kTilde[r + i] * v[r + j]);
        }
        out += q[row + i] * (y + D[h] * (kTilde[row + i] * v[row + j]));
    }
    o[id] = out;
}
