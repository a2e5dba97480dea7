// Mamba-2's SSD — the OpenCL twin of Forms/StateSpace/Ssd.cs, same symbols (h head, p head-dim column, n state
// index, g = h / (H/G) the group of B and C; layout [B,T,H,P] as mamba_chunk_scan_combined).
//   Δ_t = dt_t + dt_bias_h,  Δ_t ← softplus(Δ_t) if dt_softplus                   (softplus(x) = x for x > 20)
//   a_t = Δ_t A_h                                                                 (log decay of step t)
//   h_t[p,n] = exp(a_t) h_{t−1}[p,n] + Δ_t x_t[p] B_t[n]       h_{−1} = initial_state (zeros if absent)
//   y_t[p] = Σ_n h_t[p,n] C_t[n],   o_t[p] = (y_t[p] + D_hp x_t[p]) · silu(z_t[p])   (D = 0, no gate when absent)
// Sequences: seqs holds (batch, start, length, stateIndex, firstChunk, chunkCount) per sequence; the state buffer
// S [S,H,P,N] enters as initial_state (or zeros) and leaves as final_state.
//
// Parallel decomposition.
//   ssd_delta            one item per (b, t, h): Δ_t and a_t, once.
//   ssd_recurrent        one item per (sequence, h, p): row p of the state, a tile of SSD_TILE states h[p,n] in
//                        private memory, streamed over t; N > SSD_TILE runs tile after tile, each pass adding its
//                        terms to y_t[p] in o in the order n = 0, 1, … (the reference's order).
//   chunked (ssd_minimal.py's four steps), chunks of Q steps from each sequence's start; chunks holds (batch,
//   first row, length) per chunk and rowChunk maps a row b·T + t to its chunk; cum_l = Σ_{r≤l} a_r from the chunk's
//   start, segsum(l, s) = Σ_{r=s+1..l} a_r summed from r = l down, as the reference sums them:
//   ssd_chunk_weights       one item per (chunk, h), from the chunk's end down: w_s = exp(Σ_{r=s+1..end} a_r) Δ_s
//                           and the chunk's decay exp(Σ_chunk a) (the sums grown from the end, as the reference's).
//   ssd_chunk_state      2. one item per (chunk, h, p, n), parallel over every chunk:
//                           S_c[p,n] = Σ_s w_s x_s[p] B_s[n]   (s from the end down)
//   ssd_state_pass       3. one item per (sequence, h, p, n), sequential over the sequence's chunks:
//                           the state entering chunk c replaces S_c in its buffer, h ← exp(Σ_c a) h + S_c.
//   ssd_chunk_scores     1. one item per (row l, h, s − chunk start), parallel over every chunk:
//                           W_ls = (C_l·B_s) exp(segsum(l, s)) Δ_s   for s ≤ l.
//   ssd_chunk_output     1.+4. one item per (row l, h, p): y_l[p] = Σ_{s=l..0} W_ls x_s[p]
//                           + exp(cum_l) Σ_n h_{c−1}[p,n] C_l[n].
//   quadratic (the segment-sum form), over whole sequences; rowSeq maps a row b·T + t to its sequence, M is the
//   longest sequence, segsum(t, s) = Σ_{r=s+1..t} a_r grown with t (r upwards), as the reference grows it:
//   ssd_quadratic_weights  one item per (sequence, h, s), s = −1 … len − 1, walking t from s up:
//                           W_ts = (C_t·B_s) exp(segsum(t, s)) Δ_s,  E_t = exp(segsum(t, −1)) (s = −1), and at
//                           the sequence's end the final-state weights exp(segsum(end, s)) Δ_s and exp(segsum(end, −1)).
//   ssd_quadratic_output   one item per (row t, h, p): y_t[p] = Σ_{s=0..t} W_ts x_s[p] + E_t Σ_n h_{−1}[p,n] C_t[n].
//   ssd_quadratic_state    one item per (sequence, h, p, n): h[p,n] = Σ_{s=−1..end} (final-state weight of s)·
//                           (x_s[p] B_s[n], or h_{−1}[p,n] for s = −1).
//   Quadratic in T in time and in W's memory (B·T·H·M), as the form is; refused where W exceeds one buffer.
//   ssd_output           one item per (b, t, h, p): o = (y + D x) · silu(z).
// Every exponent is a sum of log decays a ≤ 0 over steps inside one chunk (or sequence, for quadratic), never a
// difference of cumulative sums: strong decay only underflows to 0, as in the reference.

