// Multi-head latent attention — the OpenCL twin of Forms/Softmax/Mla.cs, same symbols.
//   naive:    kn_j = W_UK[h] c_j,  v_j = W_UV[h] c_j,  s_ij = scale·(q_nope_i · kn_j + q_pe_i · k_pe_j),  o_i = Σ softmax_j(s_ij) v_j
//   absorbed: ql_i = W_UK[h]ᵀ q_nope_i,  s_ij = scale·(ql_i · c_j + q_pe_i · k_pe_j),  ol_i = Σ softmax_j(s_ij) c_j,  o_i = W_UV[h] ol_i
//   allowed keys: j < end_i = min(Sk, i + Sk − Tq + 1) if causal (bottom-right), else all; none: o_i = 0, lse_i = −∞.
// Parallel decomposition: mla_expand one work-item per (b, j, h) (naive's per-head keys and values); mla_absorb_query
// and mla_up one per (b, i, h); mla_rows one per query row (b, i, h), streaming the keys with the online softmax of
// FlashAttention-2. mla_rows serves both variants: its keys/values are per head (naive: kn, v) or shared by every head
// (absorbed: the latent cache c plays both parts).

// kn [B,Sk,H,Dn] and v [B,Sk,H,Dv] from the latent c [B,Sk,Dc]: y_n = W[h][n] · c_j.
__kernel void mla_expand(__global const real* c, __global const real* wUk, __global const real* wUv,
                         __global real* kn, __global real* v, const int B, const int Sk, const int H,
                         const int Dn, const int Dc, const int Dv)
{
    const long item = get_global_id(0);                 // ((b·Sk + j)·H + h)
    if (item >= (long)B * Sk * H) return;
    const int h = (int)(item % H);
    __global const real* cj = c + item / H * Dc;
    for (int n = 0; n < Dn; n++) {
        real y = 0;
        for (int e = 0; e < Dc; e++) y += wUk[((long)h * Dn + n) * Dc + e] * cj[e];
        kn[item * Dn + n] = y;
    }
    for (int n = 0; n < Dv; n++) {
        real y = 0;
        for (int e = 0; e < Dc; e++) y += wUv[((long)h * Dv + n) * Dc + e] * cj[e];
        v[item * Dv + n] = y;
    }
}

// ql [B,Tq,H,Dc] = W_UK[h]ᵀ q_nope: row n of W_UK[h] weighted by q_nope[n], summed over n in order.
__kernel void mla_absorb_query(__global const real* qNope, __global const real* wUk, __global real* ql,
                               const int rows, const int H, const int Dn, const int Dc)
{
    const long row = get_global_id(0);
    if (row >= rows) return;
    const int h = (int)(row % H);
    for (int e = 0; e < Dc; e++) {
        real y = 0;
        for (int n = 0; n < Dn; n++) y += qNope[row * Dn + n] * wUk[((long)h * Dn + n) * Dc + e];
        ql[row * Dc + e] = y;
    }
}

// o [B,Tq,H,Dv] = W_UV[h] ol.
__kernel void mla_up(__global const real* ol, __global const real* wUv, __global real* o,
                     const int rows, const int H, const int Dc, const int Dv)
{
    const long row = get_global_id(0);
    if (row >= rows) return;
    const int h = (int)(row % H);
    for (int n = 0; n < Dv; n++) {
        real y = 0;
        for (int e = 0; e < Dc; e++) y += wUv[((long)h * Dv + n) * Dc + e] * ol[row * Dc + e];
        o[row * Dv + n] = y;
    }
}

// One query row: s_ij = scale·(qa_i · ka_j + q_pe_i · k_pe_j), out_i = Σ softmax_j(s_ij) w_j. ka and w hold either
// one row per (b, j, h) (heads = H) or one per (b, j) shared by all heads (heads = 1).
__kernel void mla_rows(__global const real* qa, __global const real* qPe, __global const real* ka, __global const real* kPe,
                       __global const real* w, __global real* out, __global real* lse,
                       const int B, const int Tq, const int Sk, const int H, const int heads,
                       const int Da, const int Dr, const int Dw, const real scale, const int causal)
{
    const long row = get_global_id(0);
    if (row >= (long)B * Tq * H) return;
    const int h = (int)(row % H), i = (int)(row / H % Tq), b = (int)(row / H / Tq);
    const int end = causal ? clamp(i + Sk - Tq + 1, 0, Sk) : Sk;
    __global const real* qai = qa + row * Da;
    __global const real* qpi = qPe + row * Dr;
    __global real* oi = out + row * Dw;
    for (int d = 0; d < Dw; d++) oi[d] = 0;
    real m = -INFINITY, l = 0;
    for (int j = 0; j < end; j++) {
        const long key = ((long)b * Sk + j) * heads + (heads == 1 ? 0 : h);
        __global const real* kaj = ka + key * Da;
        __global const real* kpj = kPe + ((long)b * Sk + j) * Dr;
        __global const real* wj = w + key * Dw;
        real nope = 0, rope = 0;
        for (int d = 0; d < Da; d++) nope += qai[d] * kaj[d];
        for (int d = 0; d < Dr; d++) rope += qpi[d] * kpj[d];
        const real s = scale * (nope + rope);
        const real mNew = (isnan(s) || s > m) ? s : m;  // NaN wins, as in the reference's max
        const real alpha = exp(m - mNew), p = exp(s - mNew);
        l = l * alpha + p;
        for (int d = 0; d < Dw; d++) oi[d] = oi[d] * alpha + p * wj[d];
        m = mNew;
    }
    if (end == 0) { lse[row] = -INFINITY; return; }
    for (int d = 0; d < Dw; d++) oi[d] /= l;
    lse[row] = m + log(l);
}
