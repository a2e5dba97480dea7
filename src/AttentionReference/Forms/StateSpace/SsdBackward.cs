using AttentionReference.Forms.Common;
using AttentionReference.Numerics;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// ssd's backward passes of the quadratic and chunked variants (the recurrent one, the definition's, is in Ssd.cs after
/// the forward definition). Both are the chain rule of the same sums; writing a_q = Δ_q A for the log decays,
/// segsum(t, s) = Σ_{q=s+1..t} a_q, M_ts = (C_t·B_s) exp(segsum(t, s)) Δ_s for s ≤ t, and dy for the cotangent of y
/// (after the gate's and the skip's backward):
/// <code>
///   y_t = Σ_{s≤t} M_ts x_s + exp(segsum(t, −1)) h_{−1} C_t
///   dM_ts = dy_t·x_s                 dx_s += Σ_t M_ts dy_t
///   dC_t += Σ_s dM_ts exp(segsum) Δ_s B_s,   dB_s += Σ_t dM_ts exp(segsum) Δ_s C_t,   dΔ_s += Σ_t dM_ts exp(segsum) (C_t·B_s)
///   a segment sum's cotangent dM_ts M_ts reaches every a_q it sums:  da_q += Σ_{t≥q} Σ_{s&lt;q} dM_ts M_ts
///   (the state terms are the column s = −1, and the final state the row t = T−1 read against B and dfinal_state)
///   then dΔ_q += A da_q,  dA = Σ_q Δ_q da_q,  ddt = f'(dt + dt_bias) dΔ,  ddt_bias = Σ ddt
/// </code>
/// </summary>
public sealed partial class Ssd
{
    /// <summary>
    /// The backward pass of the segment-sum form: the chain rule of the matrix form above, row t by row t as the forward
    /// computes it (the segment sums of row t grown from row t − 1's), then the final state's row.
    /// </summary>
    public static void QuadraticBackward(Head head, SsdOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        var s = new Packed(head, options);
        var g = new PackedGradients(s);
        var skip = Skip.Of(head);
        RowBlock? z = head.OptionalRows("z"), dO = head.OptionalRows("do"), dz = z is null ? null : head.Rows("dz");
        Span<double> dh = head.StateGradient().Contiguous(); // dfinal_state in, dinitial_state out
        double[] h0 = head.InitialState().Contiguous().ToArray(), dFinal = dh.ToArray(), dh0 = new double[dh.Length];
        double[] segsum = new double[s.T + 1], decay = new double[s.T + 1]; // segsum[r + 1] = segsum(t, r), r = −1..t
        double[] gram = new double[s.T], weight = new double[s.T], dM = new double[s.T], dW = new double[s.T], R = new double[s.T + 1];
        double[] y = new double[s.P], dy = new double[s.P], hC = new double[s.P], hDy = new double[s.N];
        for (int t = 0; t < s.T; t++)
        {
            for (int r = -1; r < t; r++)
            {
                segsum[r + 1] += s.Log[t];
            }
            segsum[t + 1] = 0;
            Span<double> e = decay.AsSpan(0, t + 2), G = gram.AsSpan(0, t + 1), w = weight.AsSpan(0, t + 1);
            VectorKernels.Exp(segsum.AsSpan(0, t + 2), e);
            DenseMatrix.TimesTransposed(s.C(t), s.BRows(0, t + 1), G);   // C_t·B_r
            VectorKernels.Multiply(G, e[1..], w);
            VectorKernels.Multiply(w, s.Dt.AsSpan(0, t + 1), w);          // M_tr
            // the output again where the gate needs it, then the gate's and the skip's backward
            Array.Clear(y);
            if (z is not null)
            {
                DenseMatrix.AddWeightedRows(w, s.XRows(0, t + 1), y);
                AddStateOutput(y, h0, s.C(t), e[0], hC);
            }
            skip.Backward(y, s.X(t), z is null ? default : z[t], dO is null ? default : dO[t], dy, g.X(t), dz is null ? default : dz[t]);
            // the state column s = −1: y_t ∋ e^{segsum(t,−1)} h_{−1} C_t
            Array.Clear(hDy);
            DenseMatrix.AddWeightedRows(dy, h0, hDy);                      // h_{−1}ᵀ dy_t
            VectorKernels.Axpy(e[0], hDy, g.C(t));
            R[0] = e[0] * VectorKernels.Dot(s.C(t), hDy);
            for (int p = 0; p < s.P; p++)
            {
                VectorKernels.Axpy(e[0] * dy[p], s.C(t), dh0.AsSpan(p * s.N, s.N));
            }
            // the columns s = 0..t
            Span<double> dMt = dM.AsSpan(0, t + 1), dWt = dW.AsSpan(0, t + 1);
            DenseMatrix.TimesTransposed(dy, s.XRows(0, t + 1), dMt);       // dM_tr = dy_t·x_r
            VectorKernels.Multiply(dMt, e[1..], dWt);                        // dM_tr e^{segsum}
            for (int r = 0; r <= t; r++)
            {
                VectorKernels.Axpy(w[r], dy, g.X(r));                        // dx_r += M_tr dy_t
                VectorKernels.Axpy(dWt[r] * s.Dt[r], s.C(t), g.B(r));        // dB_r += dM e Δ_r C_t
                g.Dt[r] += dWt[r] * G[r];                                    // dΔ_r += dM e (C_t·B_r)
                R[r + 1] = dMt[r] * w[r];
            }
            VectorKernels.Multiply(dWt, s.Dt.AsSpan(0, t + 1), dWt);
            DenseMatrix.AddWeightedRows(dWt, s.BRows(0, t + 1), g.C(t));    // dC_t += Σ_r dM e Δ_r B_r
            AddSegmentSums(R.AsSpan(0, t + 2), g.Log.AsSpan(0, t + 1));
        }
        // the final state: h_{T−1} = e^{segsum(T−1,−1)} h_{−1} + Σ_r e^{segsum(T−1,r)} Δ_r x_r B_rᵀ, against dfinal_state
        VectorKernels.Exp(segsum, decay);
        VectorKernels.Axpy(decay[0], dFinal, dh0);
        R[0] = decay[0] * VectorKernels.Dot(dFinal, h0);
        for (int r = 0; r < s.T; r++)
        {
            R[r + 1] = FinalStateTerm(s, g, dFinal, r, decay[r + 1], hC);
        }
        AddSegmentSums(R, g.Log);
        dh0.CopyTo(dh);
        g.Write(head, options);
    }

