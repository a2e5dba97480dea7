using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// The backward passes of a normalised feature-map attention: the linear-attention steps that power and based's linear
/// branch share, reversed. The forward pass of one (sequence, head) pair, with query and key feature maps φq, φk of D
/// entries, the weight f(q·k) = φq(q)·φk(k) computed from the score directly, an output scale a and optional log gates g:
/// <code>
///   S_t = exp(g_t) S_{t−1} + φk(k_t) v_tᵀ,   z_t = exp(g_t) z_{t−1} + φk(k_t)
///   n_t = S_tᵀ φq(q_t),   d_t = φq(q_t)·z_t
///   o_t = a n_t / (a d_t + eps)   normalised,      o_t = a n_t   otherwise
///
/// Output step (every variant). n and d are the numerators of the values [v | 1]: (S, z) is one state S̃ = [S | z] over
/// the values ṽ_t = [v_t | 1], read back with the cotangent dñ_t = [dn_t | dd_t]:
///   dn_t = a do_t / (a d_t + eps),   dd_t = −a (do_t·o_t) / (a d_t + eps)      (dn_t = a do_t, dd_t = 0 unnormalised)
///
/// Recurrent (the definition's reverse-time recurrence, from the states S̃_t a forward replay keeps):
///   dS̃ = [dfinal_state | dfinal_normalizer]  (0 if absent)
///   for t = T−1 … 0:
///     dq_t  = Jφq(q_t)ᵀ (S̃_t dñ_t)          dS̃ += φq(q_t) dñ_tᵀ
///     dk_t  = Jφk(k_t)ᵀ (dS̃ ṽ_t)            dv_t = dSᵀ φk(k_t)
///     dg_t  = exp(g_t) ⟨S̃_{t−1}, dS̃⟩        dS̃ = exp(g_t) dS̃
///   dinitial_state, dinitial_normalizer = dS̃
///
/// Chunks [s, e) of C steps, b_t = g_s + … + g_t, w_tj = f(q_t·k_j) exp(b_t − b_j) for s ≤ j ≤ t, Φq and Φk the
/// chunk's feature rows (the chunked variant; the quadratic and parallel variants are one chunk of T steps from the
/// initial state: the matrix form's chain rule). A forward pass, chunk by chunk with the state S̃ entering each:
///   R.  the chunk's n_t, d_t as the forward steps 1 and 2 compute them, then the output step's dñ_t (kept: T x (V+1))
///   1′. inter-chunk:  dΦq_t = exp(b_t) S̃ dñ_t,  dq_t += Jφqᵀ dΦq_t
///   3.  S̃ ← exp(b_last) S̃ + Σ_j exp(b_last − b_j) φk_j ṽ_jᵀ
/// It keeps no state, but the one entering each chunk where there are gates (one D x V state per chunk, for G). Then
/// chunk by chunk from the last, dS̃ the gradient of the state leaving the chunk (dfinal_state for the last):
///   3′. state part:   dΦk_j = exp(b_last − b_j) dS̃ ṽ_j,  dk_j += Jφkᵀ dΦk_j;   dv_j += exp(b_last − b_j) dSᵀ φk_j
///   2′. intra-chunk:  dw_tj = dñ_t·ṽ_j;  dq_t += dw_tj f′(q_t·k_j) exp(b_t − b_j) k_j,  dk_j likewise with q_t;
///                     dv_j += w_tj dn_t
///   dS̃ ← exp(b_last) dS̃ + Σ_t exp(b_t) φq_t dñ_tᵀ: the gradient of the state entering the chunk.
///   G.  gates: g_r (s ≤ r &lt; e) decays exactly the terms whose two ends lie on either side of it; each is added where
///       it depends on g_r, so nothing is added and subtracted again (no cancellation beside tiny gradients):
///         dg_r = Σ_{t≥r} dΦq_t·Φq_t + exp(b_last) ⟨dS̃, S̃⟩ + Σ_{j&lt;r} dΦk_j·Φk_j + Σ_{t≥r} Σ_{j&lt;r} dw_tj w_tj
///       (the last sum as column sums over the rows t taken from the last: O(n²)).
/// Legend: S̃ = [S | z] (the states final_state, final_normalizer), dS̃ = [dS | dz], dñ = [dn | dd].
/// </code>
/// </summary>
internal static class FeatureAttentionBackward
{
    /// <summary>The definition's reverse-time recurrence (class comment), the states replayed and kept.</summary>
    public static void Recurrent(Head head, FeatureKernel kernel)
    {
        var x = new PairRows(head);
        int D = kernel.D, V = x.V;
        // S̃_{−1}, S̃_0, …, S̃_{T−1}: the states replayed from the initial state.
        var S = new RowBlock[head.T + 1];
        var z = new double[head.T + 1][];
        (S[0], z[0]) = (head.InitialState(), head.InitialState("normalizer")[0].ToArray());
        double[] φq = new double[D], φk = new double[D], dφ = new double[D], n = new double[V], dn = new double[V];
        for (int t = 0; t < head.T; t++)
        {
            double decay = Math.Exp(x.Gate(t));
            kernel.Key(x.K[t], φk);
            (S[t + 1], z[t + 1]) = (RowBlock.Zeros(D, V), new double[D]);
            for (int a = 0; a < D; a++)
            {
                VectorKernels.Axpy(decay, S[t][a], S[t + 1][a]); // S_t = exp(g_t) S_{t−1} + φk(k_t) v_tᵀ
                VectorKernels.Axpy(φk[a], x.Values[t], S[t + 1][a]);
                z[t + 1][a] = decay * z[t][a] + φk[a];
            }
        }
        RowBlock dS = head.StateGradient();
        Span<double> dz = head.StateGradient("normalizer")[0];
        for (int t = head.T - 1; t >= 0; t--)
        {
            RowBlock St = S[t + 1];
            kernel.Query(x.Q[t], φq);
            Array.Clear(n);
            double d = 0;
            for (int a = 0; a < D; a++)
            {
                VectorKernels.Axpy(φq[a], St[a], n);
                d += φq[a] * z[t + 1][a];
            }
            double dd = kernel.OutputGradient(n, d, x.DO(t), dn);
            for (int a = 0; a < D; a++)
            {
                dφ[a] = VectorKernels.Dot(St[a], dn) + z[t + 1][a] * dd;      // S̃_t dñ_t
                VectorKernels.Axpy(φq[a], dn, dS[a]);                          // dS̃ += φq(q_t) dñ_tᵀ
                dz[a] += φq[a] * dd;
            }
            kernel.QueryBackward(x.Q[t], dφ, x.Dq[t]);
            kernel.Key(x.K[t], φk);
            for (int a = 0; a < D; a++)
            {
                dφ[a] = VectorKernels.Dot(dS[a], x.Values[t]) + dz[a];          // dS̃ ṽ_t
                VectorKernels.Axpy(φk[a], dS[a], x.Dv[t]);                     // dv_t = dSᵀ φk(k_t)
            }
            kernel.KeyBackward(x.K[t], dφ, x.Dk[t]);
            if (x.HasGates)
            {
                double decay = Math.Exp(x.Gate(t)), overlap = 0;
                for (int a = 0; a < D; a++)
                {
                    overlap += VectorKernels.Dot(dS[a], S[t][a]) + dz[a] * z[t][a]; // ⟨S̃_{t−1}, dS̃⟩
                    VectorKernels.Scale(decay, dS[a]);
                    dz[a] *= decay;
                }
                Series dg = x.Dg!.Value;
                dg[t] = decay * overlap;
            }
        }
    }

