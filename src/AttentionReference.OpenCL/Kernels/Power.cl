// Power attention — the OpenCL twin of Forms/Hybrid/Power.cs, same symbols.
//   γ(i, j) = exp(g_{j+1} + … + g_i)  (1 without g),   s = scale (K^(-1/2) unless given),   p = deg
//   w_ij = (s · q_i·k_j)^p · γ(i, j)                                   for j ≤ i
//   n_i  = γ(i, −1) · φ(s q_i)ᵀ S0 + Σ_{j≤i} w_ij v_j,   d_i = γ(i, −1) · φ(s q_i)·z0 + Σ_{j≤i} w_ij
//   o_i  = n_i / (d_i + eps)  (normalize = 1),   o_i = n_i  (normalize = 0)
//   S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ,  z_t = exp(g_t) z_{t−1} + φ(k_t);  final_state = S_{T−1}, final_normalizer = z_{T−1}
//   φ(x)_α = coef_α · Π_r x_{a_r} over the multi-indices a_1 ≤ … ≤ a_p (D = C(K+p−1, p) of them): the host passes
//   the reference's own table (SymmetricPower.Indices, .Coefficients) as idx [D·p] and coef [D]; φ is never stored, each entry is
//   formed where it is used.
//
// Sequences: seqs holds (batch, start, length, stateIndex) per sequence (batch entries or varlen sequences); blocks
// holds (sequence, first row) per block of BR query rows. Gates: g [B,T,H], or none (hasGate = 0: every g_t = 0).
//
// Parallel decomposition.
//   power_quadratic  one work-group of BR·BC items per (sequence, head, block of BR query rows, block of ≤ 128 value
//                    columns), after softmax_tiled (Softmax.cl): the block's queries stay in local memory, keys and
//                    values stream through in tiles of BC, from the diagonal tile down to key 0 — the reference's
//                    order (j = i, i−1, …, 0). Work-item (r, c) forms w_rc for key j0 + c, with the row's log decay
//                    summed key by key as the reference sums it (g_i, then g_{i−1}, …, every item of a row repeats
//                    the same additions); then each item adds the tile's BC weighted values, keys in descending
//                    order, into its ≤ 16 output columns (d = c, c + BC, …) and the row's normaliser. Last the
//                    initial state's part (the D entries of φ(s q_i) formed from the table), then the division.
//   power_state      one work-group of SA·SC items per (sequence, head, block of SA features α, block of SC columns
//                    of [S | z]: column V is the normaliser), streaming over t in tiles of TT steps: the tile's
//                    φ_α(k_t), v_t and exp(g_t) are formed once into local memory, then each item runs the
//                    reference's step S_αc ← exp(g_t) S_αc + φ_α(k_t) v_tc (z_α ← exp(g_t) z_α + φ_α(k_t)).
//   chunked          three kernels taken chunk by chunk, described above power_chunk_gates below.
//   The state kernels are linear in T and in the state's D·V entries per head, power_quadratic quadratic in T as the
//   form is; nothing of size D is held per work-item.

#define BR 16
#define BC 8
#define MAX_COLUMNS_PER_ITEM 16            // a column block is BC·16 = 128 value columns
#define COLUMN_BLOCK (BC * MAX_COLUMNS_PER_ITEM)

// x^p by repeated squaring: the sign of x is kept for odd p, 0^p = 0 (p ≥ 1).
inline real power_of(const real x, int p)
{
    real result = 1, base = x;
    while (p > 0) {
        if (p & 1) result *= base;
        p >>= 1;
        if (p > 0) base *= base;
    }
    return result;
}

// φ_α(factor · x): coef_α · (factor·x_{a_1}) · … · (factor·x_{a_p}), the reference's product order (PowerHead.Map).
inline real feature(__global const int* idx, __global const real* coef, const int alpha, const int p, const real factor,
                    __local const real* x)
{
    real product = coef[alpha];
    for (int r = 0; r < p; r++) product *= factor * x[idx[alpha * p + r]];
    return product;
}

