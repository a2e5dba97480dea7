// Forgetting attention (FoX) — the OpenCL twin of Forms/Softmax/Forgetting.cs, same symbols.
//   D_ij = Σ_{r=j+1..i} g_r (D_ii = 0),  s_ij = scale · q_i · k_j + D_ij,  keys j = start(i) … i (causal, per sequence)
//   o_i = Σ_j exp(s_ij − m_i) v_j / l_i,  lse_i = m_i + ln l_i.
// As the reference, the bias is never a difference of cumulative sums: it is carried as one running sum from the
// diagonal leftwards, D_i,j−1 = D_ij + g_j, so strong gates (g = −20 per step) stay exact.
//
// forgetting_rows: one work-item per query row (b, i, h), streaming its keys from the diagonal leftwards with the
// online softmax of FlashAttention-2 (running max m, running sum l, accumulator rescaled by exp(m_old − m_new)).
// Both the naive and the tiled variant run it: the tiled reference's blocks only change its summation order.
#ifdef USE_F64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#else
typedef float real;
#endif

__kernel void forgetting_rows(
    __global const real* q, __global const real* k, __global const real* v, __global const real* g,
    __global real* o, __global real* lse, __global const int* sequenceStart,
    const int B, const int T, const int Hq, const int Hkv, const int K, const int V, const real scale)
{
    const long row = get_global_id(0);
    if (row >= (long)B * T * Hq) return;
    const int h = (int)(row % Hq), i = (int)(row / Hq % T), b = (int)(row / Hq / T);
    const int hk = h / (Hq / Hkv);
    __global const real* qi = q + row * K;
    __global real* oi = o + row * V;
    for (int d = 0; d < V; d++) oi[d] = 0;

    real m = -INFINITY, l = 0, bias = 0;                // bias = D_ij, starting at D_ii = 0
    for (int j = i; j >= sequenceStart[i]; j--) {
        const long key = ((long)b * T + j) * Hkv + hk;
        __global const real* kj = k + key * K;
        __global const real* vj = v + key * V;
        real s = 0;
        for (int d = 0; d < K; d++) s += qi[d] * kj[d];
        s = scale * s + bias;
        bias += g[((long)b * T + j) * Hq + h];          // D_i,j−1 = D_ij + g_j
        // NaN must win, as in the reference's max.
        const real mNew = (isnan(s) || s > m) ? s : m;
        const real alpha = exp(m - mNew), p = exp(s - mNew);
        l = l * alpha + p;
        for (int d = 0; d < V; d++) oi[d] = oi[d] * alpha + p * vj[d];
        m = mNew;
    }
    for (int d = 0; d < V; d++) oi[d] /= l;
    lse[row] = m + log(l);
}
