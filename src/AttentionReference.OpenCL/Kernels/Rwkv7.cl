// RWKV-7 as the DPLR delta rule — the OpenCL twin of Forms/Delta/Rwkv7.cs, same symbols. One head, S is K x V:
//   S_t = Diag(exp(gk_t)) S_{t−1} + b_t (S_{t−1}ᵀ a_t)ᵀ + k_t v_tᵀ        o_t = scale · S_tᵀ q_t
// Chunked (fla's dplr_chunkwise, any chunk size C), in one chunk of m steps from state S:
//   Γ_r = gk_0 + … + gk_r,  Γ⁻_r = Γ_r − gk_r;   w_r = S_{r−1}ᵀ a_r
//   A_ab[r,j] = Σ_d a_r b_j e^{Γ⁻_r − Γ_j},  A_ak[r,j] = Σ_d a_r k_j e^{Γ⁻_r − Γ_j}   (j < r)
//   T = (I − A_ab)⁻¹,  U = T (A_ak V),  W = T Ã (Ã_r = exp(Γ⁻_r) ⊙ a_r),  w = U + W S
//   o_r = scale · ((q_r ⊙ e^{Γ_r})ᵀ S + Σ_{j≤r} [q_r·k_j]_Γ v_j + [q_r·b_j]_Γ w_j)
//   S ← Diag(e^{Γ_{m−1}}) S + Σ_j Diag(e^{Γ_{m−1} − Γ_j}) (k_j v_jᵀ + b_j w_jᵀ)
// Parallel decomposition:
//   rwkv7_recurrent  one work-item per (sequence, head, value column c): column c of the state needs only itself
//                    (S_{t−1}ᵀ a_t read column by column), so the work-item owns S[:,c] (private for K ≤ 128, else in
//                    the final_state buffer, coalesced across c) and streams over t.
//   rwkv7_chunked    one work-group per (sequence, head), chunks in order; inside a chunk the work-items share the
//                    steps: Γ (over d), the four decayed Gram matrices (over (r, j)), T (over columns of T),
//                    A_ak V and W (over (r, c) and (r, d)), then w, o and the next state (over value columns c).
// Loops run in the reference's order with contraction into fma off, so f64 results match the CPU's to rounding.

// The recurrent kernels keep their state column S[:,c] in private memory when K ≤ MAX_PRIVATE_K, else in the
// final_state buffer; S_AT(d) reads and S_PUT(d, x) writes element d either way, and the column is copied out at the end.
#define MAX_PRIVATE_K 128
#define S_AT(d) (inPrivate ? column[d] : s[(d) * V])
#define S_PUT(d, x) do { const real value_ = (x); if (inPrivate) column[d] = value_; else s[(d) * V] = value_; } while (0)

__kernel void rwkv7_recurrent(
    __global const real* q, __global const real* k, __global const real* v, __global const real* a,
    __global const real* bw, __global const real* gk, __global const real* s0, __global const int* seqs,
    __global real* o, __global real* S,
    const int N, const int T, const int H, const int K, const int V, const int hasS0, const real scale)
{
    const long item = get_global_id(0);
    if (item >= (long)N * H * V) return;
    const int c = (int)(item % V), h = (int)(item / V % H), n = (int)(item / V / H);
    const int b = seqs[3 * n], start = seqs[3 * n + 1], length = seqs[3 * n + 2];
    __global real* s = S + ((long)n * H + h) * K * V + c;       // s[d * V] = S[d, c]
    real column[MAX_PRIVATE_K];
    const int inPrivate = K <= MAX_PRIVATE_K;
    for (int d = 0; d < K; d++) S_PUT(d, hasS0 ? s0[((long)n * H + h) * K * V + d * V + c] : 0);

    for (int t = 0; t < length; t++) {
        const long row = ((long)b * T + start + t) * H + h;
        __global const real* qt = q + row * K;
        __global const real* kt = k + row * K;
        __global const real* at = a + row * K;
        __global const real* bt = bw + row * K;
        __global const real* gt = gk + row * K;
        // S_{t−1}ᵀ a_t, column c
        real sa = 0;
        for (int d = 0; d < K; d++) sa += S_AT(d) * at[d];
        // S_t = Diag(exp(gk_t)) S_{t−1} + b_t sa + k_t v_t
        const real vc = v[row * V + c];
        for (int d = 0; d < K; d++) S_PUT(d, exp(gt[d]) * S_AT(d) + bt[d] * sa + kt[d] * vc);
        real sq = 0;
        for (int d = 0; d < K; d++) sq += S_AT(d) * qt[d];
        o[row * V + c] = scale * sq;
    }
    if (inPrivate)
        for (int d = 0; d < K; d++) s[d * V] = column[d];
}

