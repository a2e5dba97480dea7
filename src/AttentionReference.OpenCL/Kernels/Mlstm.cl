// mLSTM — the OpenCL twin of Forms/GatedLinear/Mlstm.cs, same symbols (c = key channel, d = value column).
// The stabilised cell (C̃ = C·exp(−m), ñ = n·exp(−m)), qs = scale·q_t:
//   m_t = max(log f_t + m_{t−1}, i_t),  C̃_t = exp(log f_t + m_{t−1} − m_t) C̃_{t−1} + exp(i_t − m_t) k_t v_tᵀ,  ñ alike
//   o_t = qsᵀ C̃_t / (max(|qsᵀ ñ_t|, exp(−m_t)) + eps)
// log f and i come from the host (the reference's own logsigmoid). Sequences: seqs holds (batch, start, length,
// stateIndex); rowSlice maps row b·T + t to its sequence or −1.
//
// Parallel decomposition. m and the gates depend on i and f only, so one item per (sequence, head) runs the scalar
// recurrence and the normaliser ñ (K values), and one item per (sequence, head, value column d) the memory C̃:
//   recurrent  mlstm_gates (mode 0): m_t, forget_t, input_t, ñ_t and the denominator per row;
//              mlstm_recurrent_state: column d of C̃ with those gates, o_td = Σ_c qs_c C̃_cd · (1/denominator).
//   chunked    chunks of C steps, b_r = Σ_{s..s+r} log f, ℓ_r* = m_start + b_r, ℓ_rj = i_j + b_r − b_j (j ≤ r):
//              mlstm_gates (mode 1): b, the row max m_r, carried_r = exp(ℓ_r* − m_r), the inter-chunk normaliser
//                carried_r·qsᵀñ, and ñ, m carried to the next chunk;
//              mlstm_chunk_state: o_rd = Σ_c (carried_r qs_c) C̃_cd, then C̃ ← carried C̃ + Σ_j (gate_j k_j) v_jᵀ;
//              mlstm_chunk_scores: a_rj = exp(ℓ_rj − m_r) · qs·k_j;  mlstm_chunk_intra: the j ≤ r terms, then divide.
//   parallel   the chunked kernels with one chunk per sequence: the reference's parallel form term for term.

#define ROW(t) (((long)b * T + start + (t)) * H + h)

inline real denominator(const real normaliser, const real m, const real eps)
{
    return max(fabs(normaliser), exp(-m)) + eps;
}

// Per (sequence, head). Mode 0 (recurrent): gate0 = forget_t, gate1 = input_t, mRow = m_t, den = the denominator.
// Mode 1 (chunked): bLocal = b, mRow = m_r, gate0 = carried_r, nrm = carried_r·qsᵀñ (the inter-chunk normaliser).
__kernel void mlstm_gates(
    __global const real* q, __global const real* k, __global const real* logF, __global const real* ig,
    __global real* Nst, __global real* Mst, __global real* gate0, __global real* gate1, __global real* mRowOut,
    __global real* bLocal, __global real* nrm, __global const int* seqs, const int nSeq, const int T, const int H,
    const int K, const int mode, const int C, const real scale, const real eps)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H) return;
    const int h = (int)(id % H), n = (int)(id / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* N = Nst + ((long)stateIndex * H + h) * K;
    real M = Mst[(long)stateIndex * H + h];
    if (mode == 0) {
        for (int t = 0; t < length; t++) {
            const long row = ROW(t);
            const real m = max(logF[row] + M, ig[row]);
            const real forget = exp(logF[row] + M - m), input = exp(ig[row] - m);
            for (int c = 0; c < K; c++) N[c] = N[c] * forget + input * k[row * K + c];
            M = m;
            real dot = 0;
            for (int c = 0; c < K; c++) dot += (q[row * K + c] * scale) * N[c];
            gate0[row] = forget; gate1[row] = input; mRowOut[row] = m;
            nrm[row] = denominator(dot, m, eps);
        }
    } else {
        for (int s = 0; s < length; s += C) {
            const int e = min(s + C, length);
            for (int r = s; r < e; r++) bLocal[ROW(r)] = (r == s ? 0 : bLocal[ROW(r - 1)]) + logF[ROW(r)];
            real mRow = 0, carried = 0;
            for (int r = s; r < e; r++) {
                const long row = ROW(r);
                const real logCarried = M + bLocal[row];
                mRow = logCarried;
                for (int j = s; j <= r; j++) mRow = max(mRow, ig[ROW(j)] + bLocal[row] - bLocal[ROW(j)]);
                carried = exp(logCarried - mRow);
                real dot = 0;
                for (int c = 0; c < K; c++) dot += (q[row * K + c] * scale) * N[c];
                mRowOut[row] = mRow; gate0[row] = carried; nrm[row] = carried * dot;
            }
            const long last = ROW(e - 1);
            for (int c = 0; c < K; c++) N[c] = N[c] * carried;
            for (int j = s; j < e; j++) {
                const long rj = ROW(j);
                const real gate = exp(ig[rj] + bLocal[last] - bLocal[rj] - mRow);
                for (int c = 0; c < K; c++) N[c] = N[c] + gate * k[rj * K + c];
            }
            M = mRow;
        }
    }
    Mst[(long)stateIndex * H + h] = M;
}

