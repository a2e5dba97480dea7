using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.Linear;

/// <summary>
/// The backward passes of linear's parallel and chunked forms (the recurrent one, the definition's, is in Linear.cs).
/// <code>
/// Notation (one pair): R_q,i and R_k,j the rows whose products are the scores A_ij (φ(q_i), φ(k_j); taylor2: q̃_i, k̃_j
/// with A_ij = 1 + s_ij + s_ij²/2, s_ij = q̃_i·k̃_j), c_i and δ_i the output's gradients at its numerator and denominator
/// (LinearOptions.OutputGradients: dn_i = c_i do_i, dd_i = δ_i), over the allowed pairs (j ≤ i, or all j when not causal):
///   dA_ij  = c_i (do_i·v_j) + δ_i                       o_i's numerator ∋ A_ij v_j, its denominator ∋ A_ij
///   W_ij   = dA_ij · ∂A_ij/∂(R_q,i·R_k,j)               (1, or 1 + s_ij for taylor2)
///   dR_q,i = Σ_j W_ij R_k,j,   dR_k,j = Σ_i W_ij R_q,i,   dv_j = Σ_i A_ij c_i do_i
/// and the state's parts, through the features: a query reading S, z gets dφ(q_i) = c_i S do_i + δ_i z and gives
/// dS += φ(q_i) (c_i do_i)ᵀ, dz += δ_i φ(q_i); a key entering a state with gradient dS, dz gets dφ(k_j) = dS v_j + dz and
/// dv_j += dSᵀ φ(k_j). dq, dk and dproj: the chain rule through φ of both parts (FeatureRows.QueryBackward, KeyBackward).
///
/// parallel  the matrix form's chain rule, one query row after another (its allowed keys), then one key after another:
///           the initial state's part (S0, z0 read by every query) and the final state's (dfinal_state, dfinal_normalizer
///           reach every key undecayed); dinitial_state = dfinal_state + Σ_i φ(q_i) (c_i do_i)ᵀ, dinitial_normalizer alike.
/// chunked   as fla's chunked linear attention backward computes it, no state stored: two sweeps over the chunks [s, e),
///           the forward's steps 1–3 in reverse:
///   sweep over the chunks in order (the queries), S, z the state entering the chunk:
///     1. inter-chunk part: P = dO Sᵀ, d_i = φ(q_i)·z + Σ_j A_ij and ⟨do_i, n_i⟩ = φ(q_i)·P_i + Σ_j A_ij (do_i·v_j) give
///        c_i, δ_i;  dφ(q_i) = c_i P_i + δ_i z
///     2. intra-chunk part: dA, W over j ≤ i in the chunk (both kept for the second sweep), dR_q = W R_k
///     3. S += Φkᵀ V, z += Φkᵀ 1, as the forward
///   sweep over the chunks in reverse (the keys), dS, dz the gradient of the state after the chunk:
///     3. dΦk = V dSᵀ + 1 dzᵀ,  dV = Φk dS
///     2. dR_k = Wᵀ R_q,  dV += Aᵀ (c ∘ dO)
///     1. the chunk's queries read the state entering it: dS += Φqᵀ (c ∘ dO), dz += Φqᵀ δ
///   dinitial_state, dinitial_normalizer = dS, dz after the first chunk.
///   Not causal: S, z over every chunk first; every query reads them (dφ(q_i) = c_i S do_i + δ_i z; dS += Φqᵀ (c ∘ dO) over
///   all chunks); then every key takes the total: dΦk = V dSᵀ + 1 dzᵀ, dV = Φk dS.
/// Arithmetic as the forward: chunk products through DenseMatrix, each score row from FeatureRows.
/// </code>
/// </summary>
public sealed partial class Linear
{
    /// <summary>The matrix form's chain rule: query rows over their allowed keys, then the keys' final-state part.</summary>
    private static void ParallelBackward(Head head, LinearOptions options)
    {
        var x = new Pair(head, options, head.InitialState(), head.InitialState("normalizer"));
        var g = new GradientRows(head);
        int T = head.T, F = x.F, V = head["V"], R = x.Features.ScoreWidth;
        RowBlock dS = head.StateGradient();
        Span<double> dz = head.StateGradient("normalizer")[0];
        RowBlock dSFinal = Copy(dS);
        double[] dzFinal = dz.ToArray();
        double[] A = new double[T], W = new double[T], φ = new double[F], dφ = new double[F], Sdo = new double[F];
        double[] row = new double[R], dRow = new double[R], dKeyRows = new double[T * R], cdo = new double[V];
        for (int i = 0; i < T && g.DO is not null; i++)
        {
            // The query's allowed keys and the initial state it reads.
            int keys = options.Causal ? i + 1 : T;
            Span<double> Ai = A.AsSpan(0, keys), Wi = W.AsSpan(0, keys);
            x.Features.Scores(i, 0, Ai);
            DenseMatrix.TimesTransposed(g.DO[i], x.Values(0, keys), Wi); // do_i·v_j
            x.Features.QueryFeatures(i, 1, φ);
            DenseMatrix.TimesTransposed(g.DO[i], x.S, Sdo);             // S0 do_i
            double denominator = VectorKernels.Dot(φ, x.Z) + TensorSum(Ai);
            double doNumerator = VectorKernels.Dot(φ, Sdo) + VectorKernels.Dot(Ai, Wi);
            var (c, δ) = options.OutputGradients(denominator, doNumerator);
            // dA_ij = c_i (do_i·v_j) + δ_i, then W; dv_j += A_ij c_i do_i; dR_k,j += W_ij R_q,i.
            VectorKernels.Multiply(g.DO[i], c, cdo);
            for (int j = 0; j < keys; j++)
            {
                Wi[j] = c * Wi[j] + δ;
                VectorKernels.Axpy(Ai[j], cdo, g.Dv[j]);
            }
            x.Features.ScoreSlopes(i, 0, Wi);
            x.Features.QueryScoreRows(i, 1, row);
            for (int j = 0; j < keys; j++)
            {
                VectorKernels.Axpy(Wi[j], row, dKeyRows.AsSpan(j * R, R));
            }
            // dR_q,i = Σ_j W_ij R_k,j; dφ(q_i) = c_i S0 do_i + δ_i z0; the initial state's gradient collects the read.
            Array.Clear(dRow);
            DenseMatrix.AddWeightedRows(Wi, x.Features.KeyScoreRows(0, keys), dRow);
            for (int a = 0; a < F; a++)
            {
                dφ[a] = c * Sdo[a] + δ * x.Z[a];
                VectorKernels.Axpy(φ[a], cdo, dS[a]);
            }
            VectorKernels.Axpy(δ, φ, dz);
            x.Features.QueryBackward(i, dφ, dRow, g.Dq[i], g.Dproj);
        }
        for (int j = 0; j < T; j++)
        {
            // The final state's part: dφ(k_j) = dfinal_state v_j + dfinal_normalizer, dv_j += dfinal_stateᵀ φ(k_j).
            x.Features.KeyFeatures(j, 1, φ);
            DenseMatrix.TimesTransposed(x.Values(j, 1), dSFinal.Contiguous(), dφ);
            VectorKernels.AddTo(dzFinal, dφ);
            DenseMatrix.AddWeightedRows(φ, dSFinal.Contiguous(), g.Dv[j]);
            x.Features.KeyBackward(j, dφ, dKeyRows.AsSpan(j * R, R), g.Dk[j], g.Dproj);
        }
    }

