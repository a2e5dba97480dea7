// Softmax attention — the OpenCL twin of Forms/Softmax/Softmax.cs, same symbols.
//   s_ij = scale · q_i · k_j;  s_ij ← c·tanh(s_ij/c) (softcap);  s_ij ← s_ij − slope_h·|i + off − j| (ALiBi);
//   s_ij ← s_ij + mask_ij (the host turns a bool mask into 0 / −∞)
//   allowed j: i + off − wl ≤ j ≤ i + off + wr (off = Tk − Tq bottom-right, 0 top-left; −1 = unbounded), mask ≠ −∞
//   o_i = Σ_j exp(s_ij − m_i) v_j / l_i,  lse_i = m_i + ln l_i;  no allowed key: o_i = 0, lse_i = −∞.
//
// Sequences. The host flattens batch entries, varlen sequences and (paged) KV caches into one table, as
// SoftmaxProblem does: sequence n = seqs[7n ..] = (batch, query start, Tq_n, key start, Tk_n, diagonal offset, offset
// of its key rows); key j of sequence n is row keyRows[seqs[7n+6] + j] of k and v seen as [rows, Hkv, D] (contiguous,
// packed or paged alike); the mask is indexed by (batch, h, query start + i, key start + j) through broadcast strides.
//
// Split-KV. With P = parts > 1 each sequence's keys are cut into P parts of ⌈Tk/P⌉ keys; kernel instance p computes
// the partial (o_p, lse_p) over A_i ∩ part p into slot p of [P, rows, ...], and softmax_merge combines them:
//   lse = M + ln Σ_p exp(lse_p − M) (M = max_p lse_p),   o = Σ_p exp(lse_p − lse) o_p.
// With P = 1 the kernels write o and lse directly.
//
// Parallel decomposition: softmax_rows has one work-item per (query row, part), streaming over the keys with the
// online softmax of FlashAttention-2; softmax_tiled has one work-group of 256 items per (block of 64 queries of a
// sequence, head, part, pass of 128 value columns), register-blocked (see below); softmax_merge one work-item per
// query row.

#define SEQ_FIELDS 7

// The keys [first, end) of query i of a sequence that its window and its part leave (empty: first ≥ end).
inline void key_range(const long diagonal, const int tk, const int windowLeft, const int windowRight,
                      const int part, const int parts, long* first, long* end)
{
    const long size = ((long)tk + parts - 1) / parts;
    const long partFirst = part * size, partEnd = min((long)tk, partFirst + size);
    *first = max(partFirst, windowLeft < 0 ? 0L : diagonal - windowLeft);
    *end = min(partEnd, windowRight < 0 ? (long)tk : diagonal + windowRight + 1);
}

// The mask's bias for (batch b, head h, packed query t, packed key u): 0 without a mask.
inline real mask_bias(__global const real* bias, const int hasMask, const int4 strides, const int b, const int h, const long t, const long u)
{
    return hasMask ? bias[(long)b * strides.x + (long)h * strides.y + t * strides.z + u * strides.w] : 0;
}

