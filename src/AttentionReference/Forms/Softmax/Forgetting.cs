using System.Globalization;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// Forgetting attention (the Forgetting Transformer, FoX), exact, in double: causal softmax attention whose score of
/// key j for query i is biased by the log forget gates between them.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,Hq,K]   k [B,T,Hkv,K]   v [B,T,Hkv,V]   g [B,T,Hq]   →   o [B,T,Hq,V]   lse [B,T,Hq]
///   Hq is a multiple of Hkv (GQA/MQA): query head h reads key/value head h / (Hq/Hkv); g is per query head.
///   cu_seqlens [N+1] (int32/int64, optional, B = 1): packed sequences, as flash-attn and fla.
///
/// For each batch b, query head h and query position i (causal: keys j ≤ i, from the start of i's sequence):
///   D_ij  = Σ_{r=j+1..i} g_r                          (D_ii = 0; g_r = log f_r ≤ 0, the log forget gate)
///   s_ij  = scale · q_i · k_j + D_ij                  scale = K^(-1/2) unless given
///   m_i   = max_{j≤i} s_ij
///   o_i   = Σ_{j≤i} exp(s_ij − m_i) v_j / Σ_{j≤i} exp(s_ij − m_i)
///   lse_i = m_i + ln Σ_{j≤i} exp(s_ij − m_i)          the lse of the biased scores
/// </code>
/// Sources: Lin, Nikishin, He and Courville 2025, "Forgetting Transformer: Softmax Attention with a Forget Gate"
/// (arXiv 2503.02130, ICLR 2025), eq. for D_ij = Σ_{l=j+1}^{i} log f_l with f_t = σ(w_fᵀ x_t + b_f); fla's
/// reference (fla-org/flash-linear-attention, fla/ops/forgetting_attn/naive.py and parallel.py: g [B,T,HQ] per query
/// head, k and v with H heads, GQA when HQ is a multiple of H, scale = K^-0.5, causal always).
///
/// Choices. The gate is given in log space: g = log f = log σ(·) = −softplus(−·) is computed outside (as fla's
/// parallel_forgetting_attn takes it); g ≤ 0 is what FoX produces, other values are used as given. FoX is causal and
/// self-attention: q, k, v share T and there is no non-causal option. Varlen as fla's cu_seqlens (B = 1, sequence n
/// is steps [cu[n], cu[n+1])): each sequence is its own causal problem, its keys and its gates start afresh (a
/// query never sees, nor sums the gates of, another sequence). fla's optional window_size is not offered here.
/// With g = 0 this is causal softmax attention.
///
/// Numerics. fla's naive reference computes D_ij = c_i − c_j from the cumulative sum c = cumsum(g); for strong gates
/// (g = −20 per step over long T) c reaches −20·T and the difference of two large numbers loses the digits of a small
/// D_ij. We never subtract: every D_ij is a sum of the g's between j and i, added up directly.
///   naive   for each row i, D is built from the diagonal leftwards, D_i,j−1 = D_ij + g_j, the scores materialised,
///           then max, exp, sum.
///   tiled   FlashAttention-2's online softmax over tiles of block_q queries × block_k keys. For a query block
///           starting at q0, the bias splits at q0 into two sums of same-sign terms, never a difference:
///             A_i = Σ_{r=q0+1..i} g_r   (i ≥ q0, within the query block)
///             E_j = Σ_{r=j+1..q0} g_r   (j ≤ q0, carried leftwards as a running sum)
///             D_ij = A_i + E_j  for j ≤ q0;   D_ij = Σ_{r=j+1..i} g_r directly for q0 &lt; j ≤ i (inside the block)
///           The key blocks are visited from the diagonal leftwards so that E_j grows as one running sum; each tile
///           updates the running max m, the running sum l and the unnormalised output, rescaled by exp(m_old − m_new).
/// </summary>
public static class Forgetting
{
    /// <summary>The reference: the row's bias and scores materialised, then a stable softmax.</summary>
    public static ForgettingResult Naive(Tensor q, Tensor k, Tensor v, Tensor g, ForgettingOptions? options = null)
    {
        var p = ForgettingProblem.Bind(q, k, v, g, options ?? new ForgettingOptions());
        var o = Tensor.Zeros(p.Batch, p.T, p.Hq, p.Dv);
        var lse = Tensor.Zeros(p.Batch, p.T, p.Hq);

        // One task per (b, i, h) row, computed start to end by one thread: the result does not depend on the thread count.
        Parallel.For(0, p.Batch * p.T * p.Hq, () => new double[p.T], (row, _, scores) =>
        {
            int h = row % p.Hq, i = row / p.Hq % p.T, b = row / p.Hq / p.T;
            int start = p.SequenceStart[i]; // keys j = start … i
            Span<double> s = scores.AsSpan(0, i + 1 - start);
            double bias = 0; // D_ii = 0
            for (int j = i; j >= start; j--)
            {
                s[j - start] = p.Scale * VectorKernels.Dot(p.QueryRow(b, h, i), p.KeyRow(b, h, j)) + bias;
                bias += p.Gate(b, h, j); // D_i,j−1 = D_ij + g_j
            }
            double m = VectorKernels.Max(s);
            double l = VectorKernels.ExpShiftedInPlace(s, m); // s now holds exp(s − m)
            Span<double> oRow = o.Data.AsSpan(((b * p.T + i) * p.Hq + h) * p.Dv, p.Dv);
            for (int j = start; j <= i; j++)
            {
                VectorKernels.Axpy(s[j - start], p.ValueRow(b, h, j), oRow);
            }
            VectorKernels.Scale(1 / l, oRow);
            lse.Data[row] = m + Math.Log(l);
            return scores;
        }, _ => { });

        return new ForgettingResult(o, lse);
    }