#define SSD_TILE 32

// softplus(x) = log(1 + e^x), x above 20 (torch and mamba's threshold), written as StateSpaceMath.Softplus.
real ssd_softplus(const real x) { return x > 20 ? x : x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

// silu(z) = z · sigmoid(z), written as StateSpaceMath.Silu.
real ssd_silu(const real z) { return z >= 0 ? z / (1 + exp(-z)) : z * exp(z) / (1 + exp(z)); }

__kernel void ssd_delta(
    __global const real* dt, __global const real* dtBias, __global const real* A, __global real* Dt, __global real* Log,
    const int softplus, const int B, const int T, const int H)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H) return;
    const int h = (int)(id % H);
    const real d = dt[id] + dtBias[h];
    const real delta = softplus ? ssd_softplus(d) : d;
    Dt[id] = delta;
    Log[id] = delta * A[h];
}

__kernel void ssd_recurrent(
    __global const real* x, __global const real* Dt, __global const real* Log, __global const real* Bp,
    __global const real* Cp, __global real* S, __global real* o, __global const int* seqs,
    const int nSeq, const int T, const int H, const int P, const int G, const int N)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * P) return;
    const int p = (int)(id % P), h = (int)(id / P % H), s = (int)(id / P / H), g = h / (H / G);
    const int b = seqs[6 * s], start = seqs[6 * s + 1], length = seqs[6 * s + 2], stateIndex = seqs[6 * s + 3];
    __global real* Sp = S + (((long)stateIndex * H + h) * P + p) * N;
    real st[SSD_TILE];
    for (int n0 = 0; n0 < N; n0 += SSD_TILE) {
        const int tile = min(SSD_TILE, N - n0);
        for (int j = 0; j < tile; j++) st[j] = Sp[n0 + j];
        for (int i = 0; i < length; i++) {
            const long bt = (long)b * T + start + i, row = bt * H + h, bc = (bt * G + g) * N;
            const real decay = exp(Log[row]), dtx = Dt[row] * x[row * P + p];
            real y = n0 == 0 ? 0 : o[row * P + p];
            for (int j = 0; j < tile; j++) {
                st[j] = decay * st[j] + dtx * Bp[bc + n0 + j];
                y += st[j] * Cp[bc + n0 + j];
            }
            o[row * P + p] = y;
        }
        for (int j = 0; j < tile; j++) Sp[n0 + j] = st[j];
    }
}

// wEnd [B·T·H] = exp(Σ_{r=s+1..end} a_r) Δ_s for each step s of a chunk; chunkDecay [chunk, H] = exp(Σ_chunk a).
__kernel void ssd_chunk_weights(
    __global const real* Dt, __global const real* Log, __global real* wEnd, __global real* chunkDecay,
    __global const int* chunks, const int nChunks, const int T, const int H)
{
    const long id = get_global_id(0);
    if (id >= (long)nChunks * H) return;
    const int h = (int)(id % H), c = (int)(id / H);
    const int b = chunks[3 * c], first = chunks[3 * c + 1], length = chunks[3 * c + 2];
    real toEnd = 0;                                                   // Σ_{r=s+1..end} a_r
    for (int s = length - 1; s >= 0; s--) {
        const long row = ((long)b * T + first + s) * H + h;
        wEnd[row] = exp(toEnd) * Dt[row];
        toEnd += Log[row];
    }
    chunkDecay[id] = exp(toEnd);
}

// 2. chunkState [chunk, H, P, N]: the chunk's own state, from zero.
__kernel void ssd_chunk_state(
    __global const real* x, __global const real* wEnd, __global const real* Bp, __global real* chunkState,
    __global const int* chunks, const int nChunks, const int T, const int H, const int P, const int G, const int N)
{
    const long id = get_global_id(0);
    if (id >= (long)nChunks * H * P * N) return;
    const int n = (int)(id % N), p = (int)(id / N % P), h = (int)(id / N / P % H), c = (int)(id / N / P / H);
    const int g = h / (H / G), b = chunks[3 * c], first = chunks[3 * c + 1], length = chunks[3 * c + 2];
    real sum = 0;
    for (int s = length - 1; s >= 0; s--) {
        const long bt = (long)b * T + first + s, row = bt * H + h;
        sum += wEnd[row] * x[row * P + p] * Bp[(bt * G + g) * N + n];
    }
    chunkState[id] = sum;
}