    /// <summary>The quadratic (parallel) form's chain rule: the whole sequence as one chunk from the initial state.</summary>
    public static void Quadratic(Head head, FeatureKernel kernel) => Chunked(head, kernel, Math.Max(head.T, 1));

    /// <summary>
    /// Chunks of C steps: a forward pass (steps R, 1′ and 3, keeping the state entering each chunk only where gates need
    /// it), then each chunk's backward pass (3′, 2′, G), last first.
    /// </summary>
    public static void Chunked(Head head, FeatureKernel kernel, int chunkSize)
    {
        var x = new PairRows(head);
        int C = Math.Min(chunkSize, Math.Max(head.T, 1));
        var chunks = Chunks.Of(head.T, C).ToArray();
        var work = new ChunkWork(C, head.T, kernel.D, x.K.Width, x.V);
        var entries = new (double[] S, double[] Z)[chunks.Length];
        double[] S = head.InitialState().Contiguous().ToArray(), z = head.InitialState("normalizer")[0].ToArray();
        for (int c = 0; c < chunks.Length; c++)
        {
            if (x.HasGates)
            {
                entries[c] = ((double[])S.Clone(), (double[])z.Clone());
            }
            work.Forward(x, kernel, chunks[c].Start, chunks[c].End, S, z);
        }
        Span<double> dS = head.StateGradient().Contiguous(), dz = head.StateGradient("normalizer")[0];
        for (int c = chunks.Length - 1; c >= 0; c--)
        {
            work.Backward(x, kernel, chunks[c].Start, chunks[c].End, entries[c].S, entries[c].Z, dS, dz);
        }
    }