    /// <summary>FlashAttention-2's online softmax over tiles, the bias of each tile from sums relative to the query block's start.</summary>
    public static ForgettingResult Tiled(Tensor q, Tensor k, Tensor v, Tensor g, ForgettingOptions? options = null)
    {
        options ??= new ForgettingOptions();
        var p = ForgettingProblem.Bind(q, k, v, g, options);
        if (options.BlockQ < 1 || options.BlockK < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"block sizes must be ≥ 1, found block_q = {options.BlockQ}, block_k = {options.BlockK}"));
        }
        int bq = options.BlockQ, bk = options.BlockK;
        var o = Tensor.Zeros(p.Batch, p.T, p.Hq, p.Dv);
        var lse = Tensor.Zeros(p.Batch, p.T, p.Hq);

        // One task per (sequence, h, query block); each computes its rows start to end. Tiles are laid out from the
        // start of each sequence, and every time index below is relative to it (position t0 + t in the tensors).
        var tasks = (from sequence in p.Sequences
                     from h in Enumerable.Range(0, p.Hq)
                     from q0 in Enumerable.Range(0, (sequence.Length + bq - 1) / bq).Select(n => n * bq)
                     select (sequence, h, q0)).ToArray();
        Parallel.ForEach(tasks, task =>
        {
            var (sequence, h, q0) = task;
            int b = sequence.Batch, t0 = sequence.Start, length = sequence.Length;
            int rows = Math.Min(bq, length - q0);

            // 1. A_i = Σ_{r=q0+1..i} g_r for the block's queries.
            var a = new double[rows];
            for (int r = 1; r < rows; r++)
            {
                a[r] = a[r - 1] + p.Gate(b, h, t0 + q0 + r);
            }

            // 2. Running state per query row: max m, sum l, unnormalised output acc.
            var m = new double[rows];
            Array.Fill(m, double.NegativeInfinity);
            var l = new double[rows];
            var acc = new double[rows * p.Dv];
            var tile = new double[rows * bk];

            // 3. Key blocks from the one holding the block's last query leftwards; e = E_j carried across them.
            int last = q0 + rows - 1;
            double e = 0; // E_{q0} = 0; E_j for j < q0 is reached by adding g_{j+1} going left
            int eAt = q0;
            for (int k0 = last / bk * bk; k0 >= 0; k0 -= bk)
            {
                int k1 = Math.Min(k0 + bk, length);
                // 3a. The tile's scores with their bias; entries j > i stay −∞ (causal).
                tile.AsSpan().Fill(double.NegativeInfinity);
                for (int j = Math.Min(k1, q0 + 1) - 1; j >= k0; j--)
                {
                    while (eAt > j)
                    {
                        e += p.Gate(b, h, t0 + eAt); // E_{eAt−1} = E_{eAt} + g_{eAt}
                        eAt--;
                    }
                    for (int r = 0; r < rows; r++)
                    {
                        tile[r * bk + j - k0] = p.Scale * VectorKernels.Dot(p.QueryRow(b, h, t0 + q0 + r), p.KeyRow(b, h, t0 + j)) + a[r] + e;
                    }
                }
                for (int r = 0; r < rows; r++)
                {
                    int i = q0 + r;
                    double inside = 0; // Σ_{t=j+1..i} g_t for q0 < j ≤ i, summed from the diagonal leftwards
                    for (int j = i; j > q0 && j >= k0; j--)
                    {
                        if (j < k1)
                        {
                            tile[r * bk + j - k0] = p.Scale * VectorKernels.Dot(p.QueryRow(b, h, t0 + i), p.KeyRow(b, h, t0 + j)) + inside;
                        }
                        inside += p.Gate(b, h, t0 + j);
                    }
                }

                // 3b. Online softmax update of each row with this tile.
                for (int r = 0; r < rows; r++)
                {
                    Span<double> s = tile.AsSpan(r * bk, k1 - k0);
                    double tileMax = VectorKernels.Max(s);
                    if (double.IsNegativeInfinity(tileMax))
                    {
                        continue; // nothing allowed in this tile for row r
                    }
                    double mNew = Math.Max(m[r], tileMax);
                    Span<double> accRow = acc.AsSpan(r * p.Dv, p.Dv);
                    double rescale = Math.Exp(m[r] - mNew); // exp(−∞) = 0 on the first tile
                    VectorKernels.Scale(rescale, accRow);
                    l[r] = l[r] * rescale + VectorKernels.ExpShiftedInPlace(s, mNew);
                    for (int j = k0; j < k1; j++)
                    {
                        VectorKernels.Axpy(s[j - k0], p.ValueRow(b, h, t0 + j), accRow);
                    }
                    m[r] = mNew;
                }
            }

            // 4. Normalise and write: o_i = acc_i / l_i, lse_i = m_i + ln l_i.
            for (int r = 0; r < rows; r++)
            {
                Span<double> oRow = o.Data.AsSpan(((b * p.T + t0 + q0 + r) * p.Hq + h) * p.Dv, p.Dv);
                acc.AsSpan(r * p.Dv, p.Dv).CopyTo(oRow);
                VectorKernels.Scale(1 / l[r], oRow);
                lse[b, t0 + q0 + r, h] = m[r] + Math.Log(l[r]);
            }
        });

        return new ForgettingResult(o, lse);
    }

    /// <summary>The validated q, k, v, g of one call and the row accessors both variants share.</summary>
    private sealed class ForgettingProblem
    {
        private readonly Tensor _q, _k, _v, _g;
        private readonly int _hkv, _groupSize;

        private ForgettingProblem(Tensor q, Tensor k, Tensor v, Tensor g, Dims dims, ForgettingOptions options)
        {
            (_q, _k, _v, _g) = (q, k, v, g);
            (Batch, T, Hq, _hkv, Dk, Dv) = (dims["B"], dims["T"], dims["Hq"], dims["Hkv"], dims["K"], dims["V"]);
            _groupSize = _hkv == 0 ? 1 : Hq / _hkv;
            Scale = options.Scale ?? 1 / Math.Sqrt(Dk);
            Sequences = Common.Sequences.Slices(Batch, T, options.CuSeqlens);
            SequenceStart = new int[T];
            foreach (var sequence in Sequences)
            {
                Array.Fill(SequenceStart, sequence.Start, sequence.Start, sequence.Length);
            }
        }

        /// <summary>The independent sequences: each batch entry, or with cu_seqlens each packed sequence.</summary>
        public IReadOnlyList<Common.SequenceSlice> Sequences { get; }

        /// <summary>For each time step, the first step of its sequence (0 without cu_seqlens).</summary>
        public int[] SequenceStart { get; }

        public int Batch { get; }
        public int T { get; }
        public int Hq { get; }
        public int Dk { get; }
        public int Dv { get; }
        public double Scale { get; }

        public static ForgettingProblem Bind(Tensor q, Tensor k, Tensor v, Tensor g, ForgettingOptions options)
        {
            var dims = new Dims();
            dims.Bind("q", Dims.RequireFloat("q", q), "B,T,Hq,K");
            dims.Bind("k", Dims.RequireFloat("k", k), "B,T,Hkv,K");
            dims.Bind("v", Dims.RequireFloat("v", v), "B,T,Hkv,V");
            dims.Bind("g", Dims.RequireFloat("g", g), "B,T,Hq");
            if (dims["Hkv"] == 0 ? dims["Hq"] != 0 : dims["Hq"] % dims["Hkv"] != 0)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"the number of key/value heads Hkv = {dims["Hkv"]} must divide the number of query heads Hq = {dims["Hq"]} (GQA/MQA)"), tensor: "k");
            }
            return new ForgettingProblem(q, k, v, g, dims, options);
        }

        public ReadOnlySpan<double> QueryRow(int b, int h, int i) => _q.Data.AsSpan(((b * T + i) * Hq + h) * Dk, Dk);

        public ReadOnlySpan<double> KeyRow(int b, int h, int j) => _k.Data.AsSpan(((b * T + j) * _hkv + h / _groupSize) * Dk, Dk);

        public ReadOnlySpan<double> ValueRow(int b, int h, int j) => _v.Data.AsSpan(((b * T + j) * _hkv + h / _groupSize) * Dv, Dv);

        /// <summary>g_t of batch b, query head h.</summary>
        public double Gate(int b, int h, int t) => _g.Data[(b * T + t) * Hq + h];
    }
}

/// <summary>The options of <see cref="Forgetting"/>.</summary>
public sealed record ForgettingOptions
{
    /// <summary>Score scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>Tiled: queries per tile.</summary>
    public int BlockQ { get; init; } = 64;

    /// <summary>Tiled: keys per tile.</summary>
    public int BlockK { get; init; } = 64;

    /// <summary>Varlen: int32/int64 [N+1] sequence boundaries along T (B = 1); null = each batch entry is one sequence.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of forgetting attention: o [B,T,Hq,V] and lse [B,T,Hq].</summary>
public sealed record ForgettingResult(Tensor O, Tensor Lse);
