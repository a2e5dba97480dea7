// The diagonal-decay engine of the gated linear family — the OpenCL twin of Forms/GatedLinear/DiagonalDecay.cs,
// same symbols. gla is this engine; simple_gla (gk_t = g_t·1), retention (gk_t = log γ_h·1) and hgrn2
// (k = 1 − exp(gk)) are reduced to it on the host, exactly as the CPU forms reduce them.
//   S_t = Diag(exp(gk_t)) S_{t−1} Diag(exp(gv_t)) + k_t v_tᵀ,   o_t = scale · S_tᵀ q_t   (no gv: gv = 0)
// Sequences: seqs holds (batch, start, length, stateIndex) per sequence; rowSlice maps a row b·T + t of the
// [B,T,H,·] tensors to its sequence (−1: a row no sequence covers, whose o stays 0). The state buffer S [N,H,K,V]
// enters as initial_state (or zeros) and leaves as final_state.
//
// Parallel decomposition.
//   decay_recurrent       one work-item per (sequence, head, value column c): column c of S is the item's own
//                         (S_ac depends only on column c), streamed over t.
//   chunked, chunks [s, e) of C steps from each sequence's start (Γ, Ψ: log gates summed from the chunk start):
//   decay_chunk_cumsum    one item per (sequence, head, channel): Γ_ta = Σ_{r=s..t} g_ra, the CPU's order.
//   decay_chunk_state     one item per (sequence, head, column c), sequential over the chunks (the inter-chunk
//                         recurrence): o_tc = (Σ_a q_ta exp(Γ_ta) S_ac) exp(Ψ_tc) for t in the chunk, then
//                         S_ac ← exp(Γ_{e−1,a}) S_ac exp(Ψ_{e−1,c}) + Σ_j k_ja exp(Γ_{e−1,a} − Γ_ja) v_jc exp(Ψ_{e−1,c} − Ψ_jc).
//   decay_chunk_scores    one item per (row t, head, j − s), parallel over every chunk:
//                         A_tj = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja) for s ≤ j ≤ t.
//   decay_chunk_intra     one item per (row t, head, column c): o_tc += Σ_{s≤j≤t} A_tj exp(Ψ_tc − Ψ_jc) v_jc, o_tc *= scale.
// Every exponent is a difference of sums of log gates with j ≤ t, as in the reference: nothing is factorised as
// exp(Γ_t)·exp(−Γ_j), so log gates of −20 per step stay exact.

__kernel void decay_recurrent(
    __global const real* q, __global const real* k, __global const real* v, __global const real* gk,
    __global const real* gv, const int hasGv, __global real* S, __global real* o, __global const int* seqs,
    const int nSeq, const int T, const int H, const int K, const int V, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * V) return;
    const int c = (int)(id % V), h = (int)(id / V % H), n = (int)(id / V / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* Sc = S + ((long)stateIndex * H + h) * K * V + c;      // S_ac = Sc[a·V]
    for (int t = 0; t < length; t++) {
        const long row = ((long)b * T + start + t) * H + h;
        const real decayV = exp(hasGv ? gv[row * V + c] : (real)0);
        const real vc = v[row * V + c];
        for (int a = 0; a < K; a++) {
            Sc[(long)a * V] = exp(gk[row * K + a]) * Sc[(long)a * V] * decayV + k[row * K + a] * vc;
        }
        real out = 0;
        for (int a = 0; a < K; a++) out += (scale * q[row * K + a]) * Sc[(long)a * V];
        o[row * V + c] = out;
    }
}

// Γ_t = Σ_{r=s..t} g_r within each chunk [s, e) of a sequence, for one channel d of D.
__kernel void decay_chunk_cumsum(
    __global const real* g, __global real* G, __global const int* seqs,
    const int nSeq, const int T, const int H, const int D, const int C)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * D) return;
    const int d = (int)(id % D), h = (int)(id / D % H), n = (int)(id / D / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2];
    real sum = 0;
    for (int t = 0; t < length; t++) {
        const long i = (((long)b * T + start + t) * H + h) * D + d;
        sum = t % C == 0 ? g[i] : g[i] + sum;
        G[i] = sum;
    }
}