// 3. chunkState[c] becomes the state entering chunk c; S ends as the final state.
__kernel void ssd_state_pass(
    __global real* chunkState, __global const real* chunkDecay, __global real* S, __global const int* seqs,
    const int nSeq, const int H, const int P, const int N)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * P * N) return;
    const int n = (int)(id % N), p = (int)(id / N % P), h = (int)(id / N / P % H), s = (int)(id / N / P / H);
    const int stateIndex = seqs[6 * s + 3], firstChunk = seqs[6 * s + 4], chunkCount = seqs[6 * s + 5];
    const long at = (((long)stateIndex * H + h) * P + p) * N + n;
    real state = S[at];
    for (int c = firstChunk; c < firstChunk + chunkCount; c++) {
        const long k = (((long)c * H + h) * P + p) * N + n;
        const real own = chunkState[k];
        chunkState[k] = state;
        state = chunkDecay[(long)c * H + h] * state + own;
    }
    S[at] = state;
}

// 1. W [(b·T + t)·H + h, s − chunk start] = (C_l·B_s) exp(segsum(l, s)) Δ_s, s ≤ l.
__kernel void ssd_chunk_scores(
    __global const real* Dt, __global const real* Log, __global const real* Bp, __global const real* Cp,
    __global real* W, __global const int* chunks, __global const int* rowChunk, const int B, const int T, const int H,
    const int G, const int N, const int Q)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * Q) return;
    const int s = (int)(id % Q), h = (int)(id / Q % H);
    const long bt = id / Q / H;
    const int c = rowChunk[bt];
    if (c < 0) return;
    const int l = (int)(bt % T) - chunks[3 * c + 1], g = h / (H / G);
    if (s > l) return;
    const long bs = bt - (l - s);
    real segsum = 0;                                                  // Σ_{r=s+1..l} a_r, from r = l down
    for (int r = l; r > s; r--) segsum += Log[(bt - (l - r)) * H + h];
    real dot = 0;
    for (int n = 0; n < N; n++) dot += Cp[(bt * G + g) * N + n] * Bp[(bs * G + g) * N + n];
    W[id] = dot * exp(segsum) * Dt[bs * H + h];
}

// 1.+4. y_l[p]: the intra-chunk sum over s = l down to the chunk start, then the entering state's part.
__kernel void ssd_chunk_output(
    __global const real* x, __global const real* Log, __global const real* Cp, __global const real* W,
    __global const real* chunkState, __global real* o, __global const int* chunks, __global const int* rowChunk,
    const int B, const int T, const int H, const int P, const int G, const int N, const int Q)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * P) return;
    const int p = (int)(id % P), h = (int)(id / P % H);
    const long bt = id / P / H;
    const int c = rowChunk[bt];
    if (c < 0) return;
    const int l = (int)(bt % T) - chunks[3 * c + 1], g = h / (H / G);
    const long row = bt * H + h;
    real y = 0;
    for (int s = l; s >= 0; s--) y += W[row * Q + s] * x[((bt - (l - s)) * H + h) * P + p];
    real cum = 0;                                                     // Σ_{r=0..l} a_r, from the chunk's start
    for (int r = 0; r <= l; r++) cum += Log[(bt - (l - r)) * H + h];
    __global const real* entering = chunkState + (((long)c * H + h) * P + p) * N;
    real sum = 0;
    for (int n = 0; n < N; n++) sum += entering[n] * Cp[(bt * G + g) * N + n];
    o[id] = y + exp(cum) * sum;
}

