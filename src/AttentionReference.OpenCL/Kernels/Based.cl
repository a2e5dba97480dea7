// Based — the OpenCL twin of Forms/Hybrid/Based.cs, same symbols: Taylor linear attention plus exact sliding-window
// softmax on the same q, k, v, summed.
//   φ = taylor2: φ(x) = [1, x̃, vec(x̃ x̃ᵀ)/√2], x̃ = x / K^(1/4), F = 1 + K + K²;  φ(q)·φ(k) = 1 + x + x²/2, x = q·k/√K
//   S_t = S_{t−1} + φ(k_t) v_tᵀ,  z_t = z_{t−1} + φ(k_t)                     (S_{−1} = initial_state, z_{−1} = initial_normalizer)
//   o_lin_t = a · S_tᵀ φ(q_t) / (a · φ(q_t)·z_t + eps)                          a = linear_scale
//   o_win_t = Σ_{j ∈ W_t} exp(s q_t·k_j − m_t) v_j / Σ_{j ∈ W_t} exp(s q_t·k_j − m_t),  W_t = { j : t − window < j ≤ t }
//   o_t = o_lin_t + o_win_t;  final_state = S_{T−1}, final_normalizer = z_{T−1}
// The weights of the linear branch are 1 + x + x²/2 from one K-term dot product, never the F-term φ(q)·φ(k); φ's
// entries themselves are formed only where a state is read or written (taylor_feature, the reference's arithmetic).
// Sequences: seqs holds (batch, start, length, stateIndex) per sequence; blocks (sequence, first row) per block of BR
// query rows.
//
// Parallel decomposition.
//   based_tiled        one work-group of BR·BC items per (sequence, head, block of BR query rows, block of ≤ 128
//                      value columns), after softmax_tiled (Softmax.cl): the queries in local memory, keys and values
//                      through in tiles of BC. Work-item (r, c) forms the Taylor weight and the window score of key
//                      j0 + c; then each item adds the tile into its ≤ 16 columns of both branches: the linear branch
//                      keys in ascending order after the initial state's part (Linear.Parallel's order), the window
//                      branch by the online softmax (running max, rescaled sum). With linear = 0 it computes the
//                      window branch alone (the chunked variant's), visiting only the tiles some row's window reaches.
//   based_state        one work-group of SA·SC items per (sequence, head, block of SA features, block of SC columns of
//                      [S | z]), streaming over t in tiles of TT steps: S_αc += φ_α(k_t) v_tc (z: column V, v = 1).
//   chunked            the chunks one after another from the host: based_chunk_output (one item per (sequence, head,
//                      row of the chunk, column of [num | den]): the state entering the chunk read through φ(q_t),
//                      then the chunk's keys up to t), based_chunk_state (based_state over the chunk's steps, in
//                      place); last based_finish: o = a·num / (a·den + eps) + o_win.

#define BR 16
#define BC 8
#define MAX_COLUMNS_PER_ITEM 16            // a column block is BC·16 = 128 value columns
#define COLUMN_BLOCK (BC * MAX_COLUMNS_PER_ITEM)
#define SA 8                               // features per state work-group
#define SC 16                              // columns of [S | z] per state work-group
#define TT 16                              // time steps per state tile

// φ_α(x) of taylor2, as Linear.FeatureMap forms it: x̃_a = x_a / rr (rr = √√K), x̃_a x̃_b / √2.
#define TAYLOR_FEATURE(x, alpha, K, rr) \
    ((alpha) == 0 ? (real)1 \
     : (alpha) <= (K) ? (x)[(alpha) - 1] / (rr) \
     : ((x)[((alpha) - 1 - (K)) / (K)] / (rr)) * ((x)[((alpha) - 1 - (K)) % (K)] / (rr)) / sqrt((real)2))

// The Taylor weight φ(q)·φ(k) = 1 + x + x²/2 of the dot product q·k.
inline real taylor_weight(const real dot, const int K)
{
    const real x = dot / sqrt((real)K);
    return 1 + x + x * x / 2;
}

