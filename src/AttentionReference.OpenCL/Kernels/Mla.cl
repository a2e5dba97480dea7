// Multi-head latent attention — the OpenCL twin of Forms/Softmax/Mla.cs, same symbols.
//   naive:    kn_j = W_UK[h] c_j,  v_j = W_UV[h] c_j,  s_ij = scale·(q_nope_i · kn_j + q_pe_i · k_pe_j),  o_i = Σ softmax_j(s_ij) v_j
//   absorbed: ql_i = W_UK[h]ᵀ q_nope_i,  s_ij = scale·(ql_i · c_j + q_pe_i · k_pe_j),  ol_i = Σ softmax_j(s_ij) c_j,  o_i = W_UV[h] ol_i
//   allowed keys: j < end_i = min(Sk, i + Sk − Tq + 1) if causal (bottom-right), else all; none: o_i = 0, lse_i = −∞.
//
// Both variants are ordinary softmax attention once the RoPE part is concatenated to the other part of the score,
// q'·k' = q_nope·kn + q_pe·k_pe, so the attention itself is Softmax.cl's softmax_tiled (SoftmaxKernels.AttendDense:
// register-blocked tiles of 64 queries × 64 keys, any K, value columns in passes of 128, same lse); this file only
// builds its inputs and finishes its output (MlaKernels.cs launches them):
//   naive:    q'  = [q_nope ; q_pe]  [B,Tq,H,Dn+Dr]      (mla_place ×2)
//             k'  = [kn ; k_pe]      [B,Sk,H,Dn+Dr]      (mla_project writes kn into k', mla_place broadcasts k_pe to every head)
//             v   = W_UV c           [B,Sk,H,Dv]         (mla_project)
//             softmax_tiled with Hq = Hkv = H, K = Dn+Dr, V = Dv                      →  o, lse
//   absorbed: q'' = [ql ; q_pe]      [B,Tq,H,Dc+Dr]      (mla_project writes ql = W_UKᵀ q_nope into q'', mla_place)
//             k'' = [c ; k_pe]       [B,Sk,1,Dc+Dr]      (mla_place ×2: one KV head shared by all H heads, as MQA)
//             v'' = c itself         [B,Sk,1,Dc]         (the latent cache, read in place)
//             softmax_tiled with Hq = H, Hkv = 1, K = Dc+Dr, V = Dc (Dc/128 passes)  →  ol, lse
//             o = W_UV ol            [B,Tq,H,Dv]         (mla_project)
// Why: one register-blocked attention kernel, held to the CPU laws, rather than a second one; its lse and empty rows
// are the CPU form's. Its value passes recompute the scores, so absorbed (V = Dc = 512: 4 passes over K = 576) does
// ≈ 2.6× the attention FMAs of the algorithm; naive (K = Dn+Dr, V = Dv = 128) one pass.
// The up-projections are the three products of Mla.cs (UpProject, the absorbed query, the output projection), each a
// matrix product per head, done by one tiled kernel, mla_project.

// y_h = x_h w_h for every head h: y_h[m, n] = Σ_e x_h[m, e] · w_h[e, n] over e in order, with
//   x_h[m, e] = x[h·xHead + m·ldx + e],   w_h[e, n] = w[h·wHead + e·wE + n·wN],   y_h[m, n] = y[h·yHead + m·ldy + n].
// One work-group of 16 × 16 items per 64 × 64 tile of y_h; each item holds a 4 × 4 block (rows ty + 16a, columns tx + 16c)
// in registers while chunks of 16 of the e axis pass through local memory. The weights are read along whichever of
// e (wE = 1: W_UK c, W_UV c, W_UV ol read rows of W) or n (wN = 1: W_UKᵀ q_nope) is contiguous, so loads coalesce.
#define PT 64                      // rows and columns of y per tile
#define PE 16                      // e per chunk
#define PG 16                      // the 16 × 16 items
#define PR (PT / PG)               // rows (and columns) per item
#define PT_STRIDE (PT + 1)