    /// <summary>
    /// ssd_minimal.py's chunked algorithm in reverse, as engines compute its backward (the chunked forward's legend
    /// applies): first the states entering each chunk again (the forward's steps 2 and 3, one P x N state per chunk
    /// kept), then chunk by chunk from the last, with dh the gradient of the state leaving the chunk (dfinal_state at
    /// first), the forward's steps in reverse:
    /// <code>
    ///   0. the chunk's outputs y again where the gate needs them (steps 1 and 4), the gate's and the skip's backward: dy
    ///   3. h_c = exp(Σ_chunk a) h_{c−1} + S_c:  every a_q of the chunk gets exp(Σ a) ⟨dh, h_{c−1}⟩
    ///   2. S_c = Σ_r exp(toEnd_r) Δ_r x_r B_rᵀ, its cotangent dh:  with v_r = dh B_r,  dx_r += exp(toEnd_r) Δ_r v_r,
    ///      dB_r += exp(toEnd_r) Δ_r dhᵀ x_r,  dΔ_r += exp(toEnd_r) x_r·v_r,  and the a_q after r get exp(toEnd_r) Δ_r x_r·v_r
    ///      then dh ← exp(Σ_chunk a) dh, the gradient of h_{c−1} so far
    ///   4. Y_off_l = exp(cum_l) h_{c−1} C_l:  dh += exp(cum_l) dy_l C_lᵀ,  dC_l += exp(cum_l) h_{c−1}ᵀ dy_l,
    ///      and the a_q up to l get exp(cum_l) dy_l·(h_{c−1} C_l)
    ///   1. Y_diag: the matrix form's chain rule within the chunk (the class comment's, without the state terms)
    ///   dinitial_state = dh after the first chunk
    /// </code>
    /// </summary>
    public static void ChunkedBackward(Head head, SsdOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        var s = new Packed(head, options);
        var g = new PackedGradients(s);
        var skip = Skip.Of(head);
        RowBlock? z = head.OptionalRows("z"), dO = head.OptionalRows("do"), dz = z is null ? null : head.Rows("dz");
        Span<double> dh = head.StateGradient().Contiguous(); // dh: dfinal_state in, dinitial_state out
        (int Start, int End)[] chunks = Chunks.Of(s.T, options.ChunkSize).ToArray();
        int Q = Math.Min(options.ChunkSize, Math.Max(s.T, 1)), PN = s.P * s.N;
        var w = new ChunkWorkspace(Q, s.P, s.N);
        // the states entering each chunk, h_{c−1} (the forward's steps 2 and 3)
        double[] entering = new double[Math.Max(chunks.Length, 1) * PN];
        head.InitialState().Contiguous().CopyTo(entering);
        for (int c = 0; c + 1 < chunks.Length; c++)
        {
            var (start, end) = chunks[c];
            Span<double> next = entering.AsSpan((c + 1) * PN, PN);
            entering.AsSpan(c * PN, PN).CopyTo(next);
            VectorKernels.Scale(Math.Exp(w.Decays(s, start, end)), next);
            w.AddChunkState(s, start, end, next);
        }
        for (int c = chunks.Length - 1; c >= 0; c--)
        {
            var (start, end) = chunks[c];
            int length = end - start;
            ReadOnlySpan<double> h = entering.AsSpan(c * PN, PN);
            double total = w.Decays(s, start, end);
            w.Matrices(s, start, end);
            // 0. y again where the gate needs it, and the gate's and the skip's backward
            for (int l = 0; l < length; l++)
            {
                Span<double> y = w.Y;
                y.Clear();
                if (z is not null)
                {
                    DenseMatrix.AddWeightedRows(w.M(l), s.XRows(start, l + 1), y);
                    AddStateOutput(y, h, s.C(start + l), Math.Exp(w.Cum[l]), w.HC);
                }
                skip.Backward(y, s.X(start + l), z is null ? default : z[start + l], dO is null ? default : dO[start + l],
                    w.Dy(l), g.X(start + l), dz is null ? default : dz[start + l]);
            }
            // 3. the inter-chunk recurrence
            double entered = Math.Exp(total) * VectorKernels.Dot(dh, h);
            for (int q = start; q < end; q++)
            {
                g.Log[q] += entered;
            }
            // 2. the chunk's own state, its cotangent dh; then dh ← exp(Σ a) dh
            w.ChunkStateBackward(s, g, start, end, dh);
            VectorKernels.Scale(Math.Exp(total), dh);
            // 4. the state entering the chunk to its outputs
            w.StateOutputBackward(s, g, start, end, h, dh);
            // 1. the intra-chunk outputs
            w.IntraChunkBackward(s, g, start, end);
        }
        g.Write(head, options);
    }

