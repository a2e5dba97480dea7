// S4D — the OpenCL twin of Forms/StateSpace/S4d.cs and DiagonalSsm.cs, same symbols (h = channel, n = mode).
//   u [B,T,H]   log_dt [H]   A_real, A_imag, C_real, C_imag [H,N]   D [H]   →   o [B,T,H]
//   dtA = exp(log_dt_h)·A_hn      ZOH:  Ā = exp(dtA)      B̄ = dt·expm1(dtA)/dtA   (dt when dtA = 0)
//   x_t = Ā x_{t−1} + B̄ u_t,  x_{−1} = 0        o_t = Σ_n f·Re(C_n x_{t,n}) + D u_t
//   K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n))        o_t = Σ_{l=0..t} K_l u_{t−l} + D u_t
// f = 2 for conjugate pairs, 1 with real_a (the host passes A_imag = C_imag = 0 then: every complex operation
// below gives the real arithmetic of the reference exactly, as .NET's Complex does with zero imaginary parts).
//
// Complex arithmetic: Kernels/Complex.cl (System.Numerics.Complex's formulas); the discretisation: Kernels/DiagonalSsm.cl.
//
// Parallel decomposition.
//   diagonal_ssm_discretise (DiagonalSsm.cl)  one item per (h, n): dtA, Ā, B̄ and C·B̄ into disc[(h·N + n)·8 ..].
//   s4d_recurrent   one item per (b, h), streaming over t once per block of ≤ S4D_MODE_BLOCK modes held in private
//                   memory: for each t, y_t += f·Re(C_n x_{t,n}) for the block's n in order (o is y's buffer), so
//                   every o_t is summed over n = 0..N−1 in the reference's order; then o_t = y_t + D u_t.
//   diagonal_ssm_convolution_kernel (DiagonalSsm.cl)  one item per (l, h): K_l, stored [L,H].
//   s4d_convolve    one item per (b, t, h): the causal sum over l = 0..t in the reference's order, + D u_t.
// The convolution variant is quadratic in T by its definition; the recurrent one is linear.

#define S4D_MODE_BLOCK 8

#include "Complex.cl"

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