__kernel void softmax_rows(
    __global const real* q, __global const real* k, __global const real* v, __global const real* bias,
    __global const real* slopes, __global real* o, __global real* lse,
    __global const int* seqs, __global const int* keyRows, __global const int* rowSeq,
    const int B, const int Tq, const int Hq, const int Hkv, const int K, const int V,
    const real scale, const real softcap, const int hasSlopes, const int slopesPerBatch,
    const int windowLeft, const int windowRight, const int hasMask, const int maskStrideB, const int maskStrideH,
    const int maskStrideT, const int maskStrideU, const int parts)
{
    const long rows = (long)B * Tq * Hq;
    const long gid = get_global_id(0);
    if (gid >= rows * parts) return;
    const int part = (int)(gid / rows);
    const long row = gid % rows;
    const int h = (int)(row % Hq);
    const long bt = row / Hq;
    __global real* oi = o + gid * V;
    for (int d = 0; d < V; d++) oi[d] = 0;
    const int n = rowSeq[bt];
    if (n < 0) { lse[gid] = -INFINITY; return; }
    __global const int* seq = seqs + SEQ_FIELDS * n;
    const int b = seq[0], i = (int)(bt % Tq) - seq[1], tk = seq[4];
    const int hk = h / (Hq / Hkv);
    const long diagonal = (long)i + seq[5];
    long first, end;
    key_range(diagonal, tk, windowLeft, windowRight, part, parts, &first, &end);

    __global const real* qi = q + row * K;
    const real slope = hasSlopes ? slopes[slopesPerBatch ? b * Hq + h : h] : 0;
    real m = -INFINITY, l = 0;
    for (long j = first; j < end; j++) {
        const real mb = mask_bias(bias, hasMask, (int4)(maskStrideB, maskStrideH, maskStrideT, maskStrideU), b, h, seq[1] + i, seq[3] + j);
        if (mb == -INFINITY) continue;                 // not in A_i: never read
        const long key = (long)keyRows[seq[6] + j] * Hkv + hk;
        __global const real* kj = k + key * K;
        __global const real* vj = v + key * V;
        real s = 0;
        for (int d = 0; d < K; d++) s += qi[d] * kj[d];
        s *= scale;
        if (softcap > 0) s = softcap * tanh(s / softcap);
        if (hasSlopes) s -= slope * fabs((real)(diagonal - j));
        s += mb;
        // NaN must win, as in the reference's max: once m is NaN it stays NaN and poisons o and lse.
        const real mNew = (isnan(s) || s > m) ? s : m;
        const real alpha = exp(m - mNew), p = exp(s - mNew);
        l = l * alpha + p;
        for (int d = 0; d < V; d++) oi[d] = oi[d] * alpha + p * vj[d];
        m = mNew;
    }
    // l = 0 only for a row (part) without an allowed key; a NaN l must propagate.
    if (l == 0) { for (int d = 0; d < V; d++) oi[d] = 0; lse[gid] = -INFINITY; return; }
    for (int d = 0; d < V; d++) oi[d] /= l;
    lse[gid] = m + log(l);
}