__kernel __attribute__((reqd_work_group_size(BR * BC, 1, 1)))
void power_quadratic(
    __global const real* q, __global const real* k, __global const real* v, __global const real* g,
    __global const real* S0, __global const real* z0, __global real* o,
    __global const int* idx, __global const real* coef, __global const int* seqs, __global const int* blocks,
    const int blockCount, const int T, const int H, const int K, const int V, const int D,
    const int p, const real scale, const int normalize, const real eps, const int hasGate, const int hasS0, const int hasZ0,
    __local real* Qs, __local real* Ks, __local real* Vs, __local real* W, __local real* Gs)
{
    const int group = get_group_id(0);
    const int block = group % blockCount, h = group / blockCount % H, vb = group / blockCount / H;
    __global const int* seq = seqs + 4 * blocks[2 * block];
    const int b = seq[0], start = seq[1], length = seq[2], stateIndex = seq[3];
    const int i0 = blocks[2 * block + 1];
    const int t = get_local_id(0), r = t / BC, c = t % BC;
    const int i = i0 + r;                               // this work-item's query row in its sequence
    const bool live = i < length;
    const int stride = K + 1;                           // padded local rows: a row's BC items read different banks
    const int c0 = vb * COLUMN_BLOCK, columns = min(COLUMN_BLOCK, V - c0);
#define ROW(tt) (((long)b * T + start + (tt)) * H + h)

    for (int e = t; e < BR * K; e += BR * BC) {
        const int rr = e / K, d = e % K;
        Qs[rr * stride + d] = i0 + rr < length ? q[ROW(i0 + rr) * K + d] : 0;
    }

    real acc[MAX_COLUMNS_PER_ITEM];
    for (int u = 0; u < MAX_COLUMNS_PER_ITEM; u++) acc[u] = 0;
    real den = 0, logDecay = 0;                         // logDecay = log γ(i, j) of the last key j the row added

    const int lastRow = min(length, i0 + BR) - 1;
    for (int j0 = lastRow / BC * BC; j0 >= 0; j0 -= BC) {
        barrier(CLK_LOCAL_MEM_FENCE);                   // the previous tile is no longer read
        for (int e = t; e < BC * K; e += BR * BC) {
            const int cc = e / K, d = e % K, j = j0 + cc;
            Ks[cc * stride + d] = j <= lastRow ? k[ROW(j) * K + d] : 0;
        }
        for (int e = t; e < BC * columns; e += BR * BC) {
            const int cc = e / columns, d = e % columns, j = j0 + cc;
            Vs[cc * COLUMN_BLOCK + d] = j <= lastRow ? v[ROW(j) * V + c0 + d] : 0;
        }
        if (t < BC) {
            const int j = j0 + t + 1;                   // Gs[cc] = g_{j+1} for key j = j0 + cc: added when stepping past j + 1
            Gs[t] = hasGate && j < length ? g[ROW(j)] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 1. w_rc for key j0 + c, the log decay summed as the reference sums it (keys j = i, i−1, …).
        real mine = 0;
        for (int cc = BC - 1; cc >= 0; cc--) {
            const int j = j0 + cc;
            if (!live || j > i) continue;
            if (j < i) logDecay += Gs[cc];
            if (cc == c) mine = logDecay;
        }
        real w = 0;
        if (live && j0 + c <= i) {
            real dot = 0;
            for (int d = 0; d < K; d++) dot += Qs[r * stride + d] * Ks[c * stride + d];
            w = power_of(scale * dot, p) * exp(mine);
        }
        W[r * BC + c] = w;
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. n += w v, d += w over the tile's keys, in descending order.
        if (live) {
            for (int cc = BC - 1; cc >= 0; cc--) {
                if (j0 + cc > i) continue;
                const real wc = W[r * BC + cc];
                den += wc;
                for (int u = 0; u * BC + c < columns; u++) acc[u] += wc * Vs[cc * COLUMN_BLOCK + u * BC + c];
            }
        }
    }
    if (!live) return;

    // 3. the initial state, decayed by every gate up to i: γ(i, −1) = exp(log γ(i, 0) + g_0).
    if (hasS0 || hasZ0) {
        const real gamma0 = exp(logDecay + (hasGate ? g[ROW(0)] : 0));
        __global const real* S = S0 + ((long)stateIndex * H + h) * D * V;
        __global const real* z = z0 + ((long)stateIndex * H + h) * D;
        real fromState[MAX_COLUMNS_PER_ITEM];
        for (int u = 0; u < MAX_COLUMNS_PER_ITEM; u++) fromState[u] = 0;
        real fromZ = 0;
        for (int alpha = 0; alpha < D; alpha++) {
            const real phi = feature(idx, coef, alpha, p, scale, Qs + r * stride);
            if (hasS0) {
                for (int u = 0; u * BC + c < columns; u++) fromState[u] += phi * S[(long)alpha * V + c0 + u * BC + c];
            }
            if (hasZ0) fromZ += phi * z[alpha];
        }
        for (int u = 0; u * BC + c < columns; u++) acc[u] += gamma0 * fromState[u];
        den += gamma0 * fromZ;
    }

    for (int u = 0; u * BC + c < columns; u++) {
        o[ROW(i) * V + c0 + u * BC + c] = normalize ? acc[u] / (den + eps) : acc[u];
    }
#undef ROW
}

#define SA 8                                    // features α per state work-group
#define SC 16                                   // columns of [S | z] per state work-group
#define TT 16                                   // time steps per tile

__kernel __attribute__((reqd_work_group_size(SA * SC, 1, 1)))
void power_state(
    __global const real* k, __global const real* v, __global const real* g, __global const real* S0, __global const real* z0,
    __global real* S, __global real* z, __global const int* idx, __global const real* coef, __global const int* seqs,
    const int nSeq, const int T, const int H, const int K, const int V, const int D, const int p,
    const int hasGate, const int hasS0, const int hasZ0, __local real* Ks, __local real* Phi, __local real* Vt, __local real* Dt)
{
    const int alphaBlocks = (D + SA - 1) / SA, columnBlocks = (V + 1 + SC - 1) / SC;
    const int group = get_group_id(0);
    const int cb = group % columnBlocks, ab = group / columnBlocks % alphaBlocks, h = group / columnBlocks / alphaBlocks % H;
    const int n = group / columnBlocks / alphaBlocks / H;
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    const int t = get_local_id(0), al = t / SC, cl = t % SC;
    const int alpha = ab * SA + al, col = cb * SC + cl;   // col = V: the normaliser z
    const bool mine = alpha < D && col <= V;
    const long head = (long)stateIndex * H + h;
#define ROW(tt) (((long)b * T + start + (tt)) * H + h)

    real state = 0;
    if (mine && col < V && hasS0) state = S0[(head * D + alpha) * V + col];
    if (mine && col == V && hasZ0) state = z0[head * D + alpha];

    for (int t0 = 0; t0 < length; t0 += TT) {
        const int steps = min(TT, length - t0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = t; e < steps * K; e += SA * SC) Ks[e] = k[ROW(t0 + e / K) * K + e % K];
        for (int e = t; e < steps * SC; e += SA * SC) {
            const int tt = e / SC, cc = cb * SC + e % SC;
            Vt[e] = cc < V ? v[ROW(t0 + tt) * V + cc] : 1;   // the normaliser's column: φ_α(k_t) · 1
        }
        if (t < steps) Dt[t] = hasGate ? exp(g[ROW(t0 + t)]) : 1;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = t; e < steps * SA; e += SA * SC) {
            const int tt = e / SA, a = ab * SA + e % SA;
            Phi[e] = a < D ? feature(idx, coef, a, p, 1, Ks + tt * K) : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (mine) {
            for (int tt = 0; tt < steps; tt++) state = Dt[tt] * state + Phi[tt * SA + al] * Vt[tt * SC + cl];
        }
    }
    if (!mine) return;
    if (col < V) S[(head * D + alpha) * V + col] = state;
    else z[head * D + alpha] = state;
#undef ROW
}

// ---------------------------------------------------------------------------------------------------------------
// The chunked variant (Power.Chunked): chunks [s, e) of C steps, taken one after another by the host (one launch of
// each kernel below per chunk index ci, for every sequence and head at once); inside a chunk everything is parallel.
//   b_t = g_s + … + g_t                    (power_chunk_gates: one item per (sequence, head), the reference's sums)
//   n_t = exp(b_t) φ(s q_t)ᵀ S + Σ_{s≤j≤t} (s q_t·k_j)^p exp(b_t − b_j) v_j,  d_t likewise with z and 1
//                                          (power_chunk_output: one item per (sequence, head, row t of the chunk,
//                                          column of [o | d]); S, z are the state entering the chunk; it forms the D
//                                          entries of φ(s q_t) from the table as it reads S)
//   S ← exp(b_{e−1}) S + Σ_{s≤j<e} exp(b_{e−1} − b_j) φ(k_j) v_jᵀ, z likewise
//                                          (power_chunk_state: power_state's work-groups, over the chunk's steps)
//   o_t = n_t / (d_t + eps) or n_t          (power_finish, once, after the last chunk)

inline real feature_global(__global const int* idx, __global const real* coef, const int alpha, const int p, const real factor,
                           __global const real* x)
{
    real product = coef[alpha];
    for (int r = 0; r < p; r++) product *= factor * x[idx[alpha * p + r]];
    return product;
}

__kernel void power_chunk_gates(__global const real* g, __global real* b, __global const int* seqs, const int nSeq,
                                const int T, const int H, const int C, const int hasGate)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H) return;
    const int h = (int)(id % H), n = (int)(id / H);
    const int batch = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2];
    real sum = 0;
    for (int t = 0; t < length; t++) {
        const long row = ((long)batch * T + start + t) * H + h;
        sum = (t % C == 0 ? 0 : sum) + (hasGate ? g[row] : 0);
        b[row] = sum;
    }
}

