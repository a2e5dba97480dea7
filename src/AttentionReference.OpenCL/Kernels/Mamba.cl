// Mamba's selective scan — the OpenCL twin of Forms/StateSpace/Mamba.cs, same symbols (b batch entry, d channel,
// n state index, t step; layout [B,D,L] as selective_scan_ref).
//   Δ_t = delta_t + delta_bias_d,  Δ_t ← softplus(Δ_t) if delta_softplus           (softplus(x) = x for x > 20)
//   x_t[n] = exp(Δ_t A_dn) x_{t−1}[n] + Δ_t B_t[n] u_t      x_{−1} = initial_state (zeros if absent)
//   y_t = Σ_n C_t[n] x_t[n],   o_t = (y_t + D_d u_t) · silu(z_t)   (D = 0 and no gate when absent)
// B and C: time-invariant [D,N] (G = 0 below) or selective [B,G,N,L], channel d reading group d / (D/G); the
// shared [B,N,L] is G = 1. Sequences: seqs holds (batch, start, length, stateIndex, firstBlock, blockCount) per
// sequence; the state buffer S [S,D,N] enters as initial_state (or zeros) and leaves as final_state.
//
// Parallel decomposition.
//   mamba_delta          one item per (b, d, t): Δ, once (every later kernel reads it).
//   mamba_recurrent      one item per (sequence, d), streaming over t with a tile of MAMBA_TILE states x[n] in
//                        private memory; N > MAMBA_TILE runs tile after tile, each pass adding its terms to y_t in o
//                        in the order n = 0, 1, … (the reference's order).
//   scan, blocks of S steps from each sequence's start (blocks holds (sequence, first step, length) per block):
//   mamba_scan_blocks    1. one item per (block, d, n): the block's pairs scanned from the identity (1, 0),
//                        (α, β) ← (a_t α, a_t β + b_t) with a_t = exp(Δ_t A_dn), b_t = Δ_t B_t[n] u_t; the block's
//                        last (α, β) is written.
//   mamba_scan_carries   2. one item per (sequence, d, n), over its blocks in order: carry_j = c,
//                        c ← α_last(j) c + β_last(j), from c = x_{−1}; the last c is the final state.
//   mamba_scan_fixup     3. one item per (block, d): for each n, the block's local scan again (the same operations
//                        as step 1, so the same α_t, β_t: storing them for every (t, n) would take B·D·N·L reals),
//                        x_t = α_t carry_j + β_t, y_t += C_t[n] x_t.
//   mamba_output         one item per (b, d, t): o = (y + D_d u) · silu(z).
// Nothing is divided by a product of decays: strong decay only underflows to 0, as in the reference.

#define MAMBA_TILE 16

// softplus(x) = log(1 + e^x), x above 20 (torch and mamba's threshold), written as StateSpaceMath.Softplus.
real mamba_softplus(const real x) { return x > 20 ? x : x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

// silu(z) = z · sigmoid(z), written as StateSpaceMath.Silu.
real mamba_silu(const real z) { return z >= 0 ? z / (1 + exp(-z)) : z * exp(z) / (1 + exp(z)); }

// B_t[n] or C_t[n] of channel d: [D,N] when G = 0, else [B,G,N,L].
real mamba_projection(__global const real* x, const int G, const int b, const int d, const int n, const int t,
    const int D, const int N, const int L)
{
    return G == 0 ? x[(long)d * N + n] : x[(((long)b * G + d / (D / G)) * N + n) * L + t];
}

__kernel void mamba_delta(
    __global const real* delta, __global const real* deltaBias, __global real* Delta, const int softplus,
    const int B, const int D, const int L)
{
    const long id = get_global_id(0);
    if (id >= (long)B * D * L) return;
    const int d = (int)(id / L % D);
    const real dt = delta[id] + deltaBias[d];
    Delta[id] = softplus ? mamba_softplus(dt) : dt;
}

__kernel void mamba_recurrent(
    __global const real* u, __global const real* Delta, __global const real* A, __global const real* Bp, const int GB,
    __global const real* Cp, const int GC, __global real* S, __global real* o, __global const int* seqs,
    const int nSeq, const int D, const int N, const int L)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * D) return;
    const int d = (int)(id % D), s = (int)(id / D);
    const int b = seqs[6 * s], start = seqs[6 * s + 1], length = seqs[6 * s + 2], stateIndex = seqs[6 * s + 3];
    __global real* xs = S + ((long)stateIndex * D + d) * N;
    real x[MAMBA_TILE];
    for (int n0 = 0; n0 < N; n0 += MAMBA_TILE) {
        const int tile = min(MAMBA_TILE, N - n0);
        for (int i = 0; i < tile; i++) x[i] = xs[n0 + i];
        for (int i = 0; i < length; i++) {
            const int t = start + i;
            const long row = ((long)b * D + d) * L + t;
            const real dt = Delta[row], ut = u[row];
            real y = n0 == 0 ? 0 : o[row];
            for (int j = 0; j < tile; j++) {
                const int n = n0 + j;
                x[j] = exp(dt * A[(long)d * N + n]) * x[j] + dt * mamba_projection(Bp, GB, b, d, n, t, D, N, L) * ut;
                y += mamba_projection(Cp, GC, b, d, n, t, D, N, L) * x[j];
            }
            o[row] = y;
        }
        for (int i = 0; i < tile; i++) xs[n0 + i] = x[i];
    }
}

