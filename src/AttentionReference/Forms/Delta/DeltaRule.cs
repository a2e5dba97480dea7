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

    /// <summary>The quadratic form: one triangular solve over the whole sequence (steps in the class comment).</summary>
    public static void Parallel(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        RowBlock Q = head.Rows("q"), K = head.Rows("k"), V = head.Rows("v"), β = head.Rows("beta"), O = head.Rows("o");
        RowBlock S = head.State(); // S_0 on entry, S_T on return
        int length = head.T, dk = head["K"], dv = head["V"];
        // K Kᵀ and Q Kᵀ, [L x L], lower triangles only.
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
        // (I + tril(diag(β) K Kᵀ, −1)) U = diag(β) (V − K S_0), by forward substitution, one value column at a time
        // (the matrix depends on the column only through a per-value β).
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