    /// <summary>
    /// The chunked backward's workspace, reused by every chunk of a pair: the chunk's decays (cum, toEnd), its Q x Q
    /// matrices (exp(segsum), C·Bᵀ, M and their cotangents), its rows of dy, and the steps' scratch.
    /// </summary>
    private sealed class ChunkWorkspace(int Q, int P, int N)
    {
        private readonly double[] _toEnd = new double[Q], _decay = new double[Q * Q], _gram = new double[Q * Q], _m = new double[Q * Q];
        private readonly double[] _dM = new double[Q * Q], _mT = new double[Q * Q], _dWT = new double[Q * Q], _R = new double[Q + 1];
        private readonly double[] _dy = new double[Q * P], _xT = new double[P * Q], _hDy = new double[Q * N], _v = new double[Q * P];
        private int _length;

        /// <summary>cum_l = Σ_{q=start..l} a_q within the chunk.</summary>
        public double[] Cum { get; } = new double[Q];

        /// <summary>Scratch for one output row (P values), and for h C (P values).</summary>
        public double[] Y { get; } = new double[P];

        /// <inheritdoc cref="Y"/>
        public double[] HC { get; } = new double[P];

        /// <summary>Row l of M_lr = (C_l·B_r) exp(segsum(l, r)) Δ_r, r ≤ l (after <see cref="Matrices"/>).</summary>
        public Span<double> M(int l) => _m.AsSpan(l * Q, l + 1);

