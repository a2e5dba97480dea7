using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>
/// The backward pass of mlstm's chunked form, and so of the parallel form (one chunk spanning the sequence), as the forward
/// computes them; the recurrent one, the definition's, with the derivation, is in Mlstm.cs.
/// <code>
/// The entering state (C̃, ñ, m) of every chunk is recomputed by a forward sweep (the forward's steps 1 and 3 for each
/// chunk's last row) and kept, one per chunk; then the chunks in reverse, with D, Dn the stabilised gradients of the state
/// after the chunk (relative to its m_{n−1}) and dm the gradient of m_{n−1}. In the chunk from s, of n steps, with the
/// forward's b_r, ℓ_r*, ℓ_rj, m_r (row r's max) and its weights W_rj = exp(ℓ_rj − m_r), carried_r = exp(ℓ_r* − m_r):
///   1. row r's read: qs_r = scale·q_r, h̃_r = carried_r qs_rᵀ C̃ + Σ_{j≤r} W_rj (qs_r·k_j) v_j, ñ_r alike, and as in the
///      recurrence g_r = do_r / den_r, γ_r, the eps term of dm_r (MlstmOptions.ReadGradients)
///   2. inter-chunk: dqs_r  = carried_r (C̃ g_r + γ_r ñ)
///      intra-chunk: G_rj   = W_rj (g_r·v_j + γ_r), j ≤ r:  dqs_r += G_rj k_j,  dk_j += G_rj qs_r,  dv_j += W_rj (qs_r·k_j) g_r
///   3. the state handed on, row n−1's gates: dk_j += W_{n−1,j} (D v_j + Dn),  dv_j += W_{n−1,j} Dᵀ k_j
///   each term's gradient E (its value times its cotangent) is the gradient of its log weight: E_rj = G_rj (qs_r·k_j) and
///   E_{n−1→},j = W_{n−1,j} k_jᵀ (D v_j + Dn) go to di_j; they and the carried terms, E_r* = qs_r·dqs_r(inter) and
///   carried_{n−1} (⟨D, C̃⟩ + ⟨Dn, ñ⟩), go to dlog f_p for every step p their decay spans (j &lt; p ≤ r; * : p ≤ r)
///   D, Dn ← carried_{n−1} (D, Dn) + Σ_r carried_r qs_r (g_r, γ_r)ᵀ: now relative to the entering m
///   the stabiliser: dm_r += the eps term, and m_r = max(log f_r + m_{r−1}, i_r) routes it as in the recurrence
/// dinitial_max = dm + ⟨D, C̃_{−1}⟩ + ⟨Dn, ñ_{−1}⟩ after the first chunk; dm starts as dfinal_max − ⟨D, C̃⟩ − ⟨Dn, ñ⟩ at the
/// final state. Every weight is a gate of the forward, ≤ 1.
/// </code>
/// </summary>
public sealed partial class Mlstm
{
    /// <summary>Chunks of <paramref name="chunkSize"/> steps: the entering states by a forward sweep, then the chunks in reverse.</summary>
    private static void ChunkedBackward(Head head, MlstmOptions options, int chunkSize)
    {
        if (head.T == 0)
        {
            return; // the final state is the initial one: the cotangents pass through unchanged, bit for bit
        }
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv");
        RowBlock? dO = head.OptionalRows("do");
        Series i = head.Series("i"), f = head.Series("f"), di = head.Series("di"), df = head.Series("df");
        RowBlock D = head.StateGradient();
        Span<double> Dn = head.StateGradient("normalizer")[0], dm = head.StateGradient("max")[0];
        int K = D.Count, V = D.Width, width = Math.Min(chunkSize, Math.Max(head.T, 1));
        var chunks = Chunks.Of(head.T, chunkSize).ToArray();
        var (local, logGate) = (new double[width], new double[width]);

        // The state entering each chunk: the forward's steps 1 (row n−1) and 3, chunk after chunk.
        var entering = new (RowBlock C, double[] N, double M)[chunks.Length];
        RowBlock C = head.InitialState();
        double[] n = head.InitialState("normalizer")[0].ToArray();
        double m = head.InitialState("max")[0][0];
        for (int chunk = 0; chunk < chunks.Length; chunk++)
        {
            var (s, e) = chunks[chunk];
            entering[chunk] = (Copy(C), (double[])n.Clone(), m);
            LocalLogForget(f, options, s, e - s, local);
            var (mRow, carried) = RowGates(i, m, local, s, e - s - 1, logGate);
            AdvanceState(C, n, carried, logGate, mRow, k, v, s, e - s);
            m = mRow;
        }
        dm[0] -= Overlap(D, Dn, C, n);

        var (weights, M, carriedRow) = (new double[width], new double[width], new double[width]); // W_rj of one row r; m_r, carried_r
        var (γ, dmRead, dLogF) = (new double[width], new double[width], new double[width]);
        var (qk, doV) = (new double[width], new double[width]); // qs_r·k_j and do_r·v_j of one row r
        var (qsRows, gRows) = (new double[width * K], new double[width * V]); // carried_r qs_r and g_r, for D's update
        var (qs, dqs, y, scratch) = (new double[K], new double[K], new double[K], new double[Math.Max(K, V)]);
        for (int chunk = chunks.Length - 1; chunk >= 0; chunk--)
        {
            var (s, e) = chunks[chunk];
            int length = e - s;
            var (Cs, ns, ms) = entering[chunk];
            LocalLogForget(f, options, s, length, local);
            for (int r = 0; r < length; r++)
            {
                (M[r], carriedRow[r]) = RowGates(i, ms, local, s, r, logGate);
            }
            Array.Clear(dLogF);
            Array.Clear(gRows);
            Array.Clear(qsRows);
            Array.Clear(γ);
            Array.Clear(dmRead);
            for (int r = 0; r < length && dO is not null; r++)
            {
                // 1. row r's read: ñ_r and ⟨do_r, h̃_r⟩, then g_r = do_r / den_r, γ_r and the eps term of dm_r.
                ReadOnlySpan<double> dOr = dO[s + r];
                RowWeights(i, ms, local, s, r, logGate, weights);
                VectorKernels.Multiply(q[s + r], options.Scale, qs);
                DenseMatrix.TimesTransposed(dOr, Cs.Contiguous(), y); // C̃ do_r
                double normaliser = carriedRow[r] * VectorKernels.Dot(qs, ns), doNumerator = carriedRow[r] * VectorKernels.Dot(qs, y);
                for (int j = 0; j <= r; j++)
                {
                    (qk[j], doV[j]) = (VectorKernels.Dot(qs, k[s + j]), VectorKernels.Dot(dOr, v[s + j]));
                    normaliser += weights[j] * qk[j];
                    doNumerator += weights[j] * qk[j] * doV[j];
                }
                (double inverse, γ[r], dmRead[r]) = options.ReadGradients(normaliser, M[r], doNumerator);
                Span<double> gr = gRows.AsSpan(r * V, V);
                VectorKernels.Multiply(dOr, inverse, gr);
                // 2. inter-chunk: dqs_r = carried_r (C̃ g_r + γ_r ñ); its term E_r* starts row r's sum over the spanned steps.
                VectorKernels.Multiply(y, carriedRow[r] * inverse, dqs);
                VectorKernels.Axpy(carriedRow[r] * γ[r], ns, dqs);
                double running = VectorKernels.Dot(qs, dqs);
                // intra-chunk: j ≤ r.
                for (int j = 0; j <= r; j++)
                {
                    dLogF[j] += running;
                    double G = weights[j] * (inverse * doV[j] + γ[r]);
                    VectorKernels.Axpy(G, k[s + j], dqs);
                    VectorKernels.Axpy(G, qs, dk[s + j]);
                    VectorKernels.Axpy(weights[j] * qk[j], gr, dv[s + j]);
                    di[s + j] += G * qk[j];
                    running += G * qk[j];
                }
                VectorKernels.Multiply(dqs, options.Scale, dq[s + r]);
                VectorKernels.Multiply(qs, carriedRow[r], qsRows.AsSpan(r * K, K));
            }
            // 3. the state handed on: row length−1's gates.
            RowWeights(i, ms, local, s, length - 1, logGate, weights);
            double carriedEnd = carriedRow[length - 1], runningEnd = carriedEnd * Overlap(D, Dn, Cs, ns);
            for (int j = 0; j < length; j++)
            {
                dLogF[j] += runningEnd;
                double λ = weights[j];
                DenseMatrix.TimesTransposed(v[s + j], D.Contiguous(), y); // D v_j
                VectorKernels.AddTo(Dn, y);
                VectorKernels.Axpy(λ, y, dk[s + j]);
                VectorKernels.Multiply(k[s + j], λ, scratch.AsSpan(0, K));
                DenseMatrix.AddWeightedRows(scratch.AsSpan(0, K), D.Contiguous(), dv[s + j]);
                double E = λ * VectorKernels.Dot(k[s + j], y);
                di[s + j] += E;
                runningEnd += E;
            }
            // D, Dn of the state entering the chunk.
            VectorKernels.Scale(carriedEnd, D.Contiguous());
            VectorKernels.Scale(carriedEnd, Dn);
            DenseMatrix.AddTransposedProduct(qsRows.AsSpan(0, length * K), length, gRows.AsSpan(0, length * V), D.Contiguous());
            DenseMatrix.AddTransposedProduct(qsRows.AsSpan(0, length * K), length, γ.AsSpan(0, length), Dn);
            // The stabiliser, row by row in reverse: m_r = max(log f_r + m_{r−1}, i_r).
            for (int r = length - 1; r >= 0; r--)
            {
                dm[0] += dmRead[r];
                double logF = options.LogForget(f[s + r]);
                var (toCarried, toInput) = MlstmOptions.MaxSlopes(logF + (r == 0 ? ms : M[r - 1]), i[s + r]);
                dLogF[r] += toCarried * dm[0];
                di[s + r] += toInput * dm[0];
                dm[0] *= toCarried;
                df[s + r] = dLogF[r] * options.LogForgetSlope(f[s + r]);
            }
        }
        dm[0] += Overlap(D, Dn, entering[0].C, entering[0].N);
    }

    /// <summary>Step 1 again for row r: its weights W_rj = exp(ℓ_rj − m_r), j ≤ r (recomputed rather than kept: no C×C block per chunk).</summary>
    private static void RowWeights(Series i, double mStart, ReadOnlySpan<double> local, int s, int r, Span<double> logGate, Span<double> weights)
    {
        double mRow = RowGates(i, mStart, local, s, r, logGate).M;
        for (int j = 0; j <= r; j++)
        {
            weights[j] = Math.Exp(logGate[j] - mRow);
        }
    }

    /// <summary>A packed, aligned copy of a state.</summary>
    private static RowBlock Copy(RowBlock x)
    {
        var copy = RowBlock.AlignedZeros(x.Count, x.Width);
        x.Contiguous().CopyTo(copy.Contiguous());
        return copy;
    }
}