    /// <summary>One pair's rows: q, k, v, the cotangent do (zeros if absent), the gates (zeros if absent) and the gradients.</summary>
    internal sealed class PairRows
    {
        private readonly RowBlock? _dO;
        private readonly Series? _g;
        private readonly double[] _zeros;

        public PairRows(Head head)
        {
            (Q, K, Values, _dO, _g) = (head.Rows("q"), head.Rows("k"), head.Rows("v"), head.OptionalRows("do"), head.OptionalSeries("g"));
            (Dq, Dk, Dv, Dg) = (head.Rows("dq"), head.Rows("dk"), head.Rows("dv"), _g is null ? null : (Series?)head.Series("dg"));
            _zeros = new double[Values.Width];
        }

        public RowBlock Q { get; }

        public RowBlock K { get; }

        public RowBlock Values { get; }

        public RowBlock Dq { get; }

        public RowBlock Dk { get; }

        public RowBlock Dv { get; }

        public Series? Dg { get; }

        public int V => Values.Width;

        public bool HasGates => _g is not null;

        /// <summary>g_t (0 without gates).</summary>
        public double Gate(int t) => _g?[t] ?? 0;

        /// <summary>do_t (zeros without the cotangent).</summary>
        public ReadOnlySpan<double> DO(int t) => _dO is null ? _zeros : _dO[t];
    }

    /// <summary>
    /// The workspace of one chunk's steps (as long as the longest chunk), reused by every chunk of a pair, and what the
    /// forward pass hands the backward pass for every step: dñ_t and Σ_{t'≥t} dΦq_t'·Φq_t' of the chunk.
    /// </summary>
    private sealed class ChunkWork
    {
        private readonly int _keyDim;
        private readonly double[] _Φq, _Φk, _dΦ, _q, _k, _values, _dValues, _transposed, _dn, _dd, _fromQueries;
        private readonly double[] _b, _decay, _row, _dw, _dx, _column, _fromKeys, _straddling;

        public ChunkWork(int C, int T, int d, int keyDim, int V)
        {
            (D, _keyDim) = (d, keyDim);
            (_Φq, _Φk, _dΦ) = (new double[C * D], new double[C * D], new double[C * D]);
            (_q, _k, _values, _dValues) = (new double[C * keyDim], new double[C * keyDim], new double[C * V], new double[C * V]);
            (_transposed, _dn, _dd, _fromQueries) = (new double[V * D], new double[T * V], new double[T], new double[T]);
            (_b, _decay, _row, _dw) = (new double[C], new double[C], new double[C], new double[C]);
            (_dx, _column, _fromKeys, _straddling) = (new double[C], new double[C], new double[C], new double[C]);
        }

        /// <summary>D, the number of features.</summary>
        private int D { get; }