__kernel void power_chunk_output(
    __global const real* q, __global const real* k, __global const real* v, __global const real* b,
    __global const real* S, __global const real* z, __global real* o, __global real* den,
    __global const int* idx, __global const real* coef, __global const int* seqs, const int nSeq, const int T, const int H,
    const int K, const int V, const int D, const int p, const real scale, const int C, const int ci)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * C * (V + 1)) return;
    const int col = (int)(id % (V + 1)), tt = (int)(id / (V + 1) % C), h = (int)(id / (V + 1) / C % H);
    const int n = (int)(id / (V + 1) / C / H);
    const int batch = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    const int s = ci * C, t = s + tt;
    if (t >= length) return;
#define ROW(x) (((long)batch * T + start + (x)) * H + h)
    const long row = ROW(t), head = (long)stateIndex * H + h;
    __global const real* qt = q + row * K;

    // 1. inter-chunk part: the state entering the chunk, decayed by exp(b_t).
    real from = 0;
    for (int alpha = 0; alpha < D; alpha++) {
        const real phi = feature_global(idx, coef, alpha, p, scale, qt);
        from += phi * (col < V ? S[(head * D + alpha) * V + col] : z[head * D + alpha]);
    }
    real sum = from * exp(b[row]);
    // 2. intra-chunk part: w_tj = (s q_t·k_j)^p exp(b_t − b_j) for s ≤ j ≤ t.
    for (int j = s; j <= t; j++) {
        const long rj = ROW(j);
        real dot = 0;
        for (int d = 0; d < K; d++) dot += qt[d] * k[rj * K + d];
        const real w = power_of(scale * dot, p) * exp(b[row] - b[rj]);
        sum += col < V ? w * v[rj * V + col] : w;
    }
    if (col < V) o[row * V + col] = sum;
    else den[row] = sum;
