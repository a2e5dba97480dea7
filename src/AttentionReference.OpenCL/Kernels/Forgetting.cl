// Forgetting attention (FoX) — the OpenCL twin of Forms/Softmax/Forgetting.cs, same symbols.
//   D_ij = Σ_{r=j+1..i} g_r (D_ii = 0),  s_ij = scale · q_i · k_j + D_ij,  keys j = start(i) … i (causal, per sequence)
//   o_i = Σ_j exp(s_ij − m_i) v_j / l_i,  lse_i = m_i + ln l_i.
// As the reference, the bias is never a difference of cumulative sums: it is carried as one running sum from the
// diagonal leftwards, D_i,j−1 = D_ij + g_j, so strong gates (g = −20 per step) stay exact.
//
// forgetting_rows: one work-item per query row (b, i, h), streaming its keys from the diagonal leftwards with the
// online softmax of FlashAttention-2 (running max m, running sum l, accumulator rescaled by exp(m_old − m_new)).
// The naive variant runs it, and the tiled variant where forgetting_tiled does not fit (V > 128).

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

// ---------------------------------------------------------------------------------------------------------------
// forgetting_tiled: FlashAttention-2's blocking, one work-group of BR·BC work-items per (query block, head); blocks[4g ..]
// = (b, sequence start t0, sequence length, first query q0 of the block), positions relative to t0. Q's block stays in
// local memory; key tiles of BC keys stream from the block's last query leftwards. The bias splits at q0 as in the
// reference, two sums of same-sign terms and never a difference:
//   A_i = Σ_{r=q0+1..i} g_r,   E_j = Σ_{r=j+1..q0} g_r (carried leftwards across tiles),   D_ij = A_i + E_j (j ≤ q0)
//   D_ij = Σ_{r=j+1..i} g_r summed from the diagonal leftwards (q0 < j ≤ i);   j > i: not allowed (causal).
// Each work-item (r, c) scores query q0 + r against key jHi − c of the tile; the row's BC items share the tile's
// max and probabilities and each keeps the output columns d = c, c + BC, ... in registers (V ≤ 128; the host runs
// forgetting_rows beyond). Local rows are padded by one element.
#define BR 16
#define BC 8
#define MAX_COLUMNS_PER_ITEM 16

__kernel __attribute__((reqd_work_group_size(BR * BC, 1, 1)))
void forgetting_tiled(
    __global const real* q, __global const real* k, __global const real* v, __global const real* g,
    __global real* o, __global real* lse, __global const int* blocks, const int blockCount,
    const int T, const int Hq, const int Hkv, const int K, const int V, const real scale,
    __local real* Qs, __local real* Ks, __local real* Vs, __local real* S)
{
    const int group = get_group_id(0);
    const int block = group % blockCount, h = group / blockCount;
    const int b = blocks[4 * block], t0 = blocks[4 * block + 1], length = blocks[4 * block + 2], q0 = blocks[4 * block + 3];
    const int hk = h / (Hq / Hkv);
    const int t = get_local_id(0), r = t / BC, c = t % BC;
    const int i = q0 + r, rows = min(BR, length - q0), last = q0 + rows - 1;
    const int stride = K + 1;
    #define GATE(x) g[((long)b * T + t0 + (x)) * Hq + h]

    for (int e = t; e < BR * K; e += BR * BC) {
        const int rr = e / K, d = e % K;
        Qs[rr * stride + d] = rr < rows ? q[(((long)b * T + t0 + q0 + rr) * Hq + h) * K + d] : 0;
    }
    real a = 0;                                          // A_i, summed upwards from q0 as the reference does
    for (int x = q0 + 1; x <= min(i, last); x++) a += GATE(x);

    real acc[MAX_COLUMNS_PER_ITEM];
    for (int u = 0; u < MAX_COLUMNS_PER_ITEM; u++) acc[u] = 0;
    real m = -INFINITY, l = 0;
    real eCarry = 0; int eAt = q0;                       // E_{eAt}; every item carries the same sums

    for (int jHi = last; jHi >= 0; jHi -= BC) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = t; e < BC * K; e += BR * BC) {
            const int cc = e / K, d = e % K, j = jHi - cc;
            Ks[cc * stride + d] = j >= 0 ? k[(((long)b * T + t0 + j) * Hkv + hk) * K + d] : 0;
        }
        for (int e = t; e < BC * V; e += BR * BC) {
            const int cc = e / V, d = e % V, j = jHi - cc;
            Vs[cc * V + d] = j >= 0 ? v[(((long)b * T + t0 + j) * Hkv + hk) * V + d] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 1. s_rc with its bias, or −∞ where key j is not allowed for row i.
        const int j = jHi - c;
        real s = -INFINITY;
        if (r < rows && j >= 0 && j <= i) {
            real dot = 0;
            for (int d = 0; d < K; d++) dot += Qs[r * stride + d] * Ks[c * stride + d];
            if (j <= q0) {
                real e = eCarry;
                for (int x = eAt; x > j; x--) e += GATE(x);
                s = scale * dot + a + e;
            } else {
                real inside = 0;
                for (int x = i; x > j; x--) inside += GATE(x);
                s = scale * dot + inside;
            }
        }
        S[r * BC + c] = s;
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. the row's new max (NaN wins), then p_rc (−1 marks a key that is not allowed).
        real mNew = m;
        for (int cc = 0; cc < BC; cc++) { const real x = S[r * BC + cc]; mNew = (isnan(x) || x > mNew) ? x : mNew; }
        const real alpha = (m == mNew) ? 1 : exp(m - mNew);
        barrier(CLK_LOCAL_MEM_FENCE);
        S[r * BC + c] = s == -INFINITY ? -1 : exp(s - mNew);
        barrier(CLK_LOCAL_MEM_FENCE);

        // 3. l ← α·l + Σ p,  o ← α·o + Σ p v.
        real rowSum = 0;
        for (int cc = 0; cc < BC; cc++) { const real p = S[r * BC + cc]; if (!(p < 0)) rowSum += p; }
        l = l * alpha + rowSum;
        for (int u = 0; u * BC + c < V; u++) {
            const int d = u * BC + c;
            real sum = 0;
            for (int cc = 0; cc < BC; cc++) { const real p = S[r * BC + cc]; if (!(p < 0)) sum += p * Vs[cc * V + d]; }
            acc[u] = acc[u] * alpha + sum;
        }
        m = mNew;

        // 4. carry E to the tile's lowest key.
        for (const int low = max(jHi - BC + 1, 0); eAt > low; eAt--) eCarry += GATE(eAt);
    }
    #undef GATE

    if (r >= rows) return;
    const long row = ((long)b * T + t0 + i) * Hq + h;
    for (int u = 0; u * BC + c < V; u++) o[row * V + u * BC + c] = acc[u] / l;
    if (c == 0) lse[row] = m + log(l);
}