        /// <summary>
        /// The forward pass over the chunk [s, e) from the state S, z entering it: step R (n_t, d_t, then dñ_t, kept), step
        /// 1′ (dq_t's inter-chunk part), then step 3, which leaves S, z as the state leaving the chunk.
        /// </summary>
        public void Forward(PairRows x, FeatureKernel kernel, int s, int e, Span<double> S, Span<double> z)
        {
            int n = e - s, V = x.V;
            Load(x, kernel, s, e);

            // R. n_t, d_t: the entering state read by the chunk's queries, decayed by exp(b_t), plus the chunk's own keys;
            // then the output step's dñ_t.
            Span<double> numerators = _dValues.AsSpan(0, n * V), denominators = _decay.AsSpan(0, n);
            numerators.Clear();
            denominators.Clear();
            DenseMatrix.AddProduct(_Φq.AsSpan(0, n * D), n, S, D, numerators);
            DenseMatrix.AddProduct(_Φq.AsSpan(0, n * D), n, z, D, denominators);
            for (int t = 0; t < n; t++)
            {
                Span<double> numerator = numerators.Slice(t * V, V);
                double entry = Math.Exp(_b[t]);
                VectorKernels.Scale(entry, numerator);
                denominators[t] *= entry;
                Span<double> w = Weights(kernel, t, _row);
                DenseMatrix.AddWeightedRows(w, _values.AsSpan(0, (t + 1) * V), numerator);
                foreach (double wj in w)
                {
                    denominators[t] += wj;
                }
                _dd[s + t] = kernel.OutputGradient(numerator, denominators[t], x.DO(s + t), _dn.AsSpan((s + t) * V, V));
            }

            // 1′. inter-chunk part: dΦq_t = exp(b_t) (S dn_t + z dd_t).
            Span<double> dΦq = _dΦ.AsSpan(0, n * D);
            dΦq.Clear();
            Transpose(S, D, V, _transposed);
            DenseMatrix.AddProduct(_dn.AsSpan(s * V, n * V), n, _transposed, V, dΦq);
            for (int t = 0; t < n; t++)
            {
                Span<double> row = dΦq.Slice(t * D, D);
                VectorKernels.Axpy(_dd[s + t], z, row);
                VectorKernels.Scale(Math.Exp(_b[t]), row);
                _fromQueries[s + t] = VectorKernels.Dot(row, _Φq.AsSpan(t * D, D));
                kernel.QueryBackward(x.Q[s + t], row, x.Dq[s + t]);
            }

            // 3. the state handed on: S ← exp(b_last) S + Φkᵀ Ṽ, z ← exp(b_last) z + Φkᵀ decay.
            double last = _b[n - 1];
            for (int j = 0; j < n; j++)
            {
                _decay[j] = Math.Exp(last - _b[j]);
                VectorKernels.Multiply(x.Values[s + j], _decay[j], _dValues.AsSpan(j * V, V));
            }
            VectorKernels.Scale(Math.Exp(last), S);
            VectorKernels.Scale(Math.Exp(last), z);
            DenseMatrix.AddTransposedProduct(_Φk.AsSpan(0, n * D), n, _dValues.AsSpan(0, n * V), S);
            DenseMatrix.AddTransposedProduct(_Φk.AsSpan(0, n * D), n, _decay.AsSpan(0, n), z);
        }

