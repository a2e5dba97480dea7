// The delta-rule family — the OpenCL twin of Forms/Delta/DeltaRule.cs, GatedDeltaRule.cs, Kda.cs (recurrent) and
// Forms/Delta/WyChunkwise.cs (chunked), same symbols. One head (S is K x V, D_t = Diag(exp(γ_t)), γ_t ∈ R^K):
//   S_t = (I − β_t k_t k_tᵀ) D_t S_{t−1} + β_t k_t v_tᵀ        o_t = scale · S_tᵀ q_t
//   u_t = β_t (v_t − (D_t S_{t−1})ᵀ k_t),   S_t = D_t S_{t−1} + k_t u_tᵀ
// decay mode 0: no decay (delta_rule); 1: γ_t = g_t on every key channel (gated_delta_rule); 2: γ_t = gk_t (kda).
// β is per head ([B,T,HV]) or per value channel ([B,T,HV,V]: value column c is its own delta rule with β_t[c]).
// GVA: value head hv reads q/k head hv / (HV/H). Sequence n is (batch, start, length) of `seqs`; state row n.
//
// Parallel decomposition:
//   delta_recurrent   one work-item per (sequence, value head, value column c): value column c of the state evolves
//                     on its own (u_t[c] needs only S[:,c]), so the work-item owns S[:,c] and streams over t, keeping it
//                     in private memory for K ≤ 128 and in the final_state buffer (coalesced across c) beyond.
//   delta_chunked     one work-group per (sequence, value head), chunks in order (the inter-chunk state recurrence is
//                     sequential); inside a chunk the work-items share the steps of WyChunkwise.cs:
//                       1. Γ (items over key channels d)   2. the decayed Gram matrices k·k and q·k (items over (r, j))
//                       3. T = (I + A)⁻¹ diag(β) by forward substitution (items over (β column, column of T))
//                       4. W = T K̃ (items over (β column, r, d))
//                       5.–6. u = U − W S, the outputs and the next state (items over value columns c, each owning S[:,c])
//                     Scratch for these lives in global memory per (sequence, head), sized by the chunk.
//   l2_normalise_rows one work-item per row: x ← x / √(Σx² + 1e-6), fla's l2norm, as DeltaProblem.L2Normalise.
// Every loop runs in the reference's order and contraction into fma is off, so f64 results match the CPU's to rounding.

// The recurrent kernels keep their state column S[:,c] in private memory when K ≤ MAX_PRIVATE_K, else in the
// final_state buffer; S_AT(d) reads and S_PUT(d, x) writes element d either way, and the column is copied out at the end.
#define MAX_PRIVATE_K 128
#define S_AT(d) (inPrivate ? column[d] : s[(d) * V])
#define S_PUT(d, x) do { const real value_ = (x); if (inPrivate) column[d] = value_; else s[(d) * V] = value_; } while (0)

__kernel void l2_normalise_rows(__global real* x, const int rows, const int width, const real epsilon)
{
    const long row = get_global_id(0);
    if (row >= rows) return;
    __global real* xr = x + row * width;
    real sumOfSquares = 0;
    for (int d = 0; d < width; d++) sumOfSquares += xr[d] * xr[d];
    const real inverseNorm = 1 / sqrt(sumOfSquares + epsilon);
    for (int d = 0; d < width; d++) xr[d] *= inverseNorm;
}

// β of token `row` (index b·T + t), value head hv, value column c.
inline real beta_at(__global const real* beta, long row, int HV, int hv, int V, int c, int betaPerValue)
{
    return betaPerValue ? beta[(row * HV + hv) * V + c] : beta[row * HV + hv];
}

// γ_t[d] of token `row` for the decay mode.
inline real log_decay(__global const real* g, __global const real* gk, long row, int HV, int hv, int K, int d, int mode)
{
    return mode == 0 ? 0 : mode == 1 ? g[row * HV + hv] : gk[(row * HV + hv) * K + d];
}

