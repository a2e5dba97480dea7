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

// ---------------------------------------------------------------------------------------------------------------
// softmax_tiled: FlashAttention-2's blocking on one work-group of BR·BC work-items per (b, h, block of BR queries).
// Q's block stays in local memory; keys and values stream through in tiles of BC. Work-item (r, c) computes the
// score of query row r against key c of the tile; the row's BC work-items then share the tile's max and
// probabilities, and each keeps V/BC of the row's output columns (d = c, c + BC, ...) in registers:
//   m_new = max(m, max_c s_rc),  α = exp(m − m_new),  p_rc = exp(s_rc − m_new)
//   l ← α·l + Σ_c p_rc,          o_r ← α·o_r + Σ_c p_rc v_c,          and at the end o_r /= l, lse_r = m + ln l.
// Masked scores are −∞ and contribute p = 0; a row that never sees a key keeps l = 0: o = 0, lse = −∞.
// Local rows are padded by one element so that the BC work-items of a row read different banks.
#define BR 16
#define BC 8
#define MAX_COLUMNS_PER_ITEM 16   // V ≤ BC·16 = 128 in this kernel; the host falls back to softmax_rows beyond

__kernel __attribute__((reqd_work_group_size(BR * BC, 1, 1)))
void softmax_tiled(
    __global const real* q, __global const real* k, __global const real* v, __global const real* slopes,
    __global real* o, __global real* lse,
    const int B, const int Tq, const int Tk, const int Hq, const int Hkv, const int K, const int V,
    const real scale, const real softcap, const int hasSlopes, const int slopesPerBatch,
    const int diagonalOffset, const int windowLeft, const int windowRight,
    __local real* Qs, __local real* Ks, __local real* Vs, __local real* S)
{
    const int blocks = (Tq + BR - 1) / BR;
    const int group = get_group_id(0);
    const int block = group % blocks, h = group / blocks % Hq, b = group / blocks / Hq;
    const int hk = h / (Hq / Hkv);
    const int t = get_local_id(0), r = t / BC, c = t % BC;
    const int i = block * BR + r;                       // this work-item's query row
    const int qStride = K + 1, kStride = K + 1;

    // Load the block's queries (rows past Tq are zero and never written back).
    for (int e = t; e < BR * K; e += BR * BC) {
        const int rr = e / K, d = e % K, ii = block * BR + rr;
        Qs[rr * qStride + d] = ii < Tq ? q[(((long)b * Tq + ii) * Hq + h) * K + d] : 0;
    }

    // The keys any row of the block may see: the union of the rows' windows.
    const long firstRow = (long)block * BR, lastRow = min((long)Tq, firstRow + BR) - 1;
    const long lo = windowLeft < 0 ? 0 : max(0L, firstRow + diagonalOffset - windowLeft);
    const long hi = windowRight < 0 ? (long)Tk : min((long)Tk, lastRow + diagonalOffset + windowRight + 1);
    const long diagonal = (long)i + diagonalOffset;
    const long first = windowLeft < 0 ? 0 : max(0L, diagonal - windowLeft);
    const long end = windowRight < 0 ? (long)Tk : min((long)Tk, diagonal + windowRight + 1);
    const real slope = hasSlopes ? slopes[slopesPerBatch ? b * Hq + h : h] : 0;

    real acc[MAX_COLUMNS_PER_ITEM];
    for (int u = 0; u < MAX_COLUMNS_PER_ITEM; u++) acc[u] = 0;
    real m = -INFINITY, l = 0;

    for (long j0 = lo; j0 < hi; j0 += BC) {
        barrier(CLK_LOCAL_MEM_FENCE);                   // the previous tile is no longer read
        for (int e = t; e < BC * K; e += BR * BC) {
            const int cc = e / K, d = e % K; const long j = j0 + cc;
            Ks[cc * kStride + d] = j < hi ? k[(((long)b * Tk + j) * Hkv + hk) * K + d] : 0;
        }
        for (int e = t; e < BC * V; e += BR * BC) {
            const int cc = e / V, d = e % V; const long j = j0 + cc;
            Vs[cc * V + d] = j < hi ? v[(((long)b * Tk + j) * Hkv + hk) * V + d] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 1. s_rc, or −∞ where key j0 + c is not allowed for row i.
        const long j = j0 + c;
        real s = -INFINITY;
        if (i < Tq && j >= first && j < end) {
            s = 0;
            for (int d = 0; d < K; d++) s += Qs[r * qStride + d] * Ks[c * kStride + d];
            s *= scale;
            if (softcap > 0) s = softcap * tanh(s / softcap);
            if (hasSlopes) s -= slope * fabs((real)(diagonal - j));
        }
        S[r * BC + c] = s;
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. the row's new max (NaN wins, as in the reference), then p_rc.
        real mNew = m;
        for (int cc = 0; cc < BC; cc++) { const real x = S[r * BC + cc]; mNew = (isnan(x) || x > mNew) ? x : mNew; }
        const real alpha = (m == mNew) ? 1 : exp(m - mNew);
        barrier(CLK_LOCAL_MEM_FENCE);                   // every item of the row has read the scores
        S[r * BC + c] = (s == -INFINITY) ? 0 : exp(s - mNew);
        barrier(CLK_LOCAL_MEM_FENCE);

        // 3. l ← α·l + Σ p,  o ← α·o + Σ p v  (this item's columns d = c + BC·u).
        real rowSum = 0;
        for (int cc = 0; cc < BC; cc++) rowSum += S[r * BC + cc];
        l = l * alpha + rowSum;
        for (int u = 0; u * BC + c < V; u++) {
            const int d = u * BC + c;
            real sum = 0;
            for (int cc = 0; cc < BC; cc++) sum += S[r * BC + cc] * Vs[cc * V + d];
            acc[u] = acc[u] * alpha + sum;
        }
        m = mNew;
    }

    if (i >= Tq) return;
    const long row = ((long)b * Tq + i) * Hq + h;
    // l = 0 only for a row that saw no key (the max term alone contributes exp(0) = 1); a NaN l must propagate.
    for (int u = 0; u * BC + c < V; u++) o[row * V + u * BC + c] = l != 0 ? acc[u] / l : 0;
    if (c == 0) lse[row] = l != 0 ? m + log(l) : -INFINITY;
}
