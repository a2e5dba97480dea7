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
// online softmax of FlashAttention-2; softmax_tiled has one work-group per (sequence, head, block of BR queries, part)
// (see below); softmax_merge one work-item per query row.

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
// softmax_tiled: FlashAttention-2's blocking on one work-group of BR·BC work-items per (sequence, head, block of BR
// queries, part); blocks[2g ..] = (sequence, first query) of query block g. Q's block stays in local memory; keys and
// values stream through in tiles of BC. Work-item (r, c) computes the score of query row r against key c of the
// tile; the row's BC work-items then share the tile's max and probabilities, and each keeps V/BC of the row's output
// columns (d = c, c + BC, ...) in registers:
//   m_new = max(m, max_c s_rc),  α = exp(m − m_new),  p_rc = exp(s_rc − m_new)
//   l ← α·l + Σ_c p_rc,          o_r ← α·o_r + Σ_c p_rc v_c,          and at the end o_r /= l, lse_r = m + ln l.
// A key outside A_i is marked p = −1 and never read (a NaN in its v stays out, as in the reference); a row that
// never sees a key keeps l = 0: o = 0, lse = −∞. Local rows are padded by one element so that the BC work-items of
// a row read different banks.
#define BR 16
#define BC 8
#define MAX_COLUMNS_PER_ITEM 16   // V ≤ BC·16 = 128 in this kernel; the host falls back to softmax_rows beyond

__kernel __attribute__((reqd_work_group_size(BR * BC, 1, 1)))
void softmax_tiled(
    __global const real* q, __global const real* k, __global const real* v, __global const real* bias,
    __global const real* slopes, __global real* o, __global real* lse,
    __global const int* seqs, __global const int* keyRows, __global const int* blocks, const int blockCount,
    const int B, const int Tq, const int Hq, const int Hkv, const int K, const int V,
    const real scale, const real softcap, const int hasSlopes, const int slopesPerBatch,
    const int windowLeft, const int windowRight, const int hasMask, const int maskStrideB, const int maskStrideH,
    const int maskStrideT, const int maskStrideU, const int parts,
    __local real* Qs, __local real* Ks, __local real* Vs, __local real* S)
{
    const int group = get_group_id(0);
    const int block = group % blockCount, h = group / blockCount % Hq, part = group / blockCount / Hq;
    __global const int* seq = seqs + SEQ_FIELDS * blocks[2 * block];
    const int b = seq[0], queryStart = seq[1], tq = seq[2], keyStart = seq[3], tk = seq[4], offset = seq[5];
    __global const int* rowsOfKeys = keyRows + seq[6];
    const int i0 = blocks[2 * block + 1];
    const int hk = h / (Hq / Hkv);
    const int t = get_local_id(0), r = t / BC, c = t % BC;
    const int i = i0 + r;                               // this work-item's query row in its sequence
    const int qStride = K + 1, kStride = K + 1;
    const long rows = (long)B * Tq * Hq;

    // Load the block's queries (rows past the sequence's Tq are zero and never written back).
    for (int e = t; e < BR * K; e += BR * BC) {
        const int rr = e / K, d = e % K, ii = i0 + rr;
        Qs[rr * qStride + d] = ii < tq ? q[(((long)b * Tq + queryStart + ii) * Hq + h) * K + d] : 0;
    }

    // The keys any row of the block may see: the union of the rows' windows, within the part.
    const int lastRow = min(tq, i0 + BR) - 1;
    long lo, hi, unused, first, end;
    key_range((long)i0 + offset, tk, windowLeft, windowRight, part, parts, &lo, &unused);
    key_range((long)lastRow + offset, tk, windowLeft, windowRight, part, parts, &unused, &hi);
    const long diagonal = (long)i + offset;
    key_range(diagonal, tk, windowLeft, windowRight, part, parts, &first, &end);
    const real slope = hasSlopes ? slopes[slopesPerBatch ? b * Hq + h : h] : 0;

    real acc[MAX_COLUMNS_PER_ITEM];
    for (int u = 0; u < MAX_COLUMNS_PER_ITEM; u++) acc[u] = 0;
    real m = -INFINITY, l = 0;

    for (long j0 = lo; j0 < hi; j0 += BC) {
        barrier(CLK_LOCAL_MEM_FENCE);                   // the previous tile is no longer read
        for (int e = t; e < BC * K; e += BR * BC) {
            const int cc = e / K, d = e % K; const long j = j0 + cc;
            Ks[cc * kStride + d] = j < hi ? k[((long)rowsOfKeys[j] * Hkv + hk) * K + d] : 0;
        }
        for (int e = t; e < BC * V; e += BR * BC) {
            const int cc = e / V, d = e % V; const long j = j0 + cc;
            Vs[cc * V + d] = j < hi ? v[((long)rowsOfKeys[j] * Hkv + hk) * V + d] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 1. s_rc, or −∞ where key j0 + c is not allowed for row i.
        const long j = j0 + c;
        real s = -INFINITY;
        bool allowed = false;
        if (i < tq && j >= first && j < end) {
            const real mb = mask_bias(bias, hasMask, (int4)(maskStrideB, maskStrideH, maskStrideT, maskStrideU), b, h, queryStart + i, keyStart + j);
            if (mb != -INFINITY) {
                allowed = true;
                s = 0;
                for (int d = 0; d < K; d++) s += Qs[r * qStride + d] * Ks[c * kStride + d];
                s *= scale;
                if (softcap > 0) s = softcap * tanh(s / softcap);
                if (hasSlopes) s -= slope * fabs((real)(diagonal - j));
                s += mb;
            }
        }
        S[r * BC + c] = s;
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. the row's new max (NaN wins, as in the reference), then p_rc (−1 marks a key outside A_i).
        real mNew = m;
        for (int cc = 0; cc < BC; cc++) { const real x = S[r * BC + cc]; mNew = (isnan(x) || x > mNew) ? x : mNew; }
        const real alpha = (m == mNew) ? 1 : exp(m - mNew);
        barrier(CLK_LOCAL_MEM_FENCE);                   // every item of the row has read the scores
        S[r * BC + c] = allowed ? exp(s - mNew) : -1;
        barrier(CLK_LOCAL_MEM_FENCE);

        // 3. l ← α·l + Σ p,  o ← α·o + Σ p v  (this item's columns d = c + BC·u), over allowed keys only.
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
    }

    if (i >= tq) return;
    const long slot = part * rows + ((long)b * Tq + queryStart + i) * Hq + h;
    // l = 0 only for a row that saw no key (the max term alone contributes exp(0) = 1); a NaN l must propagate.
    for (int u = 0; u * BC + c < V; u++) o[slot * V + u * BC + c] = l != 0 ? acc[u] / l : 0;
    if (c == 0) lse[slot] = l != 0 ? m + log(l) : -INFINITY;
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