        /// <summary>
        /// The backward pass of the chunk [s, e) after <see cref="Forward"/> (steps 3′, 2′, G of the class comment): dS, dz
        /// hold the gradient of the state leaving it on entry and of the state entering it on return. S, z are the state
        /// entering it, read by the gates' term alone (null without gates).
        /// </summary>
        public void Backward(PairRows x, FeatureKernel kernel, int s, int e, double[]? S, double[]? z, Span<double> dS, Span<double> dz)
        {
            int n = e - s, V = x.V, K = x.K.Width;
            Load(x, kernel, s, e);
            double last = _b[n - 1];

            // 3′. state part, from dS̃ of the state leaving the chunk: dΦk_j = exp(b_last − b_j) (dS v_j + dz).
            Span<double> dΦk = _dΦ.AsSpan(0, n * D), dValues = _dValues.AsSpan(0, n * V);
            dΦk.Clear();
            dValues.Clear();
            Transpose(dS, D, V, _transposed);
            DenseMatrix.AddProduct(_values.AsSpan(0, n * V), n, _transposed, V, dΦk);
            DenseMatrix.AddProduct(_Φk.AsSpan(0, n * D), n, dS, D, dValues);
            for (int j = 0; j < n; j++)
            {
                double decay = Math.Exp(last - _b[j]);
                Span<double> row = dΦk.Slice(j * D, D);
                VectorKernels.AddTo(dz, row);
                VectorKernels.Scale(decay, row);
                _fromKeys[j] = VectorKernels.Dot(row, _Φk.AsSpan(j * D, D));
                kernel.KeyBackward(x.K[s + j], row, x.Dk[s + j]);
                VectorKernels.Axpy(decay, dValues.Slice(j * V, V), x.Dv[s + j]);
            }
            double fromEntry = S is null || z is null ? 0 : Math.Exp(last) * (VectorKernels.Dot(dS, S) + VectorKernels.Dot(dz, z));

            // 2′. intra-chunk part, rows from the last (for the straddling sums of G).
            Span<double> columns = _column.AsSpan(0, n);
            columns.Clear();
            for (int t = n - 1; t >= 0; t--)
            {
                int m = t + 1;
                Span<double> score = _row.AsSpan(0, m), dw = _dw.AsSpan(0, m), dx = _dx.AsSpan(0, m);
                ReadOnlySpan<double> qt = _q.AsSpan(t * K, K), dnt = _dn.AsSpan((s + t) * V, V);
                DenseMatrix.TimesTransposed(qt, _k.AsSpan(0, m * K), score);
                DenseMatrix.TimesTransposed(dnt, _values.AsSpan(0, m * V), dw);
                double straddling = 0;
                for (int j = 0; j < m; j++)
                {
                    double decay = Math.Exp(_b[t] - _b[j]), w = kernel.Weight(score[j]) * decay;
                    dw[j] += _dd[s + t];                              // dw_tj = dñ_t·ṽ_j
                    dx[j] = dw[j] * kernel.Slope(score[j]) * decay;   // the gradient of the score q_t·k_j
                    VectorKernels.Axpy(w, dnt, x.Dv[s + j]);
                    VectorKernels.Axpy(dx[j], qt, x.Dk[s + j]);
                    if (j < t)
                    {
                        columns[j] += dw[j] * w;
                        straddling += columns[j];
                    }
                }
                DenseMatrix.AddWeightedRows(dx, _k.AsSpan(0, m * K), x.Dq[s + t]);
                _straddling[t] = straddling;                          // Σ_{t'≥t} Σ_{j<t} dw_t'j w_t'j
            }

            // The gradient of the state entering the chunk: dS̃ ← exp(b_last) dS̃ + Σ_t exp(b_t) φq_t dñ_tᵀ.
            VectorKernels.Scale(Math.Exp(last), dS);
            VectorKernels.Scale(Math.Exp(last), dz);
            for (int t = 0; t < n; t++)
            {
                VectorKernels.Scale(Math.Exp(_b[t]), _dn.AsSpan((s + t) * V, V));
                _dd[s + t] *= Math.Exp(_b[t]);
            }
            DenseMatrix.AddTransposedProduct(_Φq.AsSpan(0, n * D), n, _dn.AsSpan(s * V, n * V), dS);
            DenseMatrix.AddTransposedProduct(_Φq.AsSpan(0, n * D), n, _dd.AsSpan(s, n), dz);

            // G. the gates of the chunk.
            if (x.Dg is { } dg)
            {
                double queries = 0, keys = 0;
                for (int r = n - 1; r >= 0; r--)
                {
                    queries += _fromQueries[s + r];
                    _fromQueries[s + r] = queries;                    // Σ_{t≥r}
                }
                for (int r = 0; r < n; r++)
                {
                    dg[s + r] = _fromQueries[s + r] + fromEntry + keys + _straddling[r];
                    keys += _fromKeys[r];                             // Σ_{j<r}
                }
            }
        }