    /// <summary>Chunks of C steps: the queries' sweep in order, then the keys' sweep in reverse (steps 1–3 each).</summary>
    private static void ChunkedBackward(Head head, LinearOptions options)
    {
        var x = new Pair(head, options, head.InitialState(), head.InitialState("normalizer"));
        var g = new GradientRows(head);
        if (!options.Causal)
        {
            NonCausalChunkedBackward(head, options, x, g);
            return;
        }
        int T = head.T, C = Math.Min(options.ChunkSize, Math.Max(T, 1)), F = x.F, V = head["V"], R = x.Features.ScoreWidth;
        var work = new ChunkWork(C, F, V, R);
        // A and W of each chunk's [n x n] block, kept from the first sweep for the second; c_t and δ_t of every query.
        double[] A = new double[T * C], W = new double[T * C], c = new double[T], δ = new double[T];
        foreach (var (s, e) in Chunks.Of(T, C))
        {
            int n = e - s;
            Span<double> Φq = work.Φq(n), dΦ = work.dΦ(n), dRows = work.dRows(n), P = work.P(n);
            Span<double> Ablock = A.AsSpan(s * C, n * n), Wblock = W.AsSpan(s * C, n * n);
            x.Features.QueryFeatures(s, n, Φq);
            g.PackDo(s, n, work.DO(n));
            // 1. inter-chunk part: P = dO Sᵀ.
            P.Clear();
            DenseMatrix.AddProduct(work.DO(n), n, work.Transposed(x.S, F, V), V, P);
            Ablock.Clear();
            Wblock.Clear();
            dRows.Clear();
            for (int i = 0; i < n; i++)
            {
                // 2. intra-chunk part: A_ij and do_i·v_j over j ≤ i, then c_i, δ_i, dA_ij = c_i (do_i·v_j) + δ_i and W.
                Span<double> Ai = Ablock.Slice(i * n, i + 1), Wi = Wblock.Slice(i * n, i + 1);
                x.Features.Scores(s + i, s, Ai);
                DenseMatrix.TimesTransposed(work.DO(n).Slice(i * V, V), x.Values(s, i + 1), Wi);
                Span<double> φi = Φq.Slice(i * F, F), Pi = P.Slice(i * F, F);
                double denominator = VectorKernels.Dot(φi, x.Z) + TensorSum(Ai);
                (c[s + i], δ[s + i]) = options.OutputGradients(denominator, VectorKernels.Dot(φi, Pi) + VectorKernels.Dot(Ai, Wi));
                for (int j = 0; j <= i; j++)
                {
                    Wi[j] = c[s + i] * Wi[j] + δ[s + i];
                }
                x.Features.ScoreSlopes(s + i, s, Wi);
                // dφ(q_i) = c_i P_i + δ_i z (1.), dR_q,i = Σ_j W_ij R_k,j (2.).
                Span<double> dφi = dΦ.Slice(i * F, F);
                VectorKernels.Multiply(Pi, c[s + i], dφi);
                VectorKernels.Axpy(δ[s + i], x.Z, dφi);
                DenseMatrix.AddWeightedRows(Wi, x.Features.KeyScoreRows(s, i + 1), dRows.Slice(i * R, R));
                x.Features.QueryBackward(s + i, dφi, dRows.Slice(i * R, R), g.Dq[s + i], g.Dproj);
            }
            // 3. the state handed to the next chunk.
            AdvanceState(x, s, e);
        }
        RowBlock dS = head.StateGradient();
        Span<double> dz = head.StateGradient("normalizer")[0];
        foreach (var (s, e) in Chunks.Of(T, C).Reverse())
        {
            int n = e - s;
            Span<double> Φq = work.Φq(n), Φk = work.Φk(n), dΦ = work.dΦ(n), dRows = work.dRows(n), cdo = work.DO(n), dV = work.dV(n);
            x.Features.QueryFeatures(s, n, Φq);
            x.Features.KeyFeatures(s, n, Φk);
            Span<double> rows = R == F ? Φq : work.Rows(n); // the score rows: the features, or taylor2's q̃
            if (R != F)
            {
                x.Features.QueryScoreRows(s, n, rows);
            }
            g.PackDo(s, n, cdo);
            for (int i = 0; i < n; i++)
            {
                VectorKernels.Scale(c[s + i], cdo.Slice(i * V, V)); // c_i do_i
            }
            // 3. the state after the chunk: dΦk = V dSᵀ + 1 dzᵀ, dV = Φk dS.
            dΦ.Clear();
            DenseMatrix.AddProduct(x.Values(s, n), n, work.Transposed(dS.Contiguous(), F, V), V, dΦ);
            dV.Clear();
            DenseMatrix.AddProduct(Φk, n, dS.Contiguous(), F, dV);
            // 2. intra-chunk part: dR_k = Wᵀ R_q, dV += Aᵀ (c ∘ dO).
            dRows.Clear();
            DenseMatrix.AddTransposedProduct(W.AsSpan(s * C, n * n), n, rows, dRows);
            DenseMatrix.AddTransposedProduct(A.AsSpan(s * C, n * n), n, cdo, dV);
            for (int j = 0; j < n; j++)
            {
                Span<double> dφj = dΦ.Slice(j * F, F);
                VectorKernels.AddTo(dz, dφj);
                VectorKernels.AddTo(dV.Slice(j * V, V), g.Dv[s + j]);
                x.Features.KeyBackward(s + j, dφj, dRows.Slice(j * R, R), g.Dk[s + j], g.Dproj);
            }
            // 1. the chunk's queries read the state entering it.
            DenseMatrix.AddTransposedProduct(Φq, n, cdo, dS.Contiguous());
            DenseMatrix.AddTransposedProduct(Φq, n, δ.AsSpan(s, n), dz);
        }
    }