__kernel __attribute__((reqd_work_group_size(PG * PG, 1, 1)))
void mla_project(__global const real* x, __global const real* w, __global real* y,
                 const int M, const int N, const int E, const int H,
                 const int xHead, const int ldx, const int wHead, const int wE, const int wN, const int yHead, const int ldy)
{
    __local real xs[PE * PT_STRIDE], ws[PE * PT_STRIDE];   // [e][m] and [e][n]
    const int tilesN = (N + PT - 1) / PT, tilesM = (M + PT - 1) / PT;
    int g = get_group_id(0);
    const int tn = g % tilesN; g /= tilesN;
    const int tm = g % tilesM;
    const int h = g / tilesM;
    if (h >= H) return;
    const int m0 = tm * PT, n0 = tn * PT;
    const int t = get_local_id(0), ty = t / PG, tx = t % PG;
    __global const real* xh = x + (long)h * xHead;
    __global const real* wh = w + (long)h * wHead;

    real acc[PR][PR];
    #pragma unroll
    for (int a = 0; a < PR; a++)
        #pragma unroll
        for (int c = 0; c < PR; c++) acc[a][c] = 0;

    for (int e0 = 0; e0 < E; e0 += PE) {
        barrier(CLK_LOCAL_MEM_FENCE);                       // the previous chunk is no longer read
        // x chunk: 64 rows × 16 e, e fastest (rows of x are contiguous in e).
        #pragma unroll
        for (int u = 0; u < PT * PE / (PG * PG); u++) {
            const int item = t + PG * PG * u, r = item / PE, e = item % PE;
            const int m = m0 + r, ee = e0 + e;
            xs[e * PT_STRIDE + r] = m < M && ee < E ? xh[(long)m * ldx + ee] : 0;
        }
        // w chunk: 16 e × 64 n, along the contiguous axis.
        #pragma unroll
        for (int u = 0; u < PT * PE / (PG * PG); u++) {
            const int item = t + PG * PG * u;
            const int e = wE == 1 ? item % PE : item / PT, c = wE == 1 ? item / PE : item % PT;
            const int n = n0 + c, ee = e0 + e;
            ws[e * PT_STRIDE + c] = n < N && ee < E ? wh[(long)ee * wE + (long)n * wN] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        #pragma unroll
        for (int e = 0; e < PE; e++) {
            real xa[PR], wc[PR];
            #pragma unroll
            for (int a = 0; a < PR; a++) xa[a] = xs[e * PT_STRIDE + ty + PG * a];
            #pragma unroll
            for (int c = 0; c < PR; c++) wc[c] = ws[e * PT_STRIDE + tx + PG * c];
            #pragma unroll
            for (int a = 0; a < PR; a++)
                #pragma unroll
                for (int c = 0; c < PR; c++) acc[a][c] = fma(xa[a], wc[c], acc[a][c]);
        }
    }
    __global real* yh = y + (long)h * yHead;
    #pragma unroll
    for (int a = 0; a < PR; a++) {
        const int m = m0 + ty + PG * a;
        #pragma unroll
        for (int c = 0; c < PR; c++) {
            const int n = n0 + tx + PG * c;
            if (m < M && n < N) yh[(long)m * ldy + n] = acc[a][c];
        }
    }
}

// One part of concatenated rows: dst[r·ldd + offset + d] = src[(r / share)·width + d] for r < rows, d < width
// (share = H broadcasts one cache row, k_pe_j, to the H heads of key j; share = 1 copies row for row).
__kernel void mla_place(__global real* dst, const int ldd, const int offset, __global const real* src, const int width,
                        const int rows, const int share)
{
    const long item = get_global_id(0);
    if (item >= (long)rows * width) return;
    const long r = item / width;
    const int d = (int)(item % width);
    dst[r * ldd + offset + d] = src[r / share * width + d];
}