        /// <summary>The chunk's rows: q, k, v packed, Φq, Φk, and b_t = g_s + … + g_t.</summary>
        private void Load(PairRows x, FeatureKernel kernel, int s, int e)
        {
            int K = x.K.Width, V = x.V;
            for (int t = s; t < e; t++)
            {
                int i = t - s;
                x.Q[t].CopyTo(_q.AsSpan(i * K, K));
                x.K[t].CopyTo(_k.AsSpan(i * K, K));
                x.Values[t].CopyTo(_values.AsSpan(i * V, V));
                kernel.Query(x.Q[t], _Φq.AsSpan(i * D, D));
                kernel.Key(x.K[t], _Φk.AsSpan(i * D, D));
                _b[i] = (i > 0 ? _b[i - 1] : 0) + x.Gate(t);
            }
        }

        /// <summary>w_tj = f(q_t·k_j) exp(b_t − b_j) for j ≤ t of the chunk, into <paramref name="w"/>.</summary>
        private Span<double> Weights(FeatureKernel kernel, int t, double[] w)
        {
            int K = _keyDim;
            Span<double> row = w.AsSpan(0, t + 1);
            DenseMatrix.TimesTransposed(_q.AsSpan(t * K, K), _k.AsSpan(0, (t + 1) * K), row);
            for (int j = 0; j <= t; j++)
            {
                row[j] = kernel.Weight(row[j]) * Math.Exp(_b[t] - _b[j]);
            }
            return row;
        }

        /// <summary>The transpose [V x D] of a packed [D x V] matrix.</summary>
        private static void Transpose(ReadOnlySpan<double> matrix, int rows, int columns, Span<double> transposed)
        {
            for (int a = 0; a < rows; a++)
            {
                for (int c = 0; c < columns; c++)
                {
                    transposed[c * rows + a] = matrix[a * columns + c];
                }
            }
        }
    }
}

/// <summary>
/// What <see cref="FeatureAttentionBackward"/> needs of a feature-map attention: the feature maps φq, φk of D entries and
/// their transposed Jacobians, the weight f(q·k) = φq(q)·φk(k) as a function of the score and its slope, the output
/// scale a, eps, and whether the output is normalised.
/// </summary>
internal abstract class FeatureKernel(int d, double outputScale, double eps, bool normalize)
{
    /// <summary>D, the number of features.</summary>
    public int D { get; } = d;

    /// <summary>φ ← φq(q).</summary>
    public abstract void Query(ReadOnlySpan<double> q, Span<double> φ);

    /// <summary>φ ← φk(k).</summary>
    public abstract void Key(ReadOnlySpan<double> k, Span<double> φ);

    /// <summary>dq ← dq + Jφq(q)ᵀ dφ.</summary>
    public abstract void QueryBackward(ReadOnlySpan<double> q, ReadOnlySpan<double> dφ, Span<double> dq);

    /// <summary>dk ← dk + Jφk(k)ᵀ dφ.</summary>
    public abstract void KeyBackward(ReadOnlySpan<double> k, ReadOnlySpan<double> dφ, Span<double> dk);

    /// <summary>f(x) = φq(q)·φk(k) for the score x = q·k.</summary>
    public abstract double Weight(double score);

    /// <summary>f′(x).</summary>
    public abstract double Slope(double score);

    /// <summary>
    /// The output step: dn ← a do / (a d + eps), returning dd = −a (do·o) / (a d + eps) with o = a n / (a d + eps); dn ←
    /// a do and dd = 0 unnormalised.
    /// </summary>
    public double OutputGradient(ReadOnlySpan<double> n, double d, ReadOnlySpan<double> dO, Span<double> dn)
    {
        if (!normalize)
        {
            VectorKernels.Multiply(dO, outputScale, dn);
            return 0;
        }
        double denominator = outputScale * d + eps;
        VectorKernels.Multiply(dO, outputScale / denominator, dn);
        return -outputScale * VectorKernels.Dot(dO, n) * outputScale / (denominator * denominator);
    }
}
