// H3 — the OpenCL twin of Forms/StateSpace/H3.cs, same symbols (h = head, i = key channel, j = value channel,
// m = shift tap, n = mode of the diagonal SSM).
//   q, k, v [B,T,H,d]   shift_kernel [H,d,M]   shift_D [H,d]   log_dt [H]   A_*, C_* [H,N]   D [H]  →  o [B,T,H,d]
//   1. k̃_t[i] = Σ_{m=0..min(M,t+1)−1} shift_kernel[h,i,m] k_{t−m}[i] + shift_D[h,i] k_t[i]
//   2. kv_t[i,j] = k̃_t[i] v_t[j]
//   3. s_t = Ā s_{t−1} + B̄ kv_t,  y_t[i,j] = Σ_n f·Re(C_n s_{t,n}[i,j])           (recurrent)
//      y_t[i,j] = Σ_{l=0..t} K_l kv_{t−l}[i,j],  K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n))   (convolution)
//   4. o_t[j] = Σ_i q_t[i] (y_t[i,j] + D_h kv_t[i,j])
// Ā, B̄ and K are DiagonalSsm.cl's, the complex arithmetic Complex.cl's (shared with S4d.cl); f = 2 (conjugate pairs)
// or 1 (real_a, with A_imag = C_imag = 0 passed by the host).
//
// Parallel decomposition.
//   h3_shift        one item per (b, t, h, i): step 1. The shift register's state at t is k_{t}, …, k_{t−M+1}
//                   (zeros before the start), so the item reads them from k; the sum runs over m in the reference's
//                   order, which is also the direct convolution's order with the taps padded by zeros.
//   diagonal_ssm_discretise (DiagonalSsm.cl)  one item per (h, n): dtA, Ā, B̄, C·B̄.
//   h3_recurrent    one item per (b, h, j), for each i in order: streams over t once per block of ≤ H3_MODE_BLOCK
//                   modes held in private memory, adding the block's terms to y_t[i,j] (a scratch column of T reals
//                   per item, stored [T][items] so that neighbouring items touch neighbouring addresses) in the
//                   reference's order over n; then o_t[j] += q_t[i] (y_t + D kv_t). State: one block of modes of one
//                   (i, j) at a time, the rest of H3's N·d·d state per head is never held.
//   diagonal_ssm_convolution_kernel (DiagonalSsm.cl)  one item per (l, h): K_l, stored [L,H].
//   h3_convolve     one item per (b, t, h, j): for each i in order, y = Σ_{l=0..t} K_l k̃_{t−l}[i] v_{t−l}[j], then
//                   o_t[j] += q_t[i] (y + D kv_t[i,j]). Quadratic in T, as the convolution is by definition.

#define H3_MODE_BLOCK 8

#include "Complex.cl"

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