        /// <summary>dy_l, the cotangent of the chunk's output row l before the skip and the gate.</summary>
        public Span<double> Dy(int l) => _dy.AsSpan(l * P, P);

        /// <summary>cum and toEnd_r = Σ_{q=r+1..end−1} a_q of the chunk [start, end); returns Σ_chunk a.</summary>
        public double Decays(Packed s, int start, int end)
        {
            _length = end - start;
            double toEnd = 0;
            for (int l = 0; l < _length; l++)
            {
                Cum[l] = (l == 0 ? 0 : Cum[l - 1]) + s.Log[start + l];
            }
            for (int r = _length - 1; r >= 0; r--)
            {
                _toEnd[r] = toEnd;
                toEnd += s.Log[start + r];
            }
            return toEnd;
        }

        /// <summary>The forward's step 2 into <paramref name="h"/>: h += Σ_r exp(toEnd_r) Δ_r x_r B_rᵀ (after <see cref="Decays"/>).</summary>
        public void AddChunkState(Packed s, int start, int end, Span<double> h)
        {
            for (int r = 0; r < _length; r++)
            {
                double c = Math.Exp(_toEnd[r]) * s.Dt[start + r];
                for (int p = 0; p < P; p++)
                {
                    _xT[(p * _length) + r] = c * s.X(start + r)[p];
                }
            }
            DenseMatrix.AddProduct(_xT.AsSpan(0, P * _length), P, s.BRows(start, end - start), _length, h);
        }

        /// <summary>exp(segsum(l, r)) (summed directly, as the forward's step 1), C_l·B_r and M_lr for r ≤ l.</summary>
        public void Matrices(Packed s, int start, int end)
        {
            for (int l = 0; l < _length; l++)
            {
                double sum = 0;
                Span<double> e = _decay.AsSpan(l * Q, l + 1), G = _gram.AsSpan(l * Q, l + 1), m = M(l);
                for (int r = l; r >= 0; r--)
                {
                    e[r] = sum;
                    sum += s.Log[start + r];
                }
                VectorKernels.Exp(e, e);
                DenseMatrix.TimesTransposed(s.C(start + l), s.BRows(start, l + 1), G);
                VectorKernels.Multiply(G, e, m);
                VectorKernels.Multiply(m, s.Dt.AsSpan(start, l + 1), m);
            }
        }

        /// <summary>Step 2 in reverse: the chunk state S_c = Σ_r exp(toEnd_r) Δ_r x_r B_rᵀ against its cotangent dh.</summary>
        public void ChunkStateBackward(Packed s, PackedGradients g, int start, int end, ReadOnlySpan<double> dh)
        {
            _R[0] = 0;
            for (int r = 0; r < _length; r++)
            {
                double decay = Math.Exp(_toEnd[r]), c = decay * s.Dt[start + r];
                Span<double> v = _v.AsSpan(r * P, P), cx = _xT.AsSpan(r * P, P);
                DenseMatrix.TimesTransposed(s.B(start + r), dh, v);                 // v_r = dh B_r
                double xv = VectorKernels.Dot(s.X(start + r), v);
                VectorKernels.Axpy(c, v, g.X(start + r));                           // dx_r += c v_r
                VectorKernels.Multiply(s.X(start + r), c, cx);                     // (c x_r) for dB_r += dhᵀ (c x_r)
                g.Dt[start + r] += decay * xv;
                _R[r + 1] = c * xv;                                                  // reaches the a_q after r
            }
            DenseMatrix.AddProduct(_xT.AsSpan(0, _length * P), _length, dh, P, g.BRows(start, end - start));
            AddSegmentSums(_R.AsSpan(0, _length), g.Log.AsSpan(start, _length));
        }

