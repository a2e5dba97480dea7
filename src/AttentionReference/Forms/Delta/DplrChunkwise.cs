using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// The WY representation of the DPLR chunkwise form (fla's <c>dplr_chunkwise</c> in
/// <c>fla/ops/generalized_delta_rule/dplr/naive.py</c>): the <c>chunked</c> variant of <see cref="Rwkv7"/>, chunks of C
/// steps (the last may be shorter), decays in log space relative to the chunk start.
/// <code>
/// The recurrence (one head; S is K x V):  S_t = Diag(exp(gk_t)) S_{t−1} + b_t (S_{t−1}ᵀ a_t)ᵀ + k_t v_tᵀ,  o_t = scale · S_tᵀ q_t.
/// In one chunk of n steps r = 0..n−1 from state S; code name → symbol:
///   gamma, gammaBefore  Γ_r = gk_0 + … + gk_r (inclusive),  Γ⁻_r = Γ_r − gk_r = gk_0 + … + gk_{r−1} (exclusive, Γ⁻_0 = 0)
///   wNew                w_r = S_{r−1}ᵀ a_r  (the value the low-rank term writes, fla's v2); unrolling S_{r−1} gives
///                         w_r = Σ_{j&lt;r} A_ab[r,j] w_j + Σ_{j&lt;r} A_ak[r,j] v_j + Sᵀ (exp(Γ⁻_r) ⊙ a_r)
///   aab, aak            A_ab[r,j] = Σ_d a_r[d] b_j[d] exp(Γ⁻_r[d] − Γ_j[d]),  A_ak[r,j] = Σ_d a_r[d] k_j[d] exp(Γ⁻_r[d] − Γ_j[d])
///                       for j &lt; r (strictly lower)
///   tMatrix             T = (I − A_ab)⁻¹
///   akv, u, w           A_ak V,  U = T A_ak V,  W = T Ã
/// Steps, per chunk:
///   1. Γ, Γ⁻.
///   2. A_ab, A_ak; T = (I − A_ab)⁻¹ by forward substitution: T_r = e_r + Σ_{j&lt;r} A_ab[r,j] T_j.
///   3. U = T A_ak V and W = T Ã with Ã_r = exp(Γ⁻_r) ⊙ a_r.
///   4. w = U + W S.
///   5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [Σ_d q_r k_j e^{Γ_r−Γ_j}] v_j + [Σ_d q_r b_j e^{Γ_r−Γ_j}] w_j).
///   6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) (k_j v_jᵀ + b_j w_jᵀ).
/// </code>
/// Every exponent is a sum of log decays over a range of steps (≤ 0 for gk ≤ 0): nothing is divided.
/// </summary>
internal static partial class DplrChunkwise
{
    /// <summary>One (sequence, head) pair, chunk by chunk: the state S entering the sequence is left final, o is written.</summary>
    public static void Chunked(Head head, double scale, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(head);
        var x = new Pair(head.Rows("q"), head.Rows("k"), head.Rows("v"), head.Rows("a"), head.Rows("b"), head.Rows("gk"), head.State(),
            head.Rows("o"), scale);
        var work = new Workspace(Math.Min(chunkSize, Math.Max(head.T, 1)), head["K"], head["V"]);
        foreach (var (start, end) in Chunks.Of(head.T, work.C))
        {
            var chunk = new Chunk(x, work, start, end - start);
            chunk.WyRepresentation(); // steps 1–3
            chunk.NewValues();        // step 4
            chunk.Outputs();          // step 5
            chunk.NextState();        // step 6
        }
    }

    /// <summary>The rows the steps read: q, k, a, b, gk [L x K], v [L x V], the state S [K x V] (initial in, final out), o [L x V].</summary>
    private sealed record Pair(RowBlock Q, RowBlock K, RowBlock V, RowBlock A, RowBlock B, RowBlock Gk, RowBlock S, RowBlock O, double Scale);

    /// <summary>The per-pair scratch, reused by every chunk.</summary>
    private sealed class Workspace(int chunk, int dk, int dv)
    {
        public int C { get; } = chunk;
        public int Dk { get; } = dk;
        public int Dv { get; } = dv;
        public double[] Gamma { get; } = new double[chunk * dk];       // Γ
        public double[] GammaBefore { get; } = new double[chunk * dk]; // Γ⁻
        public double[] Aab { get; } = new double[chunk * chunk];      // A_ab
        public double[] Aak { get; } = new double[chunk * chunk];      // A_ak
        public double[] TMatrix { get; } = new double[chunk * chunk];  // T = (I − A_ab)⁻¹
        public double[] Akv { get; } = new double[chunk * dv];         // A_ak V
        public double[] U { get; } = new double[chunk * dv];           // U
        public double[] W { get; } = new double[chunk * dk];           // W
        public double[] WNew { get; } = new double[chunk * dv];        // w = U + W S
    }