    /// <summary>Not causal: S, z over every chunk, every query's read of them, then every key with the total dS, dz.</summary>
    private static void NonCausalChunkedBackward(Head head, LinearOptions options, Pair x, GradientRows g)
    {
        int T = head.T, C = Math.Min(options.ChunkSize, Math.Max(T, 1)), F = x.F, V = head["V"];
        var work = new ChunkWork(C, F, V, 0);
        foreach (var (s, e) in Chunks.Of(T, C))
        {
            AdvanceState(x, s, e);
        }
        RowBlock dS = head.StateGradient();
        Span<double> dz = head.StateGradient("normalizer")[0];
        Span<double> Sᵀ = work.Transposed(x.S, F, V);
        var δ = new double[C];
        foreach (var (s, e) in Chunks.Of(T, C))
        {
            int n = e - s;
            Span<double> Φq = work.Φq(n), dΦ = work.dΦ(n), P = work.P(n), cdo = work.DO(n);
            x.Features.QueryFeatures(s, n, Φq);
            g.PackDo(s, n, cdo);
            P.Clear();
            DenseMatrix.AddProduct(cdo, n, Sᵀ, V, P); // P = dO Sᵀ
            for (int i = 0; i < n; i++)
            {
                Span<double> φi = Φq.Slice(i * F, F), Pi = P.Slice(i * F, F), dφi = dΦ.Slice(i * F, F);
                var (c, δi) = options.OutputGradients(VectorKernels.Dot(φi, x.Z), VectorKernels.Dot(φi, Pi));
                δ[i] = δi;
                VectorKernels.Multiply(Pi, c, dφi);
                VectorKernels.Axpy(δi, x.Z, dφi);
                VectorKernels.Scale(c, cdo.Slice(i * V, V));
                x.Features.QueryBackward(s + i, dφi, default, g.Dq[s + i], g.Dproj);
            }
            DenseMatrix.AddTransposedProduct(Φq, n, cdo, dS.Contiguous());
            DenseMatrix.AddTransposedProduct(Φq, n, δ.AsSpan(0, n), dz);
        }
        Span<double> dSᵀ = work.Transposed(dS.Contiguous(), F, V);
        foreach (var (s, e) in Chunks.Of(T, C))
        {
            int n = e - s;
            Span<double> Φk = work.Φk(n), dΦ = work.dΦ(n), dV = work.dV(n);
            x.Features.KeyFeatures(s, n, Φk);
            dΦ.Clear();
            DenseMatrix.AddProduct(x.Values(s, n), n, dSᵀ, V, dΦ);
            dV.Clear();
            DenseMatrix.AddProduct(Φk, n, dS.Contiguous(), F, dV);
            for (int j = 0; j < n; j++)
            {
                VectorKernels.AddTo(dz, dΦ.Slice(j * F, F));
                VectorKernels.AddTo(dV.Slice(j * V, V), g.Dv[s + j]);
                x.Features.KeyBackward(s + j, dΦ.Slice(j * F, F), default, g.Dk[s + j], g.Dproj);
            }
        }
    }