        /// <summary>Step 4 in reverse: Y_off_l = exp(cum_l) h C_l, its cotangent dy_l; dh (of h_{c−1}) gains exp(cum_l) dy_l C_lᵀ.</summary>
        public void StateOutputBackward(Packed s, PackedGradients g, int start, int end, ReadOnlySpan<double> h, Span<double> dh)
        {
            Span<double> hDy = _hDy.AsSpan(0, _length * N);
            hDy.Clear();
            DenseMatrix.AddProduct(_dy.AsSpan(0, _length * P), _length, h, P, hDy); // hᵀ dy_l per row l
            for (int l = 0; l < _length; l++)
            {
                double e = Math.Exp(Cum[l]);
                for (int p = 0; p < P; p++)
                {
                    _xT[(p * _length) + l] = e * _dy[(l * P) + p];
                }
                Span<double> row = hDy.Slice(l * N, N);
                VectorKernels.Axpy(e, row, g.C(start + l));                         // dC_l += e hᵀ dy_l
                _R[l] = e * VectorKernels.Dot(s.C(start + l), row);                 // reaches the a_q up to l
            }
            DenseMatrix.AddProduct(_xT.AsSpan(0, P * _length), P, s.CRows(start, end - start), _length, dh);
            double suffix = 0;
            for (int q = _length - 1; q >= 0; q--)
            {
                suffix += _R[q];
                g.Log[start + q] += suffix;
            }
        }

        /// <summary>Step 1 in reverse: the matrix form's chain rule within the chunk.</summary>
        public void IntraChunkBackward(Packed s, PackedGradients g, int start, int end)
        {
            for (int l = 0; l < _length; l++)
            {
                Span<double> dM = _dM.AsSpan(l * Q, l + 1), e = _decay.AsSpan(l * Q, l + 1), G = _gram.AsSpan(l * Q, l + 1), m = M(l);
                DenseMatrix.TimesTransposed(Dy(l), s.XRows(start, l + 1), dM);       // dM_lr = dy_l·x_r
                _R[0] = 0;
                for (int r = 0; r <= l; r++)
                {
                    _R[r + 1] = dM[r] * m[r];                                        // reaches the a_q with r < q ≤ l
                    dM[r] *= e[r];                                                   // dW_lr = dM_lr exp(segsum)
                    g.Dt[start + r] += dM[r] * G[r];                                 // dΔ_r += dW_lr (C_l·B_r)
                    dM[r] *= s.Dt[start + r];                                        // dW_lr Δ_r
                    _mT[(r * Q) + l] = m[r];
                    _dWT[(r * Q) + l] = dM[r];
                }
                AddSegmentSums(_R.AsSpan(0, l + 1), g.Log.AsSpan(start, l + 1));
                DenseMatrix.AddWeightedRows(dM, s.BRows(start, l + 1), g.C(start + l)); // dC_l += Σ_r dW_lr Δ_r B_r
            }
            for (int r = 0; r < _length; r++)
            {
                int after = _length - r;
                DenseMatrix.AddWeightedRows(_mT.AsSpan((r * Q) + r, after), _dy.AsSpan(r * P, after * P), g.X(start + r)); // dx_r += Σ_l M_lr dy_l
                DenseMatrix.AddWeightedRows(_dWT.AsSpan((r * Q) + r, after), s.CRows(start + r, after), g.B(start + r));  // dB_r += Σ_l dW_lr Δ_r C_l
            }
        }
    }

    /// <summary>
    /// The final state's (or a chunk state's) term of step r against its cotangent dF: with v = dF B_r and
    /// c = decay·Δ_r, dx_r += c v, dB_r += c dFᵀ x_r, dΔ_r += decay x_r·v; returns the term's log-decay cotangent c x_r·v.
    /// <paramref name="v"/> (P values) is scratch.
    /// </summary>
    private static double FinalStateTerm(Packed s, PackedGradients g, ReadOnlySpan<double> dF, int r, double decay, Span<double> v)
    {
        DenseMatrix.TimesTransposed(s.B(r), dF, v);
        double c = decay * s.Dt[r], xv = VectorKernels.Dot(s.X(r), v);
        VectorKernels.Axpy(c, v, g.X(r));
        for (int p = 0; p < s.P; p++)
        {
            VectorKernels.Axpy(c * s.X(r)[p], dF.Slice(p * s.N, s.N), g.B(r));
        }
        g.Dt[r] += decay * xv;
        return c * xv;
    }

    /// <summary>
    /// da_q += Σ_{s&lt;q} R_s for q = 0 … da.Length − 1, where R[s + 1] is the cotangent of a segment sum that starts after
    /// step s (s = −1 … ) and ends at the last q: it sums exactly the a_q with s &lt; q.
    /// </summary>
    private static void AddSegmentSums(ReadOnlySpan<double> R, Span<double> da)
    {
        double sum = 0;
        for (int q = 0; q < da.Length; q++)
        {
            sum += R[q];
            da[q] += sum;
        }
    }