__kernel void delta_recurrent(
    __global const real* q, __global const real* k, __global const real* v, __global const real* beta,
    __global const real* g, __global const real* gk, __global const real* s0, __global const int* seqs,
    __global real* o, __global real* S,
    const int N, const int T, const int H, const int HV, const int K, const int V,
    const int betaPerValue, const int mode, const int hasS0, const real scale)
{
    const long item = get_global_id(0);
    if (item >= (long)N * HV * V) return;
    const int c = (int)(item % V), hv = (int)(item / V % HV), n = (int)(item / V / HV);
    const int h = hv / (HV / H);
    const int b = seqs[3 * n], start = seqs[3 * n + 1], length = seqs[3 * n + 2];
    __global real* s = S + ((long)n * HV + hv) * K * V + c;      // s[d * V] = S[d, c]
    real column[MAX_PRIVATE_K];
    const int inPrivate = K <= MAX_PRIVATE_K;
    for (int d = 0; d < K; d++) S_PUT(d, hasS0 ? s0[((long)n * HV + hv) * K * V + d * V + c] : 0);

    for (int t = 0; t < length; t++) {
        const long row = (long)b * T + start + t;
        __global const real* qt = q + (row * H + h) * K;
        __global const real* kt = k + (row * H + h) * K;
        // S' = D_t S_{t−1}
        if (mode == 1) {
            const real decay = exp(g[row * HV + hv]);
            for (int d = 0; d < K; d++) S_PUT(d, S_AT(d) * decay);
        } else if (mode == 2) {
            for (int d = 0; d < K; d++) S_PUT(d, S_AT(d) * exp(gk[(row * HV + hv) * K + d]));
        }
        // u_t = β_t (v_t − S'ᵀ k_t)
        real sk = 0;
        for (int d = 0; d < K; d++) sk += S_AT(d) * kt[d];
        const real u = beta_at(beta, row, HV, hv, V, c, betaPerValue) * (v[(row * HV + hv) * V + c] - sk);
        // S_t = S' + k_t u_tᵀ
        for (int d = 0; d < K; d++) S_PUT(d, S_AT(d) + kt[d] * u);
        // o_t = scale · S_tᵀ q_t
        real sq = 0;
        for (int d = 0; d < K; d++) sq += S_AT(d) * qt[d];
        o[(row * HV + hv) * V + c] = scale * sq;
    }
    if (inPrivate)
        for (int d = 0; d < K; d++) s[d * V] = column[d];
}