// 1. alphaEnd, betaEnd [block, D, N]: the block's pairs composed from the identity.
__kernel void mamba_scan_blocks(
    __global const real* u, __global const real* Delta, __global const real* A, __global const real* Bp, const int GB,
    __global real* alphaEnd, __global real* betaEnd, __global const int* seqs, __global const int* blocks,
    const int nBlocks, const int D, const int N, const int L)
{
    const long id = get_global_id(0);
    if (id >= (long)nBlocks * D * N) return;
    const int n = (int)(id % N), d = (int)(id / N % D), j = (int)(id / N / D);
    const int s = blocks[3 * j], first = blocks[3 * j + 1], length = blocks[3 * j + 2];
    const int b = seqs[6 * s], start = seqs[6 * s + 1];
    const real Adn = A[(long)d * N + n];
    real alpha = 1, beta = 0;
    for (int i = first; i < first + length; i++) {
        const int t = start + i;
        const long row = ((long)b * D + d) * L + t;
        const real dt = Delta[row];
        const real a = exp(dt * Adn), bu = dt * mamba_projection(Bp, GB, b, d, n, t, D, N, L) * u[row];
        alpha = a * alpha;
        beta = a * beta + bu;
    }
    alphaEnd[id] = alpha;
    betaEnd[id] = beta;
}

// 2. carry [block, D, N]: the state entering each block; S ends as the final state.
__kernel void mamba_scan_carries(
    __global const real* alphaEnd, __global const real* betaEnd, __global real* carry, __global real* S,
    __global const int* seqs, const int nSeq, const int D, const int N)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * D * N) return;
    const int n = (int)(id % N), d = (int)(id / N % D), s = (int)(id / N / D);
    const int stateIndex = seqs[6 * s + 3], firstBlock = seqs[6 * s + 4], blockCount = seqs[6 * s + 5];
    const long at = ((long)stateIndex * D + d) * N + n;
    real c = S[at];
    for (int j = firstBlock; j < firstBlock + blockCount; j++) {
        const long k = ((long)j * D + d) * N + n;
        carry[k] = c;
        c = alphaEnd[k] * c + betaEnd[k];
    }
    S[at] = c;
}

// 3. y_t = Σ_n C_t[n] (α_t carry_j + β_t), the local scan recomputed.
__kernel void mamba_scan_fixup(
    __global const real* u, __global const real* Delta, __global const real* A, __global const real* Bp, const int GB,
    __global const real* Cp, const int GC, __global const real* carry, __global real* o, __global const int* seqs,
    __global const int* blocks, const int nBlocks, const int D, const int N, const int L)
{
    const long id = get_global_id(0);
    if (id >= (long)nBlocks * D) return;
    const int d = (int)(id % D), j = (int)(id / D);
    const int s = blocks[3 * j], first = blocks[3 * j + 1], length = blocks[3 * j + 2];
    const int b = seqs[6 * s], start = seqs[6 * s + 1];
    for (int n = 0; n < N; n++) {
        const real Adn = A[(long)d * N + n], c = carry[((long)j * D + d) * N + n];
        real alpha = 1, beta = 0;
        for (int i = first; i < first + length; i++) {
            const int t = start + i;
            const long row = ((long)b * D + d) * L + t;
            const real dt = Delta[row];
            const real a = exp(dt * Adn), bu = dt * mamba_projection(Bp, GB, b, d, n, t, D, N, L) * u[row];
            alpha = a * alpha;
            beta = a * beta + bu;
            const real x = alpha * c + beta;
            o[row] = (n == 0 ? 0 : o[row]) + mamba_projection(Cp, GC, b, d, n, t, D, N, L) * x;
        }
    }
}

__kernel void mamba_output(
    __global const real* u, __global const real* Dskip, __global const real* z, const int hasZ, __global real* o,
    const int B, const int D, const int L)
{
    const long id = get_global_id(0);
    if (id >= (long)B * D * L) return;
    const int d = (int)(id / L % D);
    const real value = o[id] + Dskip[d] * u[id];
    o[id] = hasZ ? value * mamba_silu(z[id]) : value;
}