// Scratch per (sequence, head), in reals: Γ, Γ⁻, W C·K each; A_ab, A_ak, T, qk, qb C·C each; A_ak V, w C·V each.
__kernel void rwkv7_chunked(
    __global const real* q, __global const real* k, __global const real* v, __global const real* a,
    __global const real* bw, __global const real* gk, __global const real* s0, __global const int* seqs,
    __global real* o, __global real* S, __global real* scratch,
    const int N, const int T, const int H, const int K, const int V, const int hasS0, const real scale, const int C)
{
    const int pair = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    const int h = pair % H, n = pair / H;
    const int b = seqs[3 * n], start0 = seqs[3 * n + 1], length = seqs[3 * n + 2];
    const long scratchSize = 3L * C * K + 5L * C * C + 2L * C * V;
    __global real* gamma = scratch + pair * scratchSize;   // Γ        [C x K]
    __global real* before = gamma + (long)C * K;           // Γ⁻       [C x K]
    __global real* w = before + (long)C * K;               // W        [C x K]
    __global real* aab = w + (long)C * K;                  // A_ab     [C x C]
    __global real* aak = aab + (long)C * C;                // A_ak     [C x C]
    __global real* tm = aak + (long)C * C;                 // T        [C x C]
    __global real* qk = tm + (long)C * C;                  // [q_r·k_j]_Γ [C x C]
    __global real* qb = qk + (long)C * C;                  // [q_r·b_j]_Γ [C x C]
    __global real* akv = qb + (long)C * C;                 // A_ak V   [C x V]
    __global real* wn = akv + (long)C * V;                 // w        [C x V]
    __global real* s = S + ((long)n * H + h) * K * V;      // s[d * V + c] = S[d, c]

    for (int c = lid; c < V; c += L)
        for (int d = 0; d < K; d++) s[d * V + c] = hasS0 ? s0[((long)n * H + h) * K * V + d * V + c] : 0;

    for (int start = 0; start < length; start += C) {
        const int m = min(C, length - start);
        const long row0 = (long)b * T + start0 + start;
#define ROW(x, r) ((x) + ((row0 + (r)) * H + h) * K)

        // 1. Γ⁻_r, Γ_r relative to the chunk start.
        for (int d = lid; d < K; d += L)
            for (int r = 0; r < m; r++) {
                before[r * K + d] = r == 0 ? 0 : gamma[(r - 1) * K + d];
                gamma[r * K + d] = before[r * K + d] + ROW(gk, r)[d];
            }
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 2. A_ab, A_ak (j < r) and the decayed output scores qk, qb (j ≤ r).
        for (int e = lid; e < m * m; e += L) {
            const int r = e / m, j = e % m;
            if (j > r) continue;
            __global const real* ar = ROW(a, r);
            __global const real* qr = ROW(q, r);
            __global const real* kj = ROW(k, j);
            __global const real* bj = ROW(bw, j);
            if (j < r) {
                real ab = 0, ak = 0;
                for (int d = 0; d < K; d++) {
                    const real ad = ar[d] * exp(before[r * K + d] - gamma[j * K + d]);
                    ab += ad * bj[d];
                    ak += ad * kj[d];
                }
                aab[r * C + j] = ab;
                aak[r * C + j] = ak;
            }
            real sk = 0, sb = 0;
            for (int d = 0; d < K; d++) {
                const real qd = qr[d] * exp(gamma[r * K + d] - gamma[j * K + d]);
                sk += qd * kj[d];
                sb += qd * bj[d];
            }
            qk[r * C + j] = sk;
            qb[r * C + j] = sb;
        }
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 3. T = (I − A_ab)⁻¹, column cT by forward substitution.
        for (int cT = lid; cT < m; cT += L)
            for (int r = 0; r < m; r++) {
                real sum = cT == r ? 1 : 0;
                for (int j = cT; j < r; j++) sum += aab[r * C + j] * tm[j * C + cT];
                tm[r * C + cT] = cT <= r ? sum : 0;
            }
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 4. A_ak V and W = T Ã.
        for (long e = lid; e < (long)m * V; e += L) {
            const int r = (int)(e / V), c = (int)(e % V);
            real sum = 0;
            for (int j = 0; j < r; j++) sum += aak[r * C + j] * v[((row0 + j) * H + h) * V + c];
            akv[r * V + c] = sum;
        }
        for (long e = lid; e < (long)m * K; e += L) {
            const int r = (int)(e / K), d = (int)(e % K);
            real sum = 0;
            for (int j = 0; j <= r; j++) sum += tm[r * C + j] * exp(before[j * K + d]) * ROW(a, j)[d];
            w[r * K + d] = sum;
        }
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 5.–6. per value column c: w = U + W S, the outputs, the next state.
        for (int c = lid; c < V; c += L) {
            for (int r = 0; r < m; r++) {
                real ur = 0;
                for (int j = 0; j <= r; j++) ur += tm[r * C + j] * akv[j * V + c];
                for (int d = 0; d < K; d++) ur += w[r * K + d] * s[d * V + c];
                wn[r * V + c] = ur;
            }
            for (int r = 0; r < m; r++) {
                __global const real* qr = ROW(q, r);
                real acc = 0;
                for (int d = 0; d < K; d++) acc += qr[d] * exp(gamma[r * K + d]) * s[d * V + c];
                for (int j = 0; j <= r; j++)
                    acc += qk[r * C + j] * v[((row0 + j) * H + h) * V + c] + qb[r * C + j] * wn[j * V + c];
                o[((row0 + r) * H + h) * V + c] = acc * scale;
            }
            const int last = m - 1;
            for (int d = 0; d < K; d++) {
                real sd = s[d * V + c] * exp(gamma[last * K + d]);
                for (int j = 0; j < m; j++) {
                    const real toEnd = exp(gamma[last * K + d] - gamma[j * K + d]);
                    const real kj = toEnd * ROW(k, j)[d], bj = toEnd * ROW(bw, j)[d];
                    sd += kj * v[((row0 + j) * H + h) * V + c] + bj * wn[j * V + c];
                }
                s[d * V + c] = sd;
            }
        }
        barrier(CLK_GLOBAL_MEM_FENCE);
#undef ROW
    }
}
