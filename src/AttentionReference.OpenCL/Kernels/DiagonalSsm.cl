// The diagonal SSM's discretisation, shared by S4D and H3 — the OpenCL twin of Forms/StateSpace/DiagonalSsm.cs.
//   dtA = exp(log_dt_h)·A_hn      ZOH:  Ā = exp(dtA)      B̄ = dt·expm1(dtA)/dtA   (dt when dtA = 0)
//   K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n))   (the convolution kernel; f = 2 for conjugate pairs, 1 with real_a)
// diagonal_ssm_discretise: one item per (h, n); diagonal_ssm_convolution_kernel: one item per (l, h), summed over n in
// the reference's order, stored [L,H] so that neighbouring items (channels) write neighbouring addresses.
#include "Complex.cl"

// disc[(h·N + n)·8 + ..] = dtA (0, 1), Ā (2, 3), B̄ (4, 5), C·B̄ (6, 7).
__kernel void diagonal_ssm_discretise(
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

// K[l·H + h] = Σ_n f·Re(C_n B̄_n exp(l·dtA_n)), l < L.
__kernel void diagonal_ssm_convolution_kernel(__global const real* disc, __global real* K, const int H, const int N, const int L, const real f)
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
