// Linear attention — the OpenCL twin of Forms/Linear/Linear.cs, same symbols. The feature map φ is applied on the
// host (Linear.FeatureMap, the reference's own code), so the kernels receive φ(q), φ(k) [B,T,H,F].
//   S_t = S_{t−1} + φ(k_t) v_tᵀ,  z_t = z_{t−1} + φ(k_t)
//   o_t = scale · S_tᵀ φ(q_t)   or, normalised,   scale · S_tᵀ φ(q_t) / (scale · φ(q_t)·z_t + eps)
//   not causal: every o_t reads S and z after the sequence's last step.
// Sequences: seqs holds (batch, start, length, stateIndex); rowSlice maps row b·T + t to its sequence or −1.
//
// Parallel decomposition. The numerator of o and the normaliser are computed apart:
//   linear_state       one item per (sequence, head, value column c), owning column c of S, streaming over t;
//                      writes num_tc = Σ_a φq_ta S_ac into o.
//   linear_normalizer  one item per (sequence, head), owning z; writes den_t = Σ_a φq_ta z_a.
//   Both in one of three modes, the reference's three orders:
//     0 recurrent, causal:  S, z += step t, then read          (Linear.Recurrent)
//     1 not causal:         S, z += every step, then read      (Linear.Recurrent and Linear.Chunked)
//     2 chunked, causal:    per chunk [s, e): read the state entering it for each t, then advance over the chunk
//                           (Linear.Chunked; Linear.Parallel is mode 2 with one chunk per sequence)
//   linear_finish      (modes 0, 1) one item per (row, head, c): o = scale·num, or scale·num / (scale·den + eps).
//   linear_scores      (mode 2) one item per (row t, head, j − s): A_tj = φq_t · φk_j for s ≤ j ≤ last
//                      (last = t, or the chunk's end − 1 for the non-causal parallel form).
//   linear_intra       (mode 2) one item per (row, head, c): num += Σ_j A_tj v_jc, den += Σ_j A_tj, then finish.

#define ROW(t) (((long)b * T + start + (t)) * H + h)

__kernel void linear_state(
    __global const real* phiQ, __global const real* phiK, __global const real* v, __global real* S, __global real* o,
    __global const int* seqs, const int nSeq, const int T, const int H, const int F, const int V, const int mode, const int C)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * V) return;
    const int c = (int)(id % V), h = (int)(id / V % H), n = (int)(id / V / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* Sc = S + ((long)stateIndex * H + h) * F * V + c;      // S_ac = Sc[a·V]
    const int step = mode == 2 ? C : (mode == 0 ? 1 : max(length, 1));
    for (int s = 0; s < length; s += step) {
        const int e = min(s + step, length);
        if (mode != 2) {
            for (int j = s; j < e; j++) {
                const long rj = ROW(j);
                for (int a = 0; a < F; a++) Sc[(long)a * V] += phiK[rj * F + a] * v[rj * V + c];
            }
        }
        const int readFrom = mode == 1 ? 0 : s, readTo = mode == 1 ? length : e;
        for (int t = readFrom; t < readTo; t++) {
            const long row = ROW(t);
            real num = 0;
            for (int a = 0; a < F; a++) num += phiQ[row * F + a] * Sc[(long)a * V];
            o[row * V + c] = num;
        }
        if (mode == 2) {
            for (int j = s; j < e; j++) {
                const long rj = ROW(j);
                for (int a = 0; a < F; a++) Sc[(long)a * V] += phiK[rj * F + a] * v[rj * V + c];
            }
        }
    }
}

__kernel void linear_normalizer(
    __global const real* phiQ, __global const real* phiK, __global real* z, __global real* den,
    __global const int* seqs, const int nSeq, const int T, const int H, const int F, const int mode, const int C)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H) return;
    const int h = (int)(id % H), n = (int)(id / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* zn = z + ((long)stateIndex * H + h) * F;
    const int step = mode == 2 ? C : (mode == 0 ? 1 : max(length, 1));
    for (int s = 0; s < length; s += step) {
        const int e = min(s + step, length);
        if (mode != 2) {
            for (int j = s; j < e; j++) {
                const long rj = ROW(j);
                for (int a = 0; a < F; a++) zn[a] += phiK[rj * F + a];
            }
        }
        const int readFrom = mode == 1 ? 0 : s, readTo = mode == 1 ? length : e;
        for (int t = readFrom; t < readTo; t++) {
            const long row = ROW(t);
            real d = 0;
            for (int a = 0; a < F; a++) d += phiQ[row * F + a] * zn[a];
            den[row] = d;
        }
        if (mode == 2) {
            for (int j = s; j < e; j++) {
                const long rj = ROW(j);
                for (int a = 0; a < F; a++) zn[a] += phiK[rj * F + a];
            }
        }
    }
}

inline real finish(const real num, const real den, const real scale, const int normalize, const real eps)
{
    return normalize ? scale * num / (scale * den + eps) : scale * num;
}

__kernel void linear_finish(
    __global real* o, __global const real* den, __global const int* rowSlice, const int B, const int T, const int H,
    const int V, const real scale, const int normalize, const real eps)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * V) return;
    const long row = id / V;
    if (rowSlice[row / H] < 0) return;
    o[id] = finish(o[id], den[row], scale, normalize, eps);
}

__kernel void linear_scores(
    __global const real* phiQ, __global const real* phiK, __global real* A, __global const int* seqs,
    __global const int* rowSlice, const int B, const int T, const int H, const int F, const int C, const int allKeys)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * C) return;
    const int jj = (int)(id % C), h = (int)(id / C % H);
    const long bt = id / C / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], length = seqs[4 * n + 2], t = (int)(bt % T) - start, s = t / C * C;
    const int last = allKeys ? min(s + C, length) - 1 : t;
    if (s + jj > last) return;
    const long row = bt * H + h, rj = (bt - (t - s - jj)) * H + h;
    real sum = 0;
    for (int a = 0; a < F; a++) sum += phiQ[row * F + a] * phiK[rj * F + a];
    A[id] = sum;
}

__kernel void linear_intra(
    __global const real* v, __global const real* A, __global const real* den, __global real* o,
    __global const int* seqs, __global const int* rowSlice, const int B, const int T, const int H, const int V,
    const int C, const int allKeys, const real scale, const int normalize, const real eps)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * V) return;
    const int c = (int)(id % V), h = (int)(id / V % H);
    const long bt = id / V / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], length = seqs[4 * n + 2], t = (int)(bt % T) - start, s = t / C * C;
    const int last = allKeys ? min(s + C, length) - 1 : t;
    const long row = bt * H + h;
    real num = o[row * V + c], d = den[row];
    for (int j = s; j <= last; j++) {
        const real a = A[row * C + (j - s)];
        num += a * v[(bt - (t - j)) * H * V + (long)h * V + c];
        d += a;
    }
    o[row * V + c] = finish(num, d, scale, normalize, eps);
}