__kernel __attribute__((reqd_work_group_size(BR * BC, 1, 1)))
void based_tiled(
    __global const real* q, __global const real* k, __global const real* v, __global const real* S0, __global const real* z0,
    __global real* o, __global const int* seqs, __global const int* blocks, const int blockCount, const int T, const int H,
    const int K, const int V, const int F, const int window, const real scale, const real linearScale, const real eps,
    const int linear, const int hasS0, const int hasZ0,
    __local real* Qs, __local real* Ks, __local real* Vs, __local real* A, __local real* P)
{
    const int group = get_group_id(0);
    const int block = group % blockCount, h = group / blockCount % H, vb = group / blockCount / H;
    __global const int* seq = seqs + 4 * blocks[2 * block];
    const int b = seq[0], start = seq[1], length = seq[2], stateIndex = seq[3];
    const int i0 = blocks[2 * block + 1];
    const int t = get_local_id(0), r = t / BC, c = t % BC;
    const int i = i0 + r;
    const bool live = i < length;
    const int stride = K + 1;
    const int c0 = vb * COLUMN_BLOCK, columns = min(COLUMN_BLOCK, V - c0);
    const real rr = sqrt(sqrt((real)K));
#define ROW(x) (((long)b * T + start + (x)) * H + h)

    for (int e = t; e < BR * K; e += BR * BC) {
        const int rr_ = e / K, d = e % K;
        Qs[rr_ * stride + d] = i0 + rr_ < length ? q[ROW(i0 + rr_) * K + d] : 0;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    real lin[MAX_COLUMNS_PER_ITEM], win[MAX_COLUMNS_PER_ITEM];
    for (int u = 0; u < MAX_COLUMNS_PER_ITEM; u++) { lin[u] = 0; win[u] = 0; }
    real den = 0, m = -INFINITY, l = 0;

    // The linear branch starts from the initial state's part, S0ᵀ φ(q_i) and φ(q_i)·z0 (Linear.Parallel's order).
    if (linear && live && (hasS0 || hasZ0)) {
        __global const real* S = S0 + ((long)stateIndex * H + h) * F * V;
        __global const real* z = z0 + ((long)stateIndex * H + h) * F;
        __local const real* qi = Qs + r * stride;
        for (int alpha = 0; alpha < F; alpha++) {
            const real phi = TAYLOR_FEATURE(qi, alpha, K, rr);
            if (hasS0) for (int u = 0; u * BC + c < columns; u++) lin[u] += phi * S[(long)alpha * V + c0 + u * BC + c];
            if (hasZ0) den += phi * z[alpha];
        }
    }

    const int lastRow = min(length, i0 + BR) - 1;
    // The window branch alone needs only the tiles from the first row's window on.
    const int firstKey = linear ? 0 : max(0, i0 - window + 1);
    for (int j0 = firstKey / BC * BC; j0 <= lastRow; j0 += BC) {
        barrier(CLK_LOCAL_MEM_FENCE);                   // the previous tile is no longer read
        for (int e = t; e < BC * K; e += BR * BC) {
            const int cc = e / K, d = e % K, j = j0 + cc;
            Ks[cc * stride + d] = j <= lastRow ? k[ROW(j) * K + d] : 0;
        }
        for (int e = t; e < BC * columns; e += BR * BC) {
            const int cc = e / columns, d = e % columns, j = j0 + cc;
            Vs[cc * COLUMN_BLOCK + d] = j <= lastRow ? v[ROW(j) * V + c0 + d] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 1. the Taylor weight and the window score of key j = j0 + c for row i.
        const int j = j0 + c;
        const bool allowed = live && j <= i, inWindow = allowed && j > i - window;
        real dot = 0;
        if (allowed) for (int d = 0; d < K; d++) dot += Qs[r * stride + d] * Ks[c * stride + d];
        A[r * BC + c] = allowed ? taylor_weight(dot, K) : 0;
        P[r * BC + c] = inWindow ? scale * dot : -INFINITY;
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. linear branch: num += A v, den += A over the tile's keys in ascending order.
        if (linear && live) {
            for (int cc = 0; cc < BC && j0 + cc <= i; cc++) {
                const real a = A[r * BC + cc];
                den += a;
                for (int u = 0; u * BC + c < columns; u++) lin[u] += a * Vs[cc * COLUMN_BLOCK + u * BC + c];
            }
        }

        // 3. window branch: the online softmax over the tile's keys in the row's window.
        real mNew = m;
        for (int cc = 0; cc < BC; cc++) mNew = fmax(mNew, P[r * BC + cc]);
        barrier(CLK_LOCAL_MEM_FENCE);                   // every item of the row has read the scores
        P[r * BC + c] = inWindow ? exp(P[r * BC + c] - mNew) : 0;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (live && mNew != -INFINITY) {
            const real alpha = m == mNew ? 1 : exp(m - mNew);
            real rowSum = 0;
            for (int cc = 0; cc < BC; cc++) rowSum += P[r * BC + cc];
            l = l * alpha + rowSum;
            for (int u = 0; u * BC + c < columns; u++) {
                real sum = 0;
                for (int cc = 0; cc < BC; cc++) sum += P[r * BC + cc] * Vs[cc * COLUMN_BLOCK + u * BC + c];
                win[u] = win[u] * alpha + sum;
            }
            m = mNew;
        }
    }
    if (!live) return;
    for (int u = 0; u * BC + c < columns; u++) {
        const real w = win[u] / l;                      // l ≥ 1: key i itself is always in the window
        o[ROW(i) * V + c0 + u * BC + c] = linear ? linearScale * lin[u] / (linearScale * den + eps) + w : w;
    }
#undef ROW
}

// S, z advanced over steps [from, to) of every sequence, in place: S_αc += φ_α(k_t) v_tc, z_α += φ_α(k_t).
__kernel __attribute__((reqd_work_group_size(SA * SC, 1, 1)))
void based_state(
    __global const real* k, __global const real* v, __global real* S, __global real* z, __global const int* seqs,
    const int nSeq, const int T, const int H, const int K, const int V, const int F, const int C, const int ci,
    __local real* Ks, __local real* Phi, __local real* Vt)
{
    const int featureBlocks = (F + SA - 1) / SA, columnBlocks = (V + 1 + SC - 1) / SC;
    const int group = get_group_id(0);
    const int cb = group % columnBlocks, fb = group / columnBlocks % featureBlocks, h = group / columnBlocks / featureBlocks % H;
    const int n = group / columnBlocks / featureBlocks / H;
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    const int s = ci * C;
    if (s >= length) return;                            // the whole group: this sequence has no chunk ci
    const int e = min(s + C, length);
    const int t = get_local_id(0), al = t / SC, cl = t % SC;
    const int alpha = fb * SA + al, col = cb * SC + cl;   // col = V: the normaliser z
    const bool mine = alpha < F && col <= V;
    const long head = (long)stateIndex * H + h;
    const real rr = sqrt(sqrt((real)K));
#define ROW(x) (((long)b * T + start + (x)) * H + h)

    real state = 0;
    if (mine) state = col < V ? S[(head * F + alpha) * V + col] : z[head * F + alpha];
    for (int t0 = s; t0 < e; t0 += TT) {
        const int steps = min(TT, e - t0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int x = t; x < steps * K; x += SA * SC) Ks[x] = k[ROW(t0 + x / K) * K + x % K];
        for (int x = t; x < steps * SC; x += SA * SC) {
            const int tt = x / SC, cc = cb * SC + x % SC;
            Vt[x] = cc < V ? v[ROW(t0 + tt) * V + cc] : 1;   // the normaliser's column: φ_α(k_t) · 1
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int x = t; x < steps * SA; x += SA * SC) {
            const int tt = x / SA, a = fb * SA + x % SA;
            __local const real* kt = Ks + tt * K;
            Phi[x] = a < F ? TAYLOR_FEATURE(kt, a, K, rr) : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (mine) {
            for (int tt = 0; tt < steps; tt++) state += Phi[tt * SA + al] * Vt[tt * SC + cl];
        }
    }
    if (!mine) return;
    if (col < V) S[(head * F + alpha) * V + col] = state;
    else z[head * F + alpha] = state;
#undef ROW
}

// Chunk ci's rows: num_t = S_entryᵀ φ(q_t) + Σ_{s≤j≤t} A_tj v_j (column c < V), den_t = φ(q_t)·z_entry + Σ A_tj (column V).
__kernel void based_chunk_output(
    __global const real* q, __global const real* k, __global const real* v, __global const real* S, __global const real* z,
    __global real* num, __global real* den, __global const int* seqs, const int nSeq, const int T, const int H,
    const int K, const int V, const int F, const int C, const int ci)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * C * (V + 1)) return;
    const int col = (int)(id % (V + 1)), tt = (int)(id / (V + 1) % C), h = (int)(id / (V + 1) / C % H);
    const int n = (int)(id / (V + 1) / C / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    const int s = ci * C, t = s + tt;
    if (t >= length) return;
#define ROW(x) (((long)b * T + start + (x)) * H + h)
    const long row = ROW(t), head = (long)stateIndex * H + h;
    __global const real* qt = q + row * K;
    const real rr = sqrt(sqrt((real)K));

    // 1. inter-chunk part: the state entering the chunk.
    real sum = 0;
    for (int alpha = 0; alpha < F; alpha++) {
        const real phi = TAYLOR_FEATURE(qt, alpha, K, rr);
        sum += phi * (col < V ? S[(head * F + alpha) * V + col] : z[head * F + alpha]);
    }
    // 2. intra-chunk part: the chunk's keys up to t.
    for (int j = s; j <= t; j++) {
        const long rj = ROW(j);
        real dot = 0;
        for (int d = 0; d < K; d++) dot += qt[d] * k[rj * K + d];
        const real a = taylor_weight(dot, K);
        sum += col < V ? a * v[rj * V + col] : a;
    }
    if (col < V) num[row * V + col] = sum;
    else den[row] = sum;
#undef ROW
}

// o = a·num / (a·den + eps) + o_win, in place over o_win.
__kernel void based_finish(__global real* o, __global const real* num, __global const real* den, const int rows, const int V,
                           const real linearScale, const real eps)
{
    const long id = get_global_id(0);
    if (id >= (long)rows * V) return;
    o[id] = linearScale * num[id] / (linearScale * den[id / V] + eps) + o[id];
}
