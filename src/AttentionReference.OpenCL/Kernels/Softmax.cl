// Softmax attention — the OpenCL twin of Forms/Softmax/Softmax.cs, same symbols.
//   s_ij = scale · q_i · k_j;  s_ij ← c·tanh(s_ij/c) (softcap);  s_ij ← s_ij − slope_h·|i + Tk − Tq − j| (ALiBi)
//   allowed j: i + off − wl ≤ j ≤ i + off + wr   (off = Tk − Tq bottom-right, 0 top-left; −1 = unbounded)
//   o_i = Σ_j exp(s_ij − m_i) v_j / l_i,  lse_i = m_i + ln l_i;  no allowed key: o_i = 0, lse_i = −∞.
// One work-item per query row (b, i, h), streaming over the keys with the online softmax of FlashAttention-2:
// a running max m, a running sum l, and the accumulator rescaled by exp(m_old − m_new) whenever the max grows.
#ifdef USE_F64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#else
typedef float real;
#endif

__kernel void softmax_rows(
    __global const real* q, __global const real* k, __global const real* v, __global const real* slopes,
    __global real* o, __global real* lse,
    const int B, const int Tq, const int Tk, const int Hq, const int Hkv, const int K, const int V,
    const real scale, const real softcap, const int hasSlopes, const int slopesPerBatch,
    const int diagonalOffset, const int windowLeft, const int windowRight)
{
    const long row = get_global_id(0);
    if (row >= (long)B * Tq * Hq) return;
    const int h = (int)(row % Hq), i = (int)(row / Hq % Tq), b = (int)(row / Hq / Tq);
    const int hk = h / (Hq / Hkv);

    const long diagonal = (long)i + diagonalOffset;
    const long first = windowLeft < 0 ? 0 : max(0L, diagonal - windowLeft);
    const long end = windowRight < 0 ? (long)Tk : min((long)Tk, diagonal + windowRight + 1);

    __global const real* qi = q + row * K;
    __global real* oi = o + row * V;
    for (int d = 0; d < V; d++) oi[d] = 0;
    if (first >= end) { lse[row] = -INFINITY; return; }

    const real slope = hasSlopes ? slopes[slopesPerBatch ? b * Hq + h : h] : 0;
    real m = -INFINITY, l = 0;
    for (long j = first; j < end; j++) {
        __global const real* kj = k + (((long)b * Tk + j) * Hkv + hk) * K;
        __global const real* vj = v + (((long)b * Tk + j) * Hkv + hk) * V;
        real s = 0;
        for (int d = 0; d < K; d++) s += qi[d] * kj[d];
        s *= scale;
        if (softcap > 0) s = softcap * tanh(s / softcap);
        if (hasSlopes) s -= slope * fabs((real)(diagonal - j));
        // NaN must win, as in the reference's max: once m is NaN it stays NaN and poisons o and lse.
        const real mNew = (isnan(s) || s > m) ? s : m;
        const real alpha = exp(m - mNew), p = exp(s - mNew);
        l = l * alpha + p;
        for (int d = 0; d < V; d++) oi[d] = oi[d] * alpha + p * vj[d];
        m = mNew;
    }
    for (int d = 0; d < V; d++) oi[d] /= l;
    lse[row] = m + log(l);
}