    private static double TensorSum(ReadOnlySpan<double> x) => System.Numerics.Tensors.TensorPrimitives.Sum(x);

    private static RowBlock Copy(RowBlock x)
    {
        var copy = RowBlock.AlignedZeros(x.Count, x.Width);
        for (int a = 0; a < x.Count; a++)
        {
            x[a].CopyTo(copy[a]);
        }
        return copy;
    }

    /// <summary>A pair's gradient rows (dq, dk, dv, performer's dproj) and its cotangent do (null: zero).</summary>
    private sealed class GradientRows(Head head)
    {
        public RowBlock Dq { get; } = head.Rows("dq");
        public RowBlock Dk { get; } = head.Rows("dk");
        public RowBlock Dv { get; } = head.Rows("dv");
        public RowBlock? DO { get; } = head.OptionalRows("do");
        public Span<double> Dproj => head.Problem.Has("proj") ? head.Row("dproj") : default;

        /// <summary>do_s … do_{s+n−1} packed row after row (zeros without a cotangent).</summary>
        public void PackDo(int s, int n, Span<double> rows)
        {
            int V = Dv.Width;
            for (int i = 0; i < n; i++)
            {
                if (DO is null)
                {
                    rows.Slice(i * V, V).Clear();
                }
                else
                {
                    DO[s + i].CopyTo(rows.Slice(i * V, V));
                }
            }
        }
    }