    /// <summary>
    /// The skip D (per head, per channel, or absent) and its gradient, for the backward of o = (y + D x) ⊙ silu(z):
    /// dy = do ⊙ silu(z), dz = do ⊙ (y + D x) ⊙ silu'(z), dx += D dy, dD += dy ⊙ x (summed over p for D per head);
    /// without z, dy = do.
    /// </summary>
    private readonly ref struct Skip
    {
        private readonly ReadOnlySpan<double> _D;
        private readonly Span<double> _dD;

        private Skip(ReadOnlySpan<double> D, Span<double> dD)
        {
            _D = D;
            _dD = dD;
        }

        public static Skip Of(Head head) => head.Problem.Has("D") ? new(head.Row("D"), head.Row("dD")) : default;

        public void Backward(ReadOnlySpan<double> y, ReadOnlySpan<double> x, ReadOnlySpan<double> z, ReadOnlySpan<double> dO,
            Span<double> dy, Span<double> dx, Span<double> dz)
        {
            for (int p = 0; p < dy.Length; p++)
            {
                int at = _D.Length == 1 ? 0 : p;
                double skip = _D.IsEmpty ? 0 : _D[at];
                (dy[p], double dGate) = dO.IsEmpty ? (0, 0)
                    : StateSpaceMath.GatedBackward(y[p] + (skip * x[p]), z.IsEmpty ? null : z[p], dO[p]);
                if (!dz.IsEmpty)
                {
                    dz[p] = dGate;
                }
                dx[p] += skip * dy[p];
                if (!_dD.IsEmpty)
                {
                    _dD[at] += dy[p] * x[p];
                }
            }
        }
    }

    /// <summary>
    /// A pair's gradients gathered as the packed inputs are (dx [T,P], dB and dC [T,N]) for the matrix kernels, with
    /// dΔ and the log decays' da [T]; <see cref="Write"/> carries da to dΔ and dA and stores them in the pair's rows.
    /// </summary>
    private sealed class PackedGradients(Packed s)
    {
        private readonly double[] _x = new double[s.T * s.P], _b = new double[s.T * s.N], _c = new double[s.T * s.N];

        public double[] Dt { get; } = new double[s.T];
        public double[] Log { get; } = new double[s.T];

        public Span<double> X(int t) => _x.AsSpan(t * s.P, s.P);
        public Span<double> XRows(int from, int count) => _x.AsSpan(from * s.P, count * s.P);
        public Span<double> B(int t) => _b.AsSpan(t * s.N, s.N);
        public Span<double> BRows(int from, int count) => _b.AsSpan(from * s.N, count * s.N);
        public Span<double> C(int t) => _c.AsSpan(t * s.N, s.N);
        public Span<double> CRows(int from, int count) => _c.AsSpan(from * s.N, count * s.N);

        /// <summary>a_q = Δ_q A: dΔ_q += A da_q, dA = Σ_q Δ_q da_q; then ddt = f'(dt + dt_bias) dΔ, ddt_bias = Σ ddt.</summary>
        public void Write(Head target, SsdOptions options)
        {
            Series dt = target.Series("dt"), ddt = target.Series("ddt");
            RowBlock dx = target.Rows("dx"), dB = target.Rows("dB"), dC = target.Rows("dC");
            double A = target.Scalar("A"), bias = target.ScalarOrZero("dt_bias"), dA = 0, dBias = 0;
            for (int t = 0; t < s.T; t++)
            {
                dA += s.Dt[t] * Log[t];
                ddt[t] = options.StepSizeDerivative(dt[t] + bias) * (Dt[t] + (A * Log[t]));
                dBias += ddt[t];
                VectorKernels.AddTo(X(t), dx[t]);
                VectorKernels.AddTo(B(t), dB[t]);
                VectorKernels.AddTo(C(t), dC[t]);
            }
            target.Row("dA")[0] += dA;
            if (target.Problem.Has("dt_bias"))
            {
                target.Row("ddt_bias")[0] += dBias;
            }
        }
    }
}