// ---------------------------------------------------------------------------------------------------------------
// softmax_tiled: FlashAttention-2's loop (Dao 2023, Algorithm 1) with register blocking, for GPUs.
//
// Blocking. One work-group of 256 work-items per (query block of BR = 64 rows, head, part, pass of VP = 128 value
// columns); blocks[2g ..] = (sequence, first query) of query block g, heaviest first (the host sorts them, so the
// causal staircase leaves no long tail). The work-items form a 16 × 16 grid (ty, tx) and item (ty, tx) owns
//   rows     r_a = ty + 16a              (a < TR = 4) of the block: its m, its share of l, its output rows;
//   keys     c_b = tx + 16b              (b < TC = 4) of each key tile of BC = 64: a 4 × 4 micro-tile of S;
//   columns  2tx + 32e, 2tx + 32e + 1    (e < 4) of the pass: a 4 × 8 micro-tile of O, in registers throughout.
// Keys stream in tiles of BC = 64, only those between the first key of the block's first row and the last key of its
// last row (causal: no tile above the diagonal is ever loaded). Per tile:
//   1. S = Q Kᵀ in chunks of DK = 8 head dims: the chunk of Q (64 × 8) and of K (64 × 8) goes through local memory,
//      coalesced (8 items read one 64-byte piece of a row), the next chunk is read into registers while this one is
//      multiplied; each item accumulates its 16 scores with 4 + 4 real2 loads per 32 fmas per pair of dims.
//   2. scale, softcap, ALiBi, mask bias, the window/part/padding test (−∞ and a clear "allowed" bit outside A_i);
//      each item's max over its 4 keys per row goes to local memory, and every item of a row takes the row's max
//      m_new over the 16 partials (NaN wins, as in the reference); α = exp(m − m_new), p = exp(s − m_new) written to
//      the tile's P (64 × 64 in local memory; −0 marks a key outside A_i), l_part ← α·l_part + Σ_b p, O ← α·O.
//   3. O += P V in sub-tiles of VK = 8 keys × 128 columns of V through local memory (one 1 KiB row per key,
//      coalesced, next sub-tile prefetched into registers): 4 + 8 real2 loads per 64 fmas per pair of keys. A
//      sub-tile whose V holds a NaN or ±∞ (a flag set while loading it) takes a slower loop that skips the keys
//      marked −0, so a NaN in a v outside A_i reaches nothing, as in the reference; otherwise −0·v adds nothing.
// At the end the 16 partial sums of each row give l; o = O / l and lse = m + ln l (l = 0: the row saw no key,
// o = 0, lse = −∞). Any K (chunks of 8, zero-padded) and any V (passes of 128 columns; each pass recomputes S).
//
// Why it should be fast. Per (64-row block, 64-key tile) a group does 64·64·(K + V) fmas (2 MFLOP at K = V = 128)
// for 3·64·128 reals read from global memory (Q's chunks again per tile, K, V: 196 KB in f64, ~11 FLOP/byte, and
// K, V are shared through L2 by the 128 query blocks of a head). Local memory is the tighter limit: an H100 SM
// retires 64 f64 fmas per cycle but local memory returns 32 registers (16 doubles) per cycle, so each double loaded
// must feed ≥ 4 fmas. Per item and pair of dims S takes 8 real2 loads (16 doubles) for 32 fmas, and per pair of keys
// P V takes 12 (24 doubles) for 64 fmas; the warp layout below makes every one of those loads pair-uniform, which
// the hardware returns in half the cycles: ≈ 4 and 5.3 fmas per double returned, so the fma pipes can stay busy.
// Strides of DK + 2 and BC + 2 reals keep the 4 (8) rows a warp reads in different banks. Per item: 16 + 32
// accumulators, 4 + 4 running values, ~24 operand registers (< 128 reals); local memory 5504 reals (43 KB in f64).
// The exps (16 per item per tile) are 1 per 256 fmas at K + V = 256.
//
// Precision. The dot products q·k and Σ p v use fma(): a sum of n products has a rounding error of about
// n·ε·Σ|a_i b_i| whether or not each product is rounded first, so fusing them moves results by rounding only (the
// reference's own TensorPrimitives.Dot sums in another order anyway); the softmax steps round as the reference does.
#ifdef USE_F64
typedef double2 real2;               // two reals: one 16-byte (f64) local load
#else
typedef float2 real2;
#endif
#define BR 64                        // query rows per work-group
#define BC 64                        // keys per tile
#define GRID 16                      // the 16 × 16 work-items: ty, tx < GRID
#define TR (BR / GRID)               // rows per item: r_a = ty + 16a
#define TC (BC / GRID)               // keys per item in S: c_b = tx + 16b
#define DK 8                         // head dims per chunk of Q and K in local memory
#define VK 8                         // keys per sub-tile of V in local memory
#define VP 128                       // value columns per pass
#define TV (VP / (2 * GRID))         // real2 columns per item: 2tx + 32e, e < TV
#define QK_STRIDE (DK + 2)           // padded rows: real2 loads of 4 (8) rows hit different banks
#define P_STRIDE (BC + 2)
#define RED_STRIDE (GRID + 1)
#define STAGE_REALS (2 * BR * QK_STRIDE) // ≥ VK·VP and BR·RED_STRIDE: the chunks, the V sub-tile and the row partials share it
#define V_LOADS (VK * VP / (GRID * GRID)) // reals of a V sub-tile each item copies