__kernel void decay_chunk_state(
    __global const real* q, __global const real* k, __global const real* v,
    __global const real* Gam, __global const real* Psi, __global real* S, __global real* o,
    __global const int* seqs, const int nSeq, const int T, const int H, const int K, const int V, const int C)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * V) return;
    const int c = (int)(id % V), h = (int)(id / V % H), n = (int)(id / V / H);
    const int b = seqs[4 * n], start = seqs[4 * n + 1], length = seqs[4 * n + 2], stateIndex = seqs[4 * n + 3];
    __global real* Sc = S + ((long)stateIndex * H + h) * K * V + c;
    for (int s = 0; s < length; s += C) {
        const int e = min(s + C, length);
        // 1. inter-chunk part: the state entering the chunk, decayed to step t.
        for (int t = s; t < e; t++) {
            const long row = ((long)b * T + start + t) * H + h;
            real fromState = 0;
            for (int a = 0; a < K; a++) fromState += q[row * K + a] * exp(Gam[row * K + a]) * Sc[(long)a * V];
            o[row * V + c] = fromState * exp(Psi[row * V + c]);
        }
        // 3. the state handed to the next chunk.
        const long last = ((long)b * T + start + e - 1) * H + h;
        const real PsiEnd = Psi[last * V + c];
        for (int a = 0; a < K; a++) {
            const real GamEnd = Gam[last * K + a];
            real sum = exp(GamEnd) * Sc[(long)a * V] * exp(PsiEnd);
            for (int j = s; j < e; j++) {
                const long rj = ((long)b * T + start + j) * H + h;
                sum += k[rj * K + a] * exp(GamEnd - Gam[rj * K + a]) * v[rj * V + c] * exp(PsiEnd - Psi[rj * V + c]);
            }
            Sc[(long)a * V] = sum;
        }
    }
}

// A[(row·H + h)·C + (j − s)] = Σ_a q_ta k_ja exp(Γ_ta − Γ_ja), s ≤ j ≤ t.
__kernel void decay_chunk_scores(
    __global const real* q, __global const real* k, __global const real* Gam, __global real* A,
    __global const int* seqs, __global const int* rowSlice, const int B, const int T, const int H, const int K, const int C)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * C) return;
    const int jj = (int)(id % C), h = (int)(id / C % H);
    const long bt = id / C / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], t = (int)(bt % T) - start, s = t / C * C;
    if (s + jj > t) return;
    const long row = bt * H + h, rj = (bt - (t - s - jj)) * H + h;
    real sum = 0;
    for (int a = 0; a < K; a++) sum += q[row * K + a] * k[rj * K + a] * exp(Gam[row * K + a] - Gam[rj * K + a]);
    A[id] = sum;
}

__kernel void decay_chunk_intra(
    __global const real* v, __global const real* Psi, __global const real* A, __global real* o,
    __global const int* seqs, __global const int* rowSlice, const int B, const int T, const int H, const int V,
    const int C, const real scale)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * V) return;
    const int c = (int)(id % V), h = (int)(id / V % H);
    const long bt = id / V / H;
    const int n = rowSlice[bt];
    if (n < 0) return;
    const int start = seqs[4 * n + 1], t = (int)(bt % T) - start, s = t / C * C;
    const long row = bt * H + h;
    real out = o[row * V + c];
    for (int j = s; j <= t; j++) {
        const long rj = (bt - (t - j)) * H + h;
        out += A[row * C + (j - s)] * exp(Psi[row * V + c] - Psi[rj * V + c]) * v[rj * V + c];
    }
    o[row * V + c] = out * scale;
}