    /// <summary>One chunk of <paramref name="N"/> steps from <paramref name="Start"/>, and the numbered steps on it.</summary>
    private readonly partial record struct Chunk(Pair X, Workspace Work, int Start, int N)
    {
        /// <summary>Steps 1–3: Γ and Γ⁻; A_ab, A_ak and T = (I − A_ab)⁻¹; U = T A_ak V and W = T Ã.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void WyRepresentation()
        {
            int n = N, start = Start, dk = Work.Dk, dv = Work.Dv, cs = Work.C;
            double[] gamma = Work.Gamma, gammaBefore = Work.GammaBefore, aab = Work.Aab, aak = Work.Aak, tMatrix = Work.TMatrix;
            double[] akv = Work.Akv, u = Work.U, w = Work.W;
            RowBlock k = X.K, v = X.V, a = X.A, b = X.B, gk = X.Gk;

            // 1. Γ_r (inclusive) and Γ⁻_r (exclusive), relative to the chunk start.
            for (int r = 0; r < n; r++)
            {
                Span<double> gkr = gk[start + r];
                for (int d = 0; d < dk; d++)
                {
                    gammaBefore[r * dk + d] = r == 0 ? 0 : gamma[(r - 1) * dk + d];
                    gamma[r * dk + d] = gammaBefore[r * dk + d] + gkr[d];
                }
            }

            // 2. A_ab, A_ak (strictly lower); T = (I − A_ab)⁻¹ row by row.
            for (int r = 0; r < n; r++)
            {
                Span<double> ar = a[start + r];
                for (int j = 0; j < r; j++)
                {
                    Span<double> bj = b[start + j], kj = k[start + j];
                    double ab = 0, ak = 0;
                    for (int d = 0; d < dk; d++)
                    {
                        double ad = ar[d] * Math.Exp(gammaBefore[r * dk + d] - gamma[j * dk + d]);
                        ab += ad * bj[d];
                        ak += ad * kj[d];
                    }
                    aab[r * cs + j] = ab;
                    aak[r * cs + j] = ak;
                }
            }
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < n; c++)
                {
                    double sum = c == r ? 1 : 0;
                    for (int j = c; j < r; j++)
                    {
                        sum += aab[r * cs + j] * tMatrix[j * cs + c];
                    }
                    tMatrix[r * cs + c] = c <= r ? sum : 0;
                }
            }

            // 3. U = T (A_ak V), W = T Ã with Ã_j = exp(Γ⁻_j) ⊙ a_j.
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < dv; c++)
                {
                    double sum = 0;
                    for (int j = 0; j < r; j++)
                    {
                        sum += aak[r * cs + j] * v[start + j][c];
                    }
                    akv[r * dv + c] = sum;
                }
            }
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < dv; c++)
                {
                    double sum = 0;
                    for (int j = 0; j <= r; j++)
                    {
                        sum += tMatrix[r * cs + j] * akv[j * dv + c];
                    }
                    u[r * dv + c] = sum;
                }
                for (int d = 0; d < dk; d++)
                {
                    double sum = 0;
                    for (int j = 0; j <= r; j++)
                    {
                        sum += tMatrix[r * cs + j] * Math.Exp(gammaBefore[j * dk + d]) * a[start + j][d];
                    }
                    w[r * dk + d] = sum;
                }
            }
        }

        /// <summary>4. w = U + W S.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NewValues()
        {
            int dk = Work.Dk, dv = Work.Dv;
            double[] u = Work.U, w = Work.W, wNew = Work.WNew;
            RowBlock S = X.S;
            for (int r = 0; r < N; r++)
            {
                for (int c = 0; c < dv; c++)
                {
                    double sum = u[r * dv + c];
                    for (int d = 0; d < dk; d++)
                    {
                        sum += w[r * dk + d] * S[d][c];
                    }
                    wNew[r * dv + c] = sum;
                }
            }
        }

        /// <summary>5. o_r = scale · ((q_r ⊙ exp(Γ_r))ᵀ S + Σ_{j≤r} [q_r·k_j]_Γ v_j + [q_r·b_j]_Γ w_j).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Outputs()
        {
            int start = Start, dk = Work.Dk, dv = Work.Dv;
            double[] gamma = Work.Gamma, wNew = Work.WNew;
            RowBlock q = X.Q, k = X.K, v = X.V, b = X.B, o = X.O, S = X.S;
            for (int r = 0; r < N; r++)
            {
                Span<double> oRow = o[start + r], qr = q[start + r];
                for (int d = 0; d < dk; d++)
                {
                    double qd = qr[d] * Math.Exp(gamma[r * dk + d]);
                    Span<double> Sd = S[d];
                    for (int c = 0; c < dv; c++)
                    {
                        oRow[c] += qd * Sd[c];
                    }
                }
                for (int j = 0; j <= r; j++)
                {
                    Span<double> kj = k[start + j], bj = b[start + j], vj = v[start + j];
                    double qk = 0, qb = 0;
                    for (int d = 0; d < dk; d++)
                    {
                        double qd = qr[d] * Math.Exp(gamma[r * dk + d] - gamma[j * dk + d]);
                        qk += qd * kj[d];
                        qb += qd * bj[d];
                    }
                    for (int c = 0; c < dv; c++)
                    {
                        oRow[c] += qk * vj[c] + qb * wNew[j * dv + c];
                    }
                }
                for (int c = 0; c < dv; c++)
                {
                    oRow[c] *= X.Scale;
                }
            }
        }

        /// <summary>6. S ← Diag(exp(Γ_{n−1})) S + Σ_j Diag(exp(Γ_{n−1} − Γ_j)) (k_j v_jᵀ + b_j w_jᵀ).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void NextState()
        {
            int start = Start, dk = Work.Dk, dv = Work.Dv, last = N - 1;
            double[] gamma = Work.Gamma, wNew = Work.WNew;
            RowBlock k = X.K, v = X.V, b = X.B, S = X.S;
            for (int d = 0; d < dk; d++)
            {
                Span<double> Sd = S[d];
                double decay = Math.Exp(gamma[last * dk + d]);
                for (int c = 0; c < dv; c++)
                {
                    Sd[c] *= decay;
                }
                for (int j = 0; j < N; j++)
                {
                    double toEnd = Math.Exp(gamma[last * dk + d] - gamma[j * dk + d]);
                    double kj = toEnd * k[start + j][d], bj = toEnd * b[start + j][d];
                    Span<double> vj = v[start + j];
                    for (int c = 0; c < dv; c++)
                    {
                        Sd[c] += kj * vj[c] + bj * wNew[j * dv + c];
                    }
                }
            }
        }
    }
}