__kernel void mlstm_recurrent_state(
    __global const real* q, __global const real* k, __global const real* v, __global const real* gate0,
    __global const real* gate1, __global const real* den, __global real* S, __global real* o, __global const int* seqs,
    const int nSeq, const int T, const int H, const int K, const int V, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * V) return;
    const int d = (int)(id % V), h = (int)(id / V % H), n = (int)(id / V / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* Sd = S + ((long)stateIndex * H + h) * K * V + d;
    for (int t = 0; t < length; t++) {
        const long row = ROW(t);
        const real forget = gate0[row], input = gate1[row], vd = v[row * V + d];
        for (int c = 0; c < K; c++) Sd[(long)c * V] = Sd[(long)c * V] * forget + (input * k[row * K + c]) * vd;
        real out = 0;
        for (int c = 0; c < K; c++) out += (q[row * K + c] * scale) * Sd[(long)c * V];
        o[row * V + d] = out * (1 / den[row]);
    }
}

__kernel void mlstm_chunk_state(
    __global const real* q, __global const real* k, __global const real* v, __global const real* ig,
    __global const real* bLocal, __global const real* mRowIn, __global const real* carriedIn, __global real* S,
    __global real* o, __global const int* seqs, const int nSeq, const int T, const int H, const int K, const int V,
    const int C, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * V) return;
    const int d = (int)(id % V), h = (int)(id / V % H), n = (int)(id / V / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* Sd = S + ((long)stateIndex * H + h) * K * V + d;
    for (int s = 0; s < length; s += C) {
        const int e = min(s + C, length);
        for (int r = s; r < e; r++) {
            const long row = ROW(r);
            const real carried = carriedIn[row];
            real out = 0;
            for (int c = 0; c < K; c++) out += (carried * (q[row * K + c] * scale)) * Sd[(long)c * V];
            o[row * V + d] = out;
        }
        const long last = ROW(e - 1);
        const real carried = carriedIn[last], mRow = mRowIn[last];
        for (int c = 0; c < K; c++) Sd[(long)c * V] = Sd[(long)c * V] * carried;
        for (int j = s; j < e; j++) {
            const long rj = ROW(j);
            const real gate = exp(ig[rj] + bLocal[last] - bLocal[rj] - mRow), vd = v[rj * V + d];
            for (int c = 0; c < K; c++) Sd[(long)c * V] = Sd[(long)c * V] + (gate * k[rj * K + c]) * vd;
        }
    }
}

__kernel void mlstm_chunk_scores(
    __global const real* q, __global const real* k, __global const real* ig, __global const real* bLocal,
    __global const real* mRowIn, __global real* A, __global const int* seqs, __global const int* rowSlice,
    const int B, const int T, const int H, const int K, const int C, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * C) return;
    const int jj = (int)(id % C), h = (int)(id / C % H);
    const long bt = id / C / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], r = (int)(bt % T) - start, s = r / C * C;
    if (s + jj > r) return;
    const long row = bt * H + h, rj = (bt - (r - s - jj)) * H + h;
    real dot = 0;
    for (int c = 0; c < K; c++) dot += (q[row * K + c] * scale) * k[rj * K + c];
    A[id] = exp(ig[rj] + bLocal[row] - bLocal[rj] - mRowIn[row]) * dot;
}

__kernel void mlstm_chunk_intra(
    __global const real* v, __global const real* A, __global const real* nrm, __global const real* mRowIn,
    __global real* o, __global const int* seqs, __global const int* rowSlice, const int B, const int T, const int H,
    const int V, const int C, const real eps)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * V) return;
    const int d = (int)(id % V), h = (int)(id / V % H);
    const long bt = id / V / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], r = (int)(bt % T) - start, s = r / C * C;
    const long row = bt * H + h;
    real out = o[row * V + d], normaliser = nrm[row];
    for (int j = s; j <= r; j++) {
        const real a = A[row * C + (j - s)];
        normaliser += a;
        out += a * v[((bt - (r - j)) * H + h) * V + d];
    }
    o[row * V + d] = out * (1 / denominator(normaliser, mRowIn[row], eps));
}