#undef ROW
}

__kernel __attribute__((reqd_work_group_size(SA * SC, 1, 1)))
void power_chunk_state(
    __global const real* k, __global const real* v, __global const real* b, __global real* S, __global real* z,
    __global const int* idx, __global const real* coef, __global const int* seqs, const int nSeq, const int T, const int H,
    const int K, const int V, const int D, const int p, const int C, const int ci,
    __local real* Ks, __local real* Phi, __local real* Vt, __local real* Dt)
{
    const int alphaBlocks = (D + SA - 1) / SA, columnBlocks = (V + 1 + SC - 1) / SC;
    const int group = get_group_id(0);
    const int cb = group % columnBlocks, ab = group / columnBlocks % alphaBlocks, h = group / columnBlocks / alphaBlocks % H;
    const int n = group / columnBlocks / alphaBlocks / H;
    const int batch = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    const int s = ci * C;
    if (s >= length) return;                            // the whole group: this sequence has no chunk ci
    const int e = min(s + C, length);
    const int t = get_local_id(0), al = t / SC, cl = t % SC;
    const int alpha = ab * SA + al, col = cb * SC + cl;   // col = V: the normaliser z
    const bool mine = alpha < D && col <= V;
    const long head = (long)stateIndex * H + h;
#define ROW(x) (((long)batch * T + start + (x)) * H + h)
    const real last = b[ROW(e - 1)];

    real state = 0;
    if (mine) state = (col < V ? S[(head * D + alpha) * V + col] : z[head * D + alpha]) * exp(last);

    for (int t0 = s; t0 < e; t0 += TT) {
        const int steps = min(TT, e - t0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int x = t; x < steps * K; x += SA * SC) Ks[x] = k[ROW(t0 + x / K) * K + x % K];
        for (int x = t; x < steps * SC; x += SA * SC) {
            const int tt = x / SC, cc = cb * SC + x % SC;
            Vt[x] = cc < V ? v[ROW(t0 + tt) * V + cc] : 1;   // the normaliser's column
        }
        if (t < steps) Dt[t] = exp(last - b[ROW(t0 + t)]);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int x = t; x < steps * SA; x += SA * SC) {
            const int tt = x / SA, a = ab * SA + x % SA;
            Phi[x] = a < D ? feature(idx, coef, a, p, 1, Ks + tt * K) : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (mine) {
            for (int tt = 0; tt < steps; tt++) state += (Dt[tt] * Phi[tt * SA + al]) * Vt[tt * SC + cl];
        }
    }
    if (!mine) return;
    if (col < V) S[(head * D + alpha) * V + col] = state;
    else z[head * D + alpha] = state;
#undef ROW
}

__kernel void power_finish(__global real* o, __global const real* den, const int rows, const int V, const int normalize, const real eps)
{
    const long id = get_global_id(0);
    if (id >= (long)rows * V) return;
    if (normalize) o[id] = o[id] / (den[id / V] + eps);
}