// v_j[column] of key j of the sequence (0 past the tile's last key or past V).
inline real value_at(__global const real* v, __global const int* rowsOfKeys, const long j, const long hi, const int Hkv, const int hk,
                     const int V, const int column)
{
    return j < hi && column < V ? v[((long)rowsOfKeys[j] * Hkv + hk) * V + column] : 0;
}

__kernel __attribute__((reqd_work_group_size(GRID * GRID, 1, 1)))
void softmax_tiled(
    __global const real* q, __global const real* k, __global const real* v, __global const real* bias,
    __global const real* slopes, __global real* o, __global real* lse,
    __global const int* seqs, __global const int* keyRows, __global const int* blocks, const int blockCount,
    const int B, const int Tq, const int Hq, const int Hkv, const int K, const int V,
    const real scale, const real softcap, const int hasSlopes, const int slopesPerBatch,
    const int windowLeft, const int windowRight, const int hasMask, const int maskStrideB, const int maskStrideH,
    const int maskStrideT, const int maskStrideU, const int parts)
{
    // Local memory, as real2 so that every real2 load below is aligned (all offsets are even).
    __local real2 pTile[BR * P_STRIDE / 2], stage[STAGE_REALS / 2];
    __local int badSubTile;
    __local real* P = (__local real*)pTile;
    __local real* Qs = (__local real*)stage;                    // step 1: Q chunk [BR][QK_STRIDE]
    __local real* Ks = Qs + BR * QK_STRIDE;                      //         K chunk [BC][QK_STRIDE]
    __local real* Vs = (__local real*)stage;                    // step 3: V sub-tile [VK][VP]
    __local real* red = (__local real*)stage;                   // step 2 and the end: row partials [BR][RED_STRIDE]

    // Which (block, head, part, pass): heads vary fastest, so the heaviest block of every head is launched first.
    const int passes = (V + VP - 1) / VP;
    int g = get_group_id(0);
    const int h = g % Hq; g /= Hq;
    const int part = g % parts; g /= parts;
    const int pass = g % passes;
    const int block = g / passes;
    __global const int* seq = seqs + SEQ_FIELDS * blocks[2 * block];
    const int b = seq[0], queryStart = seq[1], tq = seq[2], keyStart = seq[3], tk = seq[4], offset = seq[5];
    __global const int* rowsOfKeys = keyRows + seq[6];
    const int i0 = blocks[2 * block + 1];
    const int hk = h / (Hq / Hkv);
    const long rows = (long)B * Tq * Hq;
    const int4 maskStrides = (int4)(maskStrideB, maskStrideH, maskStrideT, maskStrideU);
    const real slope = hasSlopes ? slopes[slopesPerBatch ? b * Hq + h : h] : 0;
    const int col0 = pass * VP;

    // A warp (32 items) is 4 rows × 8 columns of the grid: its loads of Q, P rows and K, V rows touch 4 and 8
    // addresses, in different banks. Lane bits: 0 and 4 pick the row, 1-3 the column, so lanes n and n^1 share a column
    // (K, V loads) and lanes n and n^2 a row (Q, P loads): NVIDIA GPUs return such pair-uniform loads in half the
    // cycles, and local memory returns only 32 registers per cycle per SM, so this halves the loads' cost.
    const int t = get_local_id(0), warp = t / 32, lane = t % 32;
    const int ty = (warp / 2) * 4 + ((lane >> 4) << 1 | (lane & 1)), tx = (warp % 2) * 8 + ((lane >> 1) & 7);
    if (t == 0) badSubTile = 0;

    // The keys each of this item's rows may see (rows past the sequence: none), and the block's union of them.
    int first[TR], end[TR];
    #pragma unroll
    for (int a = 0; a < TR; a++) {
        const int i = i0 + ty + GRID * a;
        long f = 0, e = 0;
        if (i < tq) key_range((long)i + offset, tk, windowLeft, windowRight, part, parts, &f, &e);
        first[a] = (int)f; end[a] = (int)max(f, e);
    }
    const int lastRow = min(tq, i0 + BR) - 1;
    long lo, hi, unused;
    key_range((long)i0 + offset, tk, windowLeft, windowRight, part, parts, &lo, &unused);
    key_range((long)lastRow + offset, tk, windowLeft, windowRight, part, parts, &unused, &hi);

    // The global rows this item copies: Q chunk rows t/8 and t/8 + 32 (dim t % 8), V sub-tile keys t/128 + 2u (column t % 128).
    const int loadRow = t / DK, loadDim = t % DK;
    __global const real* qRow[2];
    #pragma unroll
    for (int u = 0; u < 2; u++) {
        const int i = i0 + loadRow + 32 * u;
        qRow[u] = i < tq ? q + (((long)b * Tq + queryStart + i) * Hq + h) * K : 0;
    }
    const int vKey = t / VP, vColumn = t % VP;

    real m[TR], lPart[TR];
    real2 acc[TR][TV];
    #pragma unroll
    for (int a = 0; a < TR; a++) {
        m[a] = -INFINITY; lPart[a] = 0;
        #pragma unroll
        for (int e = 0; e < TV; e++) acc[a][e] = 0;
    }

    const int chunks = (K + DK - 1) / DK;
    int subTileId = 0;
    for (long j0 = lo; j0 < hi; j0 += BC) {
        // ---- 1. S = Q Kᵀ over chunks of DK dims.
        __global const real* kRow[2];
        #pragma unroll
        for (int u = 0; u < 2; u++) {
            const long j = j0 + loadRow + 32 * u;
            kRow[u] = j < hi ? k + ((long)rowsOfKeys[j] * Hkv + hk) * K : 0;
        }
        real qNext[2], kNext[2];
        #pragma unroll
        for (int u = 0; u < 2; u++) {
            qNext[u] = qRow[u] && loadDim < K ? qRow[u][loadDim] : 0;
            kNext[u] = kRow[u] && loadDim < K ? kRow[u][loadDim] : 0;
        }
        real s[TR][TC];
        #pragma unroll
        for (int a = 0; a < TR; a++)
            #pragma unroll
            for (int c = 0; c < TC; c++) s[a][c] = 0;
        for (int chunk = 0; chunk < chunks; chunk++) {
            barrier(CLK_LOCAL_MEM_FENCE);               // the stage is no longer read (previous chunk, sub-tile or partials)
            #pragma unroll
            for (int u = 0; u < 2; u++) {
                Qs[(loadRow + 32 * u) * QK_STRIDE + loadDim] = qNext[u];
                Ks[(loadRow + 32 * u) * QK_STRIDE + loadDim] = kNext[u];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            const int d = (chunk + 1) * DK + loadDim;    // the next chunk, read while this one is multiplied
            #pragma unroll
            for (int u = 0; u < 2; u++) {
                qNext[u] = qRow[u] && d < K ? qRow[u][d] : 0;
                kNext[u] = kRow[u] && d < K ? kRow[u][d] : 0;
            }
            #pragma unroll
            for (int dd = 0; dd < DK; dd += 2) {
                real2 qa[TR], kc[TC];
                #pragma unroll
                for (int a = 0; a < TR; a++) qa[a] = *(__local const real2*)(Qs + (ty + GRID * a) * QK_STRIDE + dd);
                #pragma unroll
                for (int c = 0; c < TC; c++) kc[c] = *(__local const real2*)(Ks + (tx + GRID * c) * QK_STRIDE + dd);
                #pragma unroll
                for (int a = 0; a < TR; a++)
                    #pragma unroll
                    for (int c = 0; c < TC; c++) s[a][c] = fma(qa[a].y, kc[c].y, fma(qa[a].x, kc[c].x, s[a][c]));
            }
        }

        // ---- 2. Scores, the rows' new max, P and the rescaling.
        uint allowed = 0;                               // bit a·TC + c: key c_c is in A_i of row r_a
        real rowMax[TR];
        #pragma unroll
        for (int a = 0; a < TR; a++) {
            rowMax[a] = -INFINITY;
            #pragma unroll
            for (int c = 0; c < TC; c++) {
                const long j = j0 + tx + GRID * c;
                real x = -INFINITY;
                if (j >= first[a] && j < end[a]) {
                    const real mb = mask_bias(bias, hasMask, maskStrides, b, h, queryStart + i0 + ty + GRID * a, keyStart + j);
                    if (mb != -INFINITY) {
                        allowed |= 1u << (a * TC + c);
                        x = s[a][c] * scale;
                        if (softcap > 0) x = softcap * tanh(x / softcap);
                        if (hasSlopes) x -= slope * fabs((real)((long)i0 + ty + GRID * a + offset - j));
                        x += mb;
                    }
                }
                s[a][c] = x;
                rowMax[a] = (isnan(x) || x > rowMax[a]) ? x : rowMax[a];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);                   // the last chunk is no longer read
        #pragma unroll
        for (int a = 0; a < TR; a++) red[(ty + GRID * a) * RED_STRIDE + tx] = rowMax[a];
        barrier(CLK_LOCAL_MEM_FENCE);
        #pragma unroll
        for (int a = 0; a < TR; a++) {
            real mNew = m[a];
            for (int x = 0; x < GRID; x++) {
                const real y = red[(ty + GRID * a) * RED_STRIDE + x];
                mNew = (isnan(y) || y > mNew) ? y : mNew;   // NaN wins, as in the reference's max
            }
            const real alpha = (m[a] == mNew) ? 1 : exp(m[a] - mNew);
            real rowSum = 0;
            #pragma unroll
            for (int c = 0; c < TC; c++) {
                const bool kept = (allowed >> (a * TC + c)) & 1u;
                const real p = kept ? exp(s[a][c] - mNew) : -(real)0;
                if (kept) rowSum += p;
                P[(ty + GRID * a) * P_STRIDE + tx + GRID * c] = p;
            }
            lPart[a] = lPart[a] * alpha + rowSum;
            #pragma unroll
            for (int e = 0; e < TV; e++) acc[a][e] *= alpha;
            m[a] = mNew;
        }

        // ---- 3. O += P V over sub-tiles of VK keys.
        real vNext[V_LOADS];
        #pragma unroll
        for (int u = 0; u < V_LOADS; u++) vNext[u] = value_at(v, rowsOfKeys, j0 + vKey + 2 * u, hi, Hkv, hk, V, col0 + vColumn);
        const int subTiles = (int)min((long)(BC / VK), (hi - j0 + VK - 1) / VK);
        for (int sub = 0; sub < subTiles; sub++) {
            subTileId++;
            barrier(CLK_LOCAL_MEM_FENCE);               // the stage is no longer read; P is written
            bool bad = false;
            #pragma unroll
            for (int u = 0; u < V_LOADS; u++) {
                Vs[(vKey + 2 * u) * VP + vColumn] = vNext[u];
                bad |= !isfinite(vNext[u]);
            }
            if (bad) atomic_xchg(&badSubTile, subTileId);
            barrier(CLK_LOCAL_MEM_FENCE);
            if (sub + 1 < subTiles) {
                #pragma unroll
                for (int u = 0; u < V_LOADS; u++) vNext[u] = value_at(v, rowsOfKeys, j0 + (sub + 1) * VK + vKey + 2 * u, hi, Hkv, hk, V, col0 + vColumn);
            }
            __local const real* Psub = P + sub * VK;
            if (badSubTile != subTileId) {
                #pragma unroll
                for (int kk = 0; kk < VK; kk += 2) {
                    real2 pa[TR], v0[TV], v1[TV];
                    #pragma unroll
                    for (int a = 0; a < TR; a++) pa[a] = *(__local const real2*)(Psub + (ty + GRID * a) * P_STRIDE + kk);
                    #pragma unroll
                    for (int e = 0; e < TV; e++) {
                        v0[e] = *(__local const real2*)(Vs + kk * VP + 2 * tx + 2 * GRID * e);
                        v1[e] = *(__local const real2*)(Vs + (kk + 1) * VP + 2 * tx + 2 * GRID * e);
                    }
                    #pragma unroll
                    for (int a = 0; a < TR; a++)
                        #pragma unroll
                        for (int e = 0; e < TV; e++) acc[a][e] = fma((real2)(pa[a].y), v1[e], fma((real2)(pa[a].x), v0[e], acc[a][e]));
                }
            } else {
                // A NaN or ±∞ in this V sub-tile: only keys in A_i (p not marked −0) may read their v.
                for (int kk = 0; kk < VK; kk++) {
                    #pragma unroll
                    for (int a = 0; a < TR; a++) {
                        const real p = Psub[(ty + GRID * a) * P_STRIDE + kk];
                        if (signbit(p)) continue;
                        #pragma unroll
                        for (int e = 0; e < TV; e++) acc[a][e] = fma((real2)(p), *(__local const real2*)(Vs + kk * VP + 2 * tx + 2 * GRID * e), acc[a][e]);
                    }
                }
            }
        }
    }

    // l from the 16 partial sums of each row, then o = O / l and lse = m + ln l.
    barrier(CLK_LOCAL_MEM_FENCE);                       // the stage is no longer read
    #pragma unroll
    for (int a = 0; a < TR; a++) red[(ty + GRID * a) * RED_STRIDE + tx] = lPart[a];
    barrier(CLK_LOCAL_MEM_FENCE);
    #pragma unroll
    for (int a = 0; a < TR; a++) {
        const int i = i0 + ty + GRID * a;
        if (i >= tq) continue;
        real l = 0;
        for (int x = 0; x < GRID; x++) l += red[(ty + GRID * a) * RED_STRIDE + x];
        const long slot = part * rows + ((long)b * Tq + queryStart + i) * Hq + h;
        // l = 0 only for a row that saw no key (its max term alone contributes exp(0) = 1); a NaN l must propagate.
        #pragma unroll
        for (int e = 0; e < TV; e++) {
            const int d = col0 + 2 * tx + 2 * GRID * e;
            if (d < V) o[slot * V + d] = l != 0 ? acc[a][e].x / l : 0;
            if (d + 1 < V) o[slot * V + d + 1] = l != 0 ? acc[a][e].y / l : 0;
        }
        if (tx == 0 && pass == 0) lse[slot] = l != 0 ? m[a] + log(l) : -INFINITY;
    }
}

// The log-sum-exp merge of the P partials of each row, in the reference's order (Softmax.Merge).
__kernel void softmax_merge(__global const real* oParts, __global const real* lseParts, __global real* o, __global real* lse,
                            const int rowCount, const int V, const int parts)
{
    const long rows = rowCount, row = get_global_id(0);
    if (row >= rows) return;
    real M = -INFINITY;
    for (int p = 0; p < parts; p++) { const real x = lseParts[p * rows + row]; M = (isnan(x) || x > M) ? x : M; }
    __global real* oi = o + row * V;
    for (int d = 0; d < V; d++) oi[d] = 0;
    if (M == -INFINITY) { lse[row] = -INFINITY; return; }
    real sum = 0;
    for (int p = 0; p < parts; p++) sum += exp(lseParts[p * rows + row] - M);
    const real total = M + log(sum);
    for (int p = 0; p < parts; p++) {
        const real w = exp(lseParts[p * rows + row] - total);
        __global const real* op = oParts + (p * rows + row) * V;
        for (int d = 0; d < V; d++) oi[d] += w * op[d];
    }
    lse[row] = total;
}
