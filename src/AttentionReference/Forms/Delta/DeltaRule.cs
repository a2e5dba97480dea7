using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// DeltaNet: linear attention whose state is updated by the delta rule, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]  k [B,T,H,K]  v [B,T,HV,V]  beta [B,T,HV] or [B,T,HV,V]  initial_state [N,HV,K,V]
///   cu_seqlens [N+1] optional (B = 1)   →   o [B,T,HV,V]  final_state [N,HV,K,V]
///   HV = H in fla's delta rule; HV a multiple of H is accepted too (GVA, as fla's gated_delta_rule and kda):
///   value head hv reads q/k head hv / (HV/H). N = B, or the number of sequences with cu_seqlens (B = 1).
///
/// Per sequence and value head, S is K x V, S_0 = initial_state (zeros if absent):
///   q_t, k_t ← q_t / √(|q_t|² + 1e-6), k_t / √(|k_t|² + 1e-6)     only with use_qk_l2norm_in_kernel
///   S_t = (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ
///   o_t = scale · S_tᵀ q_t                                          scale = K^(-1/2) unless given
///   final_state = S_T
/// Equivalently, with the new value u_t (what the recurrent variant computes):
///   u_t = β_t ⊙ (v_t − S_{t−1}ᵀ k_t),   S_t = S_{t−1} + k_t u_tᵀ
/// which also defines per-value β (β_t ∈ R^V): value column c follows the delta rule with the scalar β_t[c].
/// </code>
/// Sources: Schlag et al. 2021 and Yang et al. 2024 (arXiv 2406.06484) for the rule; fla's
/// <c>fla/ops/delta_rule/naive.py</c> (<c>delta_rule_recurrence</c>: v_new = β ⊙ (v − Sᵀk), S += k v_newᵀ, o = (scale·q)ᵀS
/// after the update; a beta with as many axes as v is per value) and <c>fla/ops/delta_rule/fused_recurrent.py</c>
/// (the same, with beta [B,T,H] or [B,T,H,V]); the L2 norm and its ε = 1e-6 from <c>fla/modules/l2norm.py</c>, applied
/// before the scale as <c>chunk_delta_rule</c>'s <c>use_qk_l2norm_in_kernel</c> does. β is not restricted: with
/// L2-normalised keys, I − β k kᵀ has eigenvalues 1 and 1 − β, so the state stays bounded for β ∈ [0, 2]; that is the
/// caller's business, as in fla.
///
/// Variants:
///   <c>recurrent</c>  the definition, one token at a time (<see cref="Recurrent"/>: decay, predict, correct, read out;
///              gated_delta_rule and kda are the same step with a decay in front).
///   <c>chunked</c>    the WY / UT-transform chunkwise algorithm (its numbered steps: WyChunkwise.cs), any chunk size C ≥ 1.
///   <c>parallel</c>   the quadratic form over the whole sequence with one triangular solve (the explicit
///              (I + tril(diag(β) K Kᵀ, −1))⁻¹ formulation, written as its own method rather than chunked with C = T):
///                (I + tril(diag(β) K Kᵀ, −1)) U = diag(β) (V − K S_0)       solved by forward substitution
///                O = scale · (Q S_0 + tril(Q Kᵀ) U)                         (tril keeps the diagonal)
///                S_T = S_0 + Kᵀ U
///              With per-value β the solve is done per value column (β_t[c] in place of β_t).
/// </summary>
public sealed class DeltaRule : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } =
        DeltaSpecs.Contract("delta_rule", "DeltaRule.cs", ["recurrent", "chunked", "parallel"], decay: null, perValueBeta: true);

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem) => variant switch
    {
        "recurrent" => DeltaHeads.Run(problem, (head, options) => Recurrent(head, options.Scale, decay: null)),
        "chunked" => DeltaHeads.Run(problem, (head, options) => WyChunkwise.Chunked(head, options, decay: null)),
        "parallel" => DeltaHeads.Run(problem, (head, options) => Parallel(head, options.Scale)),
        _ => throw UnknownVariant(variant),
    };

    /// <summary>
    /// The recurrence, token by token: the definition of delta_rule (<paramref name="decay"/> null), and of
    /// gated_delta_rule and kda, whose log decay γ_t <paramref name="decay"/> fills:
    ///   S_t = (I − β_t k_t k_tᵀ) Diag(exp(γ_t)) S_{t−1} + β_t k_t v_tᵀ,   o_t = scale · S_tᵀ q_t.
    /// </summary>
    public static void Recurrent(Head head, double scale, LogDecay? decay)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), β = head.Rows("beta"), o = head.Rows("o");
        RowBlock S = head.State();
        var γ = new double[head["K"]];
        var p = new double[head["V"]]; // Sᵀ k_t: what the state recalls for k_t
        var u = new double[head["V"]]; // the new value u_t
        for (int t = 0; t < head.T; t++)
        {
            decay?.Invoke(t, γ);
            Array.Clear(p);
            for (int a = 0; a < S.Count; a++)
            {
                if (decay is not null)
                {
                    VectorKernels.Scale(Math.Exp(γ[a]), S[a]); // decay:    S ← Diag(exp(γ_t)) S
                }
                VectorKernels.Axpy(k[t][a], S[a], p);          // predict:  p = Sᵀ k_t
            }
            NewValue(β[t], v[t], p, u);                        // correct:  u_t = β_t ⊙ (v_t − p)
            for (int a = 0; a < S.Count; a++)
            {
                VectorKernels.Axpy(k[t][a], u, S[a]);          //           S ← S + k_t u_tᵀ
                VectorKernels.Axpy(q[t][a], S[a], o[t]);       // read out: o_t = Sᵀ q_t
            }
            VectorKernels.Scale(scale, o[t]);                  //           o_t ← scale · o_t
        }
    }

    /// <summary>u = β_t ⊙ (v_t − p), with a headwise β_t (one value) or a per-value one (V values).</summary>
    private static void NewValue(ReadOnlySpan<double> β, ReadOnlySpan<double> v, ReadOnlySpan<double> p, Span<double> u)
    {
        for (int c = 0; c < u.Length; c++)
        {
            u[c] = β[β.Length == 1 ? 0 : c] * (v[c] - p[c]);
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem) => variant switch
    {
        "recurrent" => DeltaHeads.Backward(problem, (head, options) => RecurrentBackward(head, options.Scale, decay: null, decayGradient: null)),
        "chunked" => DeltaHeads.Backward(problem, (head, options) => WyChunkwise.ChunkedBackward(head, options, decay: null, decayGradient: null)),
        "parallel" => DeltaHeads.Backward(problem, (head, options) => ParallelBackward(head, options.Scale)),
        _ => throw UnknownVariant(variant),
    };

    /// <summary>
    /// The backward pass of the recurrence (delta_rule's, and gated_delta_rule's and kda's with their
    /// <paramref name="decay"/>), in reverse time from the states a forward replay stores (the definition keeps every
    /// state; the chunked backward recomputes them per chunk). Step t in reverse, with S' = Diag(exp γ_t) S_{t−1},
    /// p = S'ᵀ k_t and u_t = β_t ⊙ (v_t − p) recomputed:
    /// <code>
    ///   dS = dfinal_state (0 if absent)
    ///   for t = T … 1:
    ///     dS  += scale · q_t do_tᵀ,   dq_t = scale · S_t do_t        read out:  o_t = scale · S_tᵀ q_t
    ///     du   = dSᵀ k_t,            dk_t = dS u_t                   correct:   S_t = S' + k_t u_tᵀ
    ///     dv_t = β_t ⊙ du,           dβ_t = du ⊙ (v_t − p)                      u_t = β_t ⊙ (v_t − p)
    ///                                (Σ over the V values for a headwise β)
    ///     dp   = −β_t ⊙ du,          dk_t += S' dp,   dS' = dS + k_t dpᵀ         predict:   p = S'ᵀ k_t
    ///     dγ_t = rowsum(dS' ∘ S'),   dS = Diag(exp γ_t) dS'  (now dS_{t−1})    decay:     S' = Diag(exp γ_t) S_{t−1}
    ///   dinitial_state = dS
    /// </code>
    /// dγ_t goes to the form's gate through <paramref name="decayGradient"/> (gated_delta_rule: dg_t = Σ_d dγ_t[d]; kda:
    /// dgk_t = dγ_t). q and k are the rows the forward read (normalised where asked: the runner takes dq and dk back
    /// through the norm).
    /// </summary>
    public static void RecurrentBackward(Head head, double scale, LogDecay? decay, LogDecayGradient? decayGradient)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), β = head.Rows("beta");
        RowBlock dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv"), dβ = head.Rows("dbeta");
        RowBlock? dO = head.OptionalRows("do");
        RowBlock[] S = Replay(head, decay);              // S[t + 1] is the state after row t, S[0] the initial state
        RowBlock dS = head.StateGradient();
        RowBlock decayed = RowBlock.Zeros(head["K"], head["V"]); // S'
        var γ = new double[head["K"]];
        var dγ = new double[head["K"]];
        double[] p = new double[head["V"]], u = new double[head["V"]], du = new double[head["V"]], dp = new double[head["V"]];
        for (int t = head.T - 1; t >= 0; t--)
        {
            Decay(S[t], decay, t, γ, decayed);           // S' = Diag(exp γ_t) S_{t−1}
            Predict(decayed, k[t], p);                   // p = S'ᵀ k_t
            NewValue(β[t], v[t], p, u);                  // u_t = β_t ⊙ (v_t − p)
            Array.Clear(du);
            for (int a = 0; a < dS.Count; a++)
            {
                if (dO is not null)
                {
                    VectorKernels.Axpy(scale * q[t][a], dO[t], dS[a]);        // dS += scale q_t do_tᵀ
                    dq[t][a] = scale * VectorKernels.Dot(S[t + 1][a], dO[t]); // dq_t = scale S_t do_t
                }
                VectorKernels.Axpy(k[t][a], dS[a], du);                       // du = dSᵀ k_t
                dk[t][a] = VectorKernels.Dot(dS[a], u);                       // dk_t = dS u_t
            }
            NewValueBackward(β[t], v[t], p, du, dv[t], dβ[t], dp);          // dv_t, dβ_t, dp
            for (int a = 0; a < dS.Count; a++)
            {
                dk[t][a] += VectorKernels.Dot(decayed[a], dp);                // dk_t += S' dp
                VectorKernels.Axpy(k[t][a], dp, dS[a]);                       // dS' = dS + k_t dpᵀ
                dγ[a] = VectorKernels.Dot(dS[a], decayed[a]);                 // dγ_t = rowsum(dS' ∘ S')
                VectorKernels.Scale(Math.Exp(γ[a]), dS[a]);                   // dS_{t−1} = Diag(exp γ_t) dS'
            }
            decayGradient?.Invoke(t, dγ);
        }
    }

    /// <summary>The states of the recurrence, replayed from the initial state: [t + 1] after row t, [0] the initial state.</summary>
    private static RowBlock[] Replay(Head head, LogDecay? decay)
    {
        RowBlock k = head.Rows("k"), v = head.Rows("v"), β = head.Rows("beta");
        var S = new RowBlock[head.T + 1];
        S[0] = head.InitialState();
        var γ = new double[head["K"]];
        double[] p = new double[head["V"]], u = new double[head["V"]];
        for (int t = 0; t < head.T; t++)
        {
            S[t + 1] = RowBlock.Zeros(head["K"], head["V"]);
            Decay(S[t], decay, t, γ, S[t + 1]);          // S' = Diag(exp γ_t) S_{t−1}
            Predict(S[t + 1], k[t], p);                  // p = S'ᵀ k_t
            NewValue(β[t], v[t], p, u);                  // u_t = β_t ⊙ (v_t − p)
            for (int a = 0; a < S[t + 1].Count; a++)
            {
                VectorKernels.Axpy(k[t][a], u, S[t + 1][a]); // S_t = S' + k_t u_tᵀ
            }
        }
        return S;
    }

    /// <summary>S' = Diag(exp γ_t) S into <paramref name="decayed"/>, γ_t filled by <paramref name="decay"/> (0 without one).</summary>
    private static void Decay(RowBlock S, LogDecay? decay, int t, Span<double> γ, RowBlock decayed)
    {
        decay?.Invoke(t, γ);
        for (int a = 0; a < S.Count; a++)
        {
            VectorKernels.Multiply(S[a], Math.Exp(γ[a]), decayed[a]);
        }
    }

    /// <summary>p = Sᵀ k: what the state recalls for k.</summary>
    private static void Predict(RowBlock S, ReadOnlySpan<double> k, Span<double> p)
    {
        p.Clear();
        for (int a = 0; a < S.Count; a++)
        {
            VectorKernels.Axpy(k[a], S[a], p);
        }
    }

    /// <summary>Through u = β ⊙ (v − p): dv = β ⊙ du, dβ = du ⊙ (v − p) (summed for a headwise β), dp = −β ⊙ du.</summary>
    private static void NewValueBackward(ReadOnlySpan<double> β, ReadOnlySpan<double> v, ReadOnlySpan<double> p, ReadOnlySpan<double> du,
        Span<double> dv, Span<double> dβ, Span<double> dp)
    {
        dβ.Clear();
        for (int c = 0; c < du.Length; c++)
        {
            int b = β.Length == 1 ? 0 : c;
            dv[c] = β[b] * du[c];
            dβ[b] += du[c] * (v[c] - p[c]);
            dp[c] = -β[b] * du[c];
        }
    }

    /// <summary>The quadratic form: one triangular solve over the whole sequence (steps in the class comment).</summary>
    public static void Parallel(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock Q = head.Rows("q"), K = head.Rows("k"), V = head.Rows("v"), β = head.Rows("beta"), O = head.Rows("o");
        RowBlock S = head.State(); // S_0 on entry, S_T on return
        int length = head.T, dk = head["K"], dv = head["V"];
        var (kk, qk) = Scores(Q, K);
        RowBlock U = NewValues(K, V, β, S, kk);
        // O = scale · (Q S_0 + tril(Q Kᵀ) U)
        for (int r = 0; r < length; r++)
        {
            Span<double> qr = Q[r], oRow = O[r];
            for (int c = 0; c < dv; c++)
            {
                double sum = 0;
                for (int d = 0; d < dk; d++)
                {
                    sum += qr[d] * S[d][c];
                }
                for (int j = 0; j <= r; j++)
                {
                    sum += qk[r * length + j] * U[j][c];
                }
                oRow[c] = scale * sum;
            }
        }
        // S_T = S_0 + Kᵀ U
        for (int j = 0; j < length; j++)
        {
            for (int d = 0; d < dk; d++)
            {
                double kjd = K[j][d];
                Span<double> Sd = S[d], Uj = U[j];
                for (int c = 0; c < dv; c++)
                {
                    Sd[c] += kjd * Uj[c];
                }
            }
        }
    }

    /// <summary>K Kᵀ and Q Kᵀ, [L x L], lower triangles only (the diagonal included).</summary>
    private static (double[] KK, double[] QK) Scores(RowBlock Q, RowBlock K)
    {
        int length = K.Count;
        var kk = new double[length * length];
        var qk = new double[length * length];
        for (int r = 0; r < length; r++)
        {
            for (int j = 0; j <= r; j++)
            {
                kk[r * length + j] = Dot(K[r], K[j]);
                qk[r * length + j] = Dot(Q[r], K[j]);
            }
        }
        return (kk, qk);
    }

    /// <summary>
    /// U from (I + tril(diag(β) K Kᵀ, −1)) U = diag(β) (V − K S_0), by forward substitution, one value column at a time
    /// (the matrix depends on the column only through a per-value β).
    /// </summary>
    private static RowBlock NewValues(RowBlock K, RowBlock V, RowBlock β, RowBlock S, double[] kk)
    {
        int length = K.Count, dk = K.Width, dv = V.Width;
        var U = RowBlock.Zeros(length, dv);
        for (int c = 0; c < dv; c++)
        {
            for (int r = 0; r < length; r++)
            {
                Span<double> kr = K[r];
                double ks0 = 0;
                for (int d = 0; d < dk; d++)
                {
                    ks0 += kr[d] * S[d][c];
                }
                double βr = β[r][β.Width == 1 ? 0 : c];
                double rhs = βr * (V[r][c] - ks0);
                for (int j = 0; j < r; j++)
                {
                    rhs -= βr * kk[r * length + j] * U[j][c];
                }
                U[r][c] = rhs;
            }
        }
        return U;
    }

    /// <summary>
    /// The backward pass of the quadratic form: the chain rule through its three matrix equations, one value column c at a
    /// time through the solve (A^c = tril(diag(β[:, c]) K Kᵀ, −1), R = diag(β) (V − K S_0), so (I + A^c) U[:, c] = R[:, c];
    /// a headwise β is the same for every c):
    /// <code>
    ///   O = scale · (Q S_0 + tril(Q Kᵀ) U),  S_T = S_0 + Kᵀ U:
    ///     dU   = scale · tril(Q Kᵀ)ᵀ dO + K dS_T
    ///     dQ   = scale · (dO S_0ᵀ + tril(dO Uᵀ) K),   dK = scale · tril(dO Uᵀ)ᵀ Q + U dS_Tᵀ,   dS_0 = dS_T + scale · Qᵀ dO
    ///   (I + A^c) U[:, c] = R[:, c]:
    ///     dR[:, c] = (I + A^c)⁻ᵀ dU[:, c]   by back substitution: dR_r = dU_r − Σ_{i>r} A^c_ir dR_i
    ///     dA^c     = −dR[:, c] U[:, c]ᵀ     on the strictly lower triangle
    ///   A^c_rj = β_r[c] k_r·k_j:   dβ_r[c] += Σ_{j&lt;r} dA^c_rj k_r·k_j;   w_rj = Σ_c β_r[c] dA^c_rj,
    ///                              dK_r += Σ_{j&lt;r} w_rj k_j,   dK_j += Σ_{r&gt;j} w_rj k_r
    ///   R_r = β_r ⊙ (v_r − S_0ᵀ k_r):   dV_r = β_r ⊙ dR_r,   dβ_r += dR_r ⊙ (v_r − S_0ᵀ k_r),
    ///                                   dK_r −= S_0 (β_r ⊙ dR_r),   dS_0 −= k_r (β_r ⊙ dR_r)ᵀ
    /// </code>
    /// (dβ summed over the V values for a headwise β.)
    /// </summary>
    public static void ParallelBackward(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock Q = head.Rows("q"), K = head.Rows("k"), V = head.Rows("v"), β = head.Rows("beta");
        RowBlock dQ = head.Rows("dq"), dK = head.Rows("dk"), dV = head.Rows("dv"), dβ = head.Rows("dbeta");
        RowBlock? dO = head.OptionalRows("do");
        RowBlock S0 = head.InitialState(), dS = head.StateGradient(); // dS_T on entry, dS_0 on return
        int length = head.T, dk = head["K"], dv = head["V"];
        var (kk, qk) = Scores(Q, K);
        RowBlock U = NewValues(K, V, β, S0, kk);
        double Beta(int r, int c) => β[r][β.Width == 1 ? 0 : c];
        ref double DBeta(int r, int c) => ref dβ[r][β.Width == 1 ? 0 : c];

        // Through O and S_T: dU, then dQ and dK, then dS_0 (dS_T is read before it changes).
        var dU = RowBlock.Zeros(length, dv);
        for (int j = 0; j < length; j++)
        {
            for (int d = 0; d < dk; d++)
            {
                VectorKernels.Axpy(K[j][d], dS[d], dU[j]);             // dU_j = dS_Tᵀ k_j
                dK[j][d] = VectorKernels.Dot(dS[d], U[j]);             // dK_j = dS_T U_j
            }
        }
        for (int r = 0; dO is not null && r < length; r++)
        {
            for (int d = 0; d < dk; d++)
            {
                dQ[r][d] = scale * VectorKernels.Dot(S0[d], dO[r]);    // dQ_r = scale S_0 do_r
                VectorKernels.Axpy(scale * Q[r][d], dO[r], dS[d]);     // dS_0 += scale q_r do_rᵀ
            }
            for (int j = 0; j <= r; j++)
            {
                VectorKernels.Axpy(scale * qk[r * length + j], dO[r], dU[j]); // dU_j += scale (q_r·k_j) do_r
                double ou = scale * VectorKernels.Dot(dO[r], U[j]);
                VectorKernels.Axpy(ou, K[j], dQ[r]);                   // dQ_r += scale (do_r·U_j) k_j
                VectorKernels.Axpy(ou, Q[r], dK[j]);                   // dK_j += scale (do_r·U_j) q_r
            }
        }

        // Through the solve, one value column at a time: dR by back substitution, then dA^c's part of dβ and w.
        var dR = RowBlock.Zeros(length, dv);
        var w = new double[length * length];
        for (int c = 0; c < dv; c++)
        {
            for (int r = length - 1; r >= 0; r--)
            {
                double sum = dU[r][c];
                for (int i = r + 1; i < length; i++)
                {
                    sum -= Beta(i, c) * kk[i * length + r] * dR[i][c];
                }
                dR[r][c] = sum;
            }
            for (int r = 0; r < length; r++)
            {
                for (int j = 0; j < r; j++)
                {
                    double dA = -dR[r][c] * U[j][c];
                    DBeta(r, c) += dA * kk[r * length + j];
                    w[r * length + j] += Beta(r, c) * dA;
                }
            }
        }

        // Through R = diag(β) (V − K S_0), then A's k_r·k_j.
        var scaled = new double[dv]; // β_r ⊙ dR_r
        for (int r = 0; r < length; r++)
        {
            for (int c = 0; c < dv; c++)
            {
                double residual = V[r][c];
                for (int d = 0; d < dk; d++)
                {
                    residual -= K[r][d] * S0[d][c];
                }
                scaled[c] = Beta(r, c) * dR[r][c];
                dV[r][c] = scaled[c];
                DBeta(r, c) += dR[r][c] * residual;
            }
            for (int d = 0; d < dk; d++)
            {
                dK[r][d] -= VectorKernels.Dot(S0[d], scaled);
                VectorKernels.Axpy(-K[r][d], scaled, dS[d]);
            }
            for (int j = 0; j < r; j++)
            {
                VectorKernels.Axpy(w[r * length + j], K[j], dK[r]);
                VectorKernels.Axpy(w[r * length + j], K[r], dK[j]);
            }
        }
    }

    /// <summary>Σ_d x[d] y[d], summed in order (the quadratic form's scores).</summary>
    private static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        double sum = 0;
        for (int d = 0; d < x.Length; d++)
        {
            sum += x[d] * y[d];
        }
        return sum;
    }
}
