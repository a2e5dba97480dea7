// NAtS-L — the OpenCL twin of Forms/Hybrid/NatsL.cs, same symbols. Per batch entry b and head h, chunk c(t) = ⌊t/C⌋,
// route r_c (1 softmax, 0 Gated DeltaNet, [B,NC,H] as ints), δ = decay_for_non_gdn_blocks (1 or 0), s = scale:
//   Gated DeltaNet branch (running state S, chunk-start state S̄ = initial_state at t = 0):
//     every token:  S ← exp(g_t) S,  u_t = β_t (v_t − Sᵀk_t),  S ← S + k_t u_tᵀ,  o_linear_t = s · Sᵀq_t
//     end of a complete chunk c:  r_c = 0: S̄ ← S;   r_c = 1: S ← exp(δ · Σ_{t∈c} g_t) S̄, S̄ ← S
//   Softmax branch:  A_t = { j ≤ t : c(j) = c(t) or r_{c(j)} = 1 },  o_softmax_t = softmax_{j∈A_t}(s q_t·k_j) v
//
// Parallel decomposition. The host drives the Gated DeltaNet branch chunk by chunk with WyChunkwise.cl's own kernels
// (delta_recurrent or delta_chunked, decay mode 1, as gated_delta_rule): one launch runs every (b, h) over chunk c's
// tokens from S̄ into S (the chunk's outputs o_linear are final then), and nats_end_of_chunk applies the rule above.
// The softmax branch splits A_t into two disjoint parts:
//   A1_t = { j ≤ t : r_{c(j)} = 1 }                 Softmax.cl's causal tiled kernel with the key mask [B,H,1,T]
//                                                   "r_{c(j)} = 1", which gives (o1_t, lse1_t) (lse1 = −∞: empty)
//   A2_t = { j ≤ t : c(j) = c(t), r_{c(t)} = 0 }    nats_softmax_own_chunk folds these ≤ C keys into (o1, lse1) with
//                                                   the online softmax, starting from m = lse1, l = 1, acc = o1
//   which is softmax over A_t = A1_t ∪ A2_t, exactly up to rounding.
//   nats_end_of_chunk        one work-item per (b, h, value column c), looping over the key channels d.
//   nats_softmax_own_chunk   one work-item per query row (b, t, h), streaming over the ≤ C keys of its own chunk.
// Sums run in the reference's order and contraction into fma is off, so f64 results match the CPU's to rounding.

// The end of chunk `chunk` = [start, start + m): a complete chunk follows its route, an incomplete (last) one hands on S.
__kernel void nats_end_of_chunk(
    __global real* sBar, __global const real* sRun, __global const real* g, __global const int* routes,
    const int B, const int T, const int H, const int K, const int V, const int NC,
    const int chunk, const int start, const int m, const int complete, const real delta)
{
    const long item = get_global_id(0);
    if (item >= (long)B * H * V) return;
    const int c = (int)(item % V), h = (int)(item / V % H), b = (int)(item / V / H);
    __global real* bar = sBar + ((long)b * H + h) * K * V + c;       // bar[d * V] = S̄[d, c]
    __global const real* run = sRun + ((long)b * H + h) * K * V + c;
    if (complete && routes[((long)b * NC + chunk) * H + h] == 1) {
        // A softmax chunk: its writes are undone, its decay kept when δ = 1.
        real sum = 0;
        for (int t = start; t < start + m; t++) sum += g[((long)b * T + t) * H + h];
        const real chunkDecay = exp(delta * sum);
        for (int d = 0; d < K; d++) bar[d * V] = chunkDecay * bar[d * V];
    } else {
        for (int d = 0; d < K; d++) bar[d * V] = run[d * V];
    }
}

// o [B,T,H,V] and lse [B,T,H] hold softmax over A1_t on entry and softmax over A_t on exit (lse is not updated).
__kernel void nats_softmax_own_chunk(
    __global const real* q, __global const real* k, __global const real* v, __global const int* routes,
    __global real* o, __global const real* lse,
    const int B, const int T, const int H, const int K, const int V, const int NC, const int C, const real scale)
{
    const long row = get_global_id(0);
    if (row >= (long)B * T * H) return;
    const int h = (int)(row % H), t = (int)(row / H % T), b = (int)(row / H / T);
    const int chunk = t / C;
    if (routes[((long)b * NC + chunk) * H + h] == 1) return;   // the own chunk is already in A1_t
    __global const real* qt = q + row * K;
    __global real* ot = o + row * V;
    // The online softmax state of A1_t: Σ exp(s − lse1) = 1 and Σ exp(s − lse1) v = o1 (nothing when lse1 = −∞).
    real m = lse[row];
    real l = m == -INFINITY ? 0 : 1;
    for (int j = chunk * C; j <= t; j++) {
        __global const real* kj = k + (((long)b * T + j) * H + h) * K;
        __global const real* vj = v + (((long)b * T + j) * H + h) * V;
        real score = 0;
        for (int d = 0; d < K; d++) score += qt[d] * kj[d];
        score *= scale;
        const real mNew = score > m ? score : m;
        const real alpha = exp(m - mNew), p = exp(score - mNew);
        l = l * alpha + p;
        for (int e = 0; e < V; e++) ot[e] = ot[e] * alpha + p * vj[e];
        m = mNew;
    }
    for (int e = 0; e < V; e++) ot[e] /= l;
}