// W [(b·T + t)·H + h, s] (s from the sequence start), E and wFinal [B·T·H], wFinal0 [sequence, H].
__kernel void ssd_quadratic_weights(
    __global const real* Dt, __global const real* Log, __global const real* Bp, __global const real* Cp,
    __global real* W, __global real* E, __global real* wFinal, __global real* wFinal0, __global const int* seqs,
    const int nSeq, const int T, const int H, const int G, const int N, const int M)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * (M + 1)) return;
    const int s = (int)(id % (M + 1)) - 1, h = (int)(id / (M + 1) % H), q = (int)(id / (M + 1) / H), g = h / (H / G);
    const int b = seqs[6 * q], start = seqs[6 * q + 1], length = seqs[6 * q + 2];
    if (s >= length) return;
    const long first = (long)b * T + start;                          // row b·T + start: step 0 of the sequence
    real segsum = 0;                                                  // Σ_{r=s+1..t} a_r, grown with t
    if (s < 0) {
        for (int t = 0; t < length; t++) {
            segsum += Log[(first + t) * H + h];
            E[(first + t) * H + h] = exp(segsum);
        }
        wFinal0[(long)q * H + h] = exp(segsum);
        return;
    }
    const long bs = first + s;
    for (int t = s; t < length; t++) {
        const long bt = first + t;
        if (t > s) segsum += Log[bt * H + h];
        real dot = 0;
        for (int n = 0; n < N; n++) dot += Cp[(bt * G + g) * N + n] * Bp[(bs * G + g) * N + n];
        W[(bt * H + h) * M + s] = dot * exp(segsum) * Dt[bs * H + h];
    }
    wFinal[bs * H + h] = exp(segsum) * Dt[bs * H + h];
}

__kernel void ssd_quadratic_output(
    __global const real* x, __global const real* Cp, __global const real* W, __global const real* E,
    __global const real* S, __global real* o, __global const int* seqs, __global const int* rowSeq,
    const int B, const int T, const int H, const int P, const int G, const int N, const int M)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * P) return;
    const int p = (int)(id % P), h = (int)(id / P % H);
    const long bt = id / P / H;
    const int q = rowSeq[bt];
    if (q < 0) return;
    const int t = (int)(bt % T) - seqs[6 * q + 1], stateIndex = seqs[6 * q + 3], g = h / (H / G);
    const long row = bt * H + h;
    real y = 0;
    for (int s = 0; s <= t; s++) y += W[row * M + s] * x[((bt - (t - s)) * H + h) * P + p];
    __global const real* h0 = S + (((long)stateIndex * H + h) * P + p) * N;
    real sum = 0;
    for (int n = 0; n < N; n++) sum += h0[n] * Cp[(bt * G + g) * N + n];
    o[id] = y + E[row] * sum;
}

// S [S,H,P,N]: the initial state in, the final state out (run after ssd_quadratic_output, which reads h_{−1}).
__kernel void ssd_quadratic_state(
    __global const real* x, __global const real* Bp, __global const real* wFinal, __global const real* wFinal0,
    __global real* S, __global const int* seqs, const int nSeq, const int T, const int H, const int P, const int G,
    const int N)
{
    const long id = get_global_id(0);
    if (id >= (long)nSeq * H * P * N) return;
    const int n = (int)(id % N), p = (int)(id / N % P), h = (int)(id / N / P % H), q = (int)(id / N / P / H);
    const int b = seqs[6 * q], start = seqs[6 * q + 1], length = seqs[6 * q + 2], stateIndex = seqs[6 * q + 3];
    const int g = h / (H / G);
    const long at = (((long)stateIndex * H + h) * P + p) * N + n;
    real state = wFinal0[(long)q * H + h] * S[at];
    for (int s = 0; s < length; s++) {
        const long bs = (long)b * T + start + s;
        state += wFinal[bs * H + h] * (x[(bs * H + h) * P + p] * Bp[(bs * G + g) * N + n]);
    }
    S[at] = state;
}

__kernel void ssd_output(
    __global const real* x, __global const real* Dskip, const int perChannel, __global const real* z, const int hasZ,
    __global real* o, const int B, const int T, const int H, const int P)
{
    const long id = get_global_id(0);
    if (id >= (long)B * T * H * P) return;
    const int p = (int)(id % P), h = (int)(id / P % H);
    const real skip = perChannel ? Dskip[(long)h * P + p] : Dskip[h];
    const real value = o[id] + skip * x[id];
    o[id] = hasZ ? value * ssd_silu(z[id]) : value;
}