// Scratch per (sequence, value head), in reals: Γ C·K, k·k C·C, q·k C·C, T nb·C·C, W nb·C·K, u C·V
// (nb = V with per-value β, else 1). The host sizes the buffer with the same formula.
__kernel void delta_chunked(
    __global const real* q, __global const real* k, __global const real* v, __global const real* beta,
    __global const real* g, __global const real* gk, __global const real* s0, __global const int* seqs,
    __global real* o, __global real* S, __global real* scratch,
    const int N, const int T, const int H, const int HV, const int K, const int V,
    const int betaPerValue, const int mode, const int hasS0, const real scale, const int C)
{
    const int pair = get_group_id(0), lid = get_local_id(0), L = get_local_size(0);
    const int hv = pair % HV, n = pair / HV, h = hv / (HV / H);
    const int b = seqs[3 * n], start0 = seqs[3 * n + 1], length = seqs[3 * n + 2];
    const int nb = betaPerValue ? V : 1;
    const long scratchSize = (long)C * K + 2L * C * C + (long)nb * C * C + (long)nb * C * K + (long)C * V;
    __global real* gamma = scratch + pair * scratchSize;   // Γ      [C x K]
    __global real* kk = gamma + (long)C * K;               // k_r·k_j decayed  [C x C]
    __global real* qk = kk + (long)C * C;                  // q_r·k_j decayed  [C x C]
    __global real* tm = qk + (long)C * C;                  // T      [nb][C x C]
    __global real* w = tm + (long)nb * C * C;              // W      [nb][C x K]
    __global real* u = w + (long)nb * C * K;               // u      [C x V]
    __global real* s = S + ((long)n * HV + hv) * K * V;    // s[d * V + c] = S[d, c]

    for (int c = lid; c < V; c += L)
        for (int d = 0; d < K; d++) s[d * V + c] = hasS0 ? s0[((long)n * HV + hv) * K * V + d * V + c] : 0;

    for (int start = 0; start < length; start += C) {
        const int m = min(C, length - start);               // the chunk's length (the reference's n)
        const long row0 = (long)b * T + start0 + start;     // token index of the chunk's step 0

        // 1. Γ_r = γ_0 + … + γ_r, relative to the chunk start.
        for (int d = lid; d < K; d += L)
            for (int r = 0; r < m; r++)
                gamma[r * K + d] = (r == 0 ? 0 : gamma[(r - 1) * K + d]) + log_decay(g, gk, row0 + r, HV, hv, K, d, mode);
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 2. kk_rj = Σ_d k_r[d] k_j[d] exp(Γ_r[d] − Γ_j[d]) for j < r; qk_rj the same with q_r, for j ≤ r.
        for (int e = lid; e < m * m; e += L) {
            const int r = e / m, j = e % m;
            if (j > r) continue;
            __global const real* kr = k + ((row0 + r) * H + h) * K;
            __global const real* qr = q + ((row0 + r) * H + h) * K;
            __global const real* kj = k + ((row0 + j) * H + h) * K;
            real sumK = 0, sumQ = 0;
            for (int d = 0; d < K; d++) {
                const real decay = exp(gamma[r * K + d] - gamma[j * K + d]);
                sumK += kr[d] * kj[d] * decay;
                sumQ += qr[d] * kj[d] * decay;
            }
            if (j < r) kk[r * C + j] = sumK;
            qk[r * C + j] = sumQ;
        }
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 3. T = (I + A)⁻¹ diag(β), A_rj = β_r kk_rj: column cT of T for β column bc, by forward substitution.
        for (int e = lid; e < nb * m; e += L) {
            const int bc = e / m, cT = e % m;
            __global real* tb = tm + (long)bc * C * C;
            for (int r = 0; r < m; r++) {
                const real betaR = beta_at(beta, row0 + r, HV, hv, V, bc, betaPerValue);
                real sum = cT == r ? betaR : 0;
                for (int j = cT; j < r; j++) sum -= betaR * kk[r * C + j] * tb[j * C + cT];
                tb[r * C + cT] = cT <= r ? sum : 0;
            }
        }
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 4. W = T K̃ with K̃_j = exp(Γ_j) ⊙ k_j.
        for (long e = lid; e < (long)nb * m * K; e += L) {
            const int bc = (int)(e / ((long)m * K)), r = (int)(e / K % m), d = (int)(e % K);
            __global const real* tb = tm + (long)bc * C * C;
            real sum = 0;
            for (int j = 0; j <= r; j++) sum += tb[r * C + j] * (exp(gamma[j * K + d]) * k[((row0 + j) * H + h) * K + d]);
            w[((long)bc * C + r) * K + d] = sum;
        }
        barrier(CLK_GLOBAL_MEM_FENCE);

        // 5.–6. per value column c (its own T and W with per-value β).
        for (int c = lid; c < V; c += L) {
            const int bc = betaPerValue ? c : 0;
            __global const real* tb = tm + (long)bc * C * C;
            __global const real* wb = w + (long)bc * C * K;
            // u = U − W S, U = T V.
            for (int r = 0; r < m; r++) {
                real ur = 0;
                for (int j = 0; j <= r; j++) ur += tb[r * C + j] * v[((row0 + j) * HV + hv) * V + c];
                for (int d = 0; d < K; d++) ur -= wb[r * K + d] * s[d * V + c];
                u[r * V + c] = ur;
            }
            // o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} qk_rj u_j).
            for (int r = 0; r < m; r++) {
                __global const real* qr = q + ((row0 + r) * H + h) * K;
                real acc = 0;
                for (int d = 0; d < K; d++) acc += qr[d] * exp(gamma[r * K + d]) * s[d * V + c];
                for (int j = 0; j <= r; j++) acc += qk[r * C + j] * u[j * V + c];
                o[((row0 + r) * HV + hv) * V + c] = acc * scale;
            }
            // S ← Diag(exp(Γ_{m−1})) S + Σ_j Diag(exp(Γ_{m−1} − Γ_j)) k_j u_jᵀ.
            const int last = m - 1;
            for (int d = 0; d < K; d++) {
                real sd = s[d * V + c] * exp(gamma[last * K + d]);
                for (int j = 0; j < m; j++)
                    sd += exp(gamma[last * K + d] - gamma[j * K + d]) * k[((row0 + j) * H + h) * K + d] * u[j * V + c];
                s[d * V + c] = sd;
            }
        }
        barrier(CLK_GLOBAL_MEM_FENCE);
    }
}