    /// <summary>One pair's chunk scratch, reused by every chunk: features, their gradients, dO (or c ∘ dO), P = dO Sᵀ, dV.</summary>
    private sealed class ChunkWork(int C, int F, int V, int R)
    {
        private readonly double[] _φq = new double[C * F], _φk = new double[C * F], _dφ = new double[C * F], _p = new double[C * F];
        private readonly double[] _rows = new double[C * R], _dRows = new double[C * R], _do = new double[C * V], _dV = new double[C * V];
        private readonly double[] _transposed = new double[F * V];

        public Span<double> Φq(int n) => _φq.AsSpan(0, n * F);
        public Span<double> Φk(int n) => _φk.AsSpan(0, n * F);
        public Span<double> dΦ(int n) => _dφ.AsSpan(0, n * F);
        public Span<double> P(int n) => _p.AsSpan(0, n * F);
        public Span<double> Rows(int n) => _rows.AsSpan(0, n * R);
        public Span<double> dRows(int n) => _dRows.AsSpan(0, n * R);
        public Span<double> DO(int n) => _do.AsSpan(0, n * V);
        public Span<double> dV(int n) => _dV.AsSpan(0, n * V);

        /// <summary>Mᵀ [V x F] of a packed M [F x V], into this scratch (the right-hand side of a product).</summary>
        public Span<double> Transposed(ReadOnlySpan<double> m, int rows, int columns)
        {
            for (int a = 0; a < rows; a++)
            {
                for (int b = 0; b < columns; b++)
                {
                    _transposed[b * rows + a] = m[a * columns + b];
                }
            }
            return _transposed;
        }
    }
}
