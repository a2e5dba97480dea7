// RWKV-6 — the OpenCL twin of Forms/GatedLinear/Rwkv6.cs, same symbols (a = key channel, d = value column).
//   o_t = scale · q_tᵀ (S_{t−1} + Diag(u) k_t v_tᵀ)        (read before the decay: token t enters only through u)
//   S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ
// Sequences: seqs holds (batch, start, length, stateIndex); rowSlice maps row b·T + t to its sequence or −1.
//
// Parallel decomposition.
//   rwkv6_recurrent   one item per (sequence, head, value column d), owning column d of S, streaming over t.
//   chunked, chunks of C steps from the sequence start, b_i = Σ_{r=s..s+i} w_r (inclusive, from the chunk start):
//   rwkv6_cumsum      one item per (sequence, head, key channel): b, in the reference's order.
//   rwkv6_chunk_state one item per (sequence, head, d), sequential over the chunks:
//                       o_id = Σ_a (scale q_ia exp(b_{i−1,a})) S_ad                      (1. inter-chunk)
//                       S_ad ← S_ad exp(b_{n−1,a}) + Σ_j (k_ja exp(b_{n−1,a} − b_ja)) v_jd (4. state)
//   rwkv6_scores      one item per (row i, head, j − s), j < i:  A_ij = Σ_a q_ia k_ja exp(b_{i−1,a} − b_ja),
//                     and for j = i the bonus Σ_a q_ia u_a k_ia.
//   rwkv6_intra       one item per (row i, head, d): o_id += scale·A_ij v_jd for j < i, then += scale·bonus·v_id.
// Every exponent is a difference inside one chunk (≤ 0): log decays of −20 per step stay exact.

__kernel void rwkv6_recurrent(
    __global const real* q, __global const real* k, __global const real* v, __global const real* w,
    __global const real* u, __global real* S, __global real* o, __global const int* seqs,
    const int nSeq, const int T, const int H, const int K, const int V, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * V) return;
    const int d = (int)(id % V), h = (int)(id / V % H), n = (int)(id / V / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* Sd = S + ((long)stateIndex * H + h) * K * V + d;      // S_ad = Sd[a·V]
    for (int t = 0; t < length; t++) {
        const long row = ((long)b * T + start + t) * H + h;
        const real vd = v[row * V + d];
        real out = 0;
        for (int a = 0; a < K; a++) {
            const real qa = q[row * K + a];
            out += (scale * qa) * Sd[(long)a * V];
            out += (scale * qa * u[h * K + a] * k[row * K + a]) * vd;
        }
        o[row * V + d] = out;
        for (int a = 0; a < K; a++) {
            Sd[(long)a * V] = Sd[(long)a * V] * exp(w[row * K + a]) + k[row * K + a] * vd;
        }
    }
}

__kernel void rwkv6_cumsum(
    __global const real* w, __global real* bCum, __global const int* seqs,
    const int nSeq, const int T, const int H, const int K, const int C)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * K) return;
    const int a = (int)(id % K), h = (int)(id / K % H), n = (int)(id / K / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2];
    real sum = 0;
    for (int t = 0; t < length; t++) {
        const long i = (((long)b * T + start + t) * H + h) * K + a;
        sum = t % C == 0 ? w[i] : sum + w[i];
        bCum[i] = sum;
    }
}

__kernel void rwkv6_chunk_state(
    __global const real* q, __global const real* k, __global const real* v, __global const real* bCum,
    __global real* S, __global real* o, __global const int* seqs,
    const int nSeq, const int T, const int H, const int K, const int V, const int C, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * V) return;
    const int d = (int)(id % V), h = (int)(id / V % H), n = (int)(id / V / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* Sd = S + ((long)stateIndex * H + h) * K * V + d;
    for (int s = 0; s < length; s += C) {
        const int e = min(s + C, length);
        for (int t = s; t < e; t++) {
            const long row = ((long)b * T + start + t) * H + h;
            real out = 0;
            for (int a = 0; a < K; a++) {
                const real before = t == s ? 0 : bCum[(row - H) * K + a];
                out += (scale * q[row * K + a] * exp(before)) * Sd[(long)a * V];
            }
            o[row * V + d] = out;
        }
        const long last = ((long)b * T + start + e - 1) * H + h;
        for (int a = 0; a < K; a++) Sd[(long)a * V] = Sd[(long)a * V] * exp(bCum[last * K + a]);
        for (int j = s; j < e; j++) {
            const long rj = ((long)b * T + start + j) * H + h;
            const real vd = v[rj * V + d];
            for (int a = 0; a < K; a++) {
                Sd[(long)a * V] += (k[rj * K + a] * exp(bCum[last * K + a] - bCum[rj * K + a])) * vd;
            }
        }
    }
}

// A[(row·H + h)·C + (j − s)]: the decayed score for j < i, the bonus for j = i.
__kernel void rwkv6_scores(
    __global const real* q, __global const real* k, __global const real* u, __global const real* bCum, __global real* A,
    __global const int* seqs, __global const int* rowSlice, const int B, const int T, const int H, const int K, const int C)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * C) return;
    const int jj = (int)(id % C), h = (int)(id / C % H);
    const long bt = id / C / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], i = (int)(bt % T) - start, s = i / C * C;
    if (s + jj > i) return;
    const long row = bt * H + h, rj = (bt - (i - s - jj)) * H + h;
    real sum = 0;
    if (s + jj == i) {
        for (int a = 0; a < K; a++) sum += q[row * K + a] * u[h * K + a] * k[row * K + a];
    } else {
        for (int a = 0; a < K; a++) sum += q[row * K + a] * k[rj * K + a] * exp(bCum[(row - H) * K + a] - bCum[rj * K + a]);
    }
    A[id] = sum;
}

__kernel void rwkv6_intra(
    __global const real* v, __global const real* A, __global real* o, __global const int* seqs,
    __global const int* rowSlice, const int B, const int T, const int H, const int V, const int C, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * V) return;
    const int d = (int)(id % V), h = (int)(id / V % H);
    const long bt = id / V / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], i = (int)(bt % T) - start, s = i / C * C;
    const long row = bt * H + h;
    real out = o[row * V + d];
    for (int j = s; j <= i; j++) {
        out += (scale * A[row * C + (j - s)]) * v[((bt - (i - j)) * H + h) * V + d];
    }
    o[row * V + d] = out;
}
