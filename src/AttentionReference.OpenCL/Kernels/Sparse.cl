// Sparse softmax attention — the OpenCL twin of Forms/Softmax/Sparse.cs, same symbols.
//   A_i = { j : allowed_h(i, j) } ∩ { j ≤ d_i if causal },  d_i = i + Tk − Tq
//   block       allowed_h(i, j) = M[h, ⌊i/Bq⌋, ⌊j/Bk⌋] ≠ 0
//   longformer  allowed(i, j)   = |j − d_i| ≤ w ∨ d_i ∈ G ∨ j ∈ G
//   bigbird     allowed_h(i, j) = |⌊i/B⌋ − ⌊j/B⌋| ≤ w_b ∨ i ∈ G ∨ j ∈ G ∨ R[h, ⌊i/B⌋, ⌊j/B⌋] ≠ 0
//   s_ij = scale · q_i · k_j,  o_i = Σ_{j∈A_i} exp(s_ij − m_i) v_j / l_i,  lse_i = m_i + ln l_i;  A_i = ∅: o_i = 0, lse_i = −∞.
// One work-item per query row (b, i, h), streaming over the keys its pattern allows with the online softmax of
// FlashAttention-2; disallowed keys are never read. The layout M (or R) is int [heads, Nq, Nk] (heads = Hq or 1), the
// global tokens an int membership table over the Tk key positions.

#define PATTERN_BLOCK 0
#define PATTERN_LONGFORMER 1
#define PATTERN_BIGBIRD 2

__kernel void sparse_rows(
    __global const real* q, __global const real* k, __global const real* v, __global const int* layout,
    __global const int* isGlobal, __global real* o, __global real* lse,
    const int B, const int Tq, const int Tk, const int Hq, const int Hkv, const int K, const int V,
    const real scale, const int causal, const int pattern, const int blockQ, const int blockK,
    const int layoutHeads, const int window)
{
    const long row = get_global_id(0);
    if (row >= (long)B * Tq * Hq) return;
    const int h = (int)(row % Hq), i = (int)(row / Hq % Tq), b = (int)(row / Hq / Tq);
    const int hk = h / (Hq / Hkv);
    const int d = i + Tk - Tq;
    const int nq = (Tq + blockQ - 1) / blockQ, nk = (Tk + blockK - 1) / blockK;
    __global const int* layoutRow = layout + ((long)(layoutHeads == 1 ? 0 : h) * nq + i / blockQ) * nk;
    const int end = causal ? clamp(d + 1, 0, Tk) : Tk;

    __global const real* qi = q + row * K;
    __global real* oi = o + row * V;
    for (int e = 0; e < V; e++) oi[e] = 0;
    real m = -INFINITY, l = 0;
    for (int j = 0; j < end; j++) {
        bool allowed;
        if (pattern == PATTERN_BLOCK) allowed = layoutRow[j / blockK] != 0;
        else if (pattern == PATTERN_LONGFORMER) allowed = abs(j - d) <= window || (d >= 0 && isGlobal[d]) || isGlobal[j];
        else allowed = abs(i / blockQ - j / blockK) <= window || isGlobal[i] || isGlobal[j] || layoutRow[j / blockK] != 0;
        if (!allowed) continue;
        const long key = ((long)b * Tk + j) * Hkv + hk;
        __global const real* kj = k + key * K;
        __global const real* vj = v + key * V;
        real s = 0;
        for (int e = 0; e < K; e++) s += qi[e] * kj[e];
        s *= scale;
        const real mNew = (isnan(s) || s > m) ? s : m;  // NaN wins, as in the reference's max
        const real alpha = exp(m - mNew), p = exp(s - mNew);
        l = l * alpha + p;
        for (int e = 0; e < V; e++) oi[e] = oi[e] * alpha + p * vj[e];
        m = mNew;
    }
    if (l == 0) { for (int e = 0; e < V; e++) oi[e] = 0; lse[row] = -INFINITY; return; }
    for (int e = 0; e < V; e++) oi[e] /= l;
    lse[row] = m + log(l);
}
