using AttentionReference.Forms.Common;
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
/// Gradients: from the cotangents do and dlse (absent: 0), dq, dk and dv as softmax's (Softmax.cs) over the causal keys,
/// and dg through the bias: dg_r = Σ_{i ≥ r} Σ_{j &lt; r} dS_ij (∂D_ij/∂g_r = 1 for j &lt; r ≤ i; the first step of each
/// sequence is in no D_ij: its dg is 0).
///   naive   per row: dS_ij by softmax's chain rule, dg by a prefix sum of dS along the row.
///   tiled   FlashAttention-2's backward (FlashAttentionBackward.cs), each tile's bias built from same-sign sums as in the
///           forward, and dg from the entries of each tile's dS, grouped by tile (fla's reverse cumulative sum of
///           rowsum(dS) − colsum(dS) loses the digits of dg under strong gates: see GateTiles).
/// Both variants take the score scale · q_i · k_j from softmax's Scores.cs and end with its stable softmax of a row;
/// one task per (sequence, query head, query block) in the tiled variant, each computed start to end by one thread.
/// </summary>
public sealed class Forgetting : Form
{
    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("forgetting", "softmax", "Forgetting.cs")
    {
        Variants = ["naive", "tiled"],
        Inputs =
        [
            new("q", "B,T,Hq,K", "queries"),
            new("k", "B,T,Hkv,K", "keys (Hq a multiple of Hkv: GQA/MQA)"),
            new("v", "B,T,Hkv,V", "values"),
            new("g", "B,T,Hq", "log forget gates log f_t ≤ 0, per query head"),
            Specs.CuSeqlens,
        ],
        Outputs =
        [
            new("o", "B,T,Hq,V", "attention output"),
            new("lse", "B,T,Hq", "natural-log sum-exp of each row's biased scores"),
        ],
        Parameters = [SoftmaxSpecs.Scale, SoftmaxSpecs.BlockQ, SoftmaxSpecs.BlockK],
        Groups = [SoftmaxSpecs.Gqa],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        double scale = SoftmaxSpecs.ScaleOf(problem);
        return variant switch
        {
            "naive" => Heads.Run(problem, head => Naive(head, scale), "Hq"),
            "tiled" => Tiled(problem, scale, problem.Get(SoftmaxSpecs.BlockQ), problem.Get(SoftmaxSpecs.BlockK)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The definition, per (sequence, query head): each row's bias D_ij summed from the diagonal leftwards, then the stable softmax.</summary>
    public static void Naive(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        var scores = new Scores(head.Rows("q"), KeyValues.Of(head), scale, Window.Causal(head.T, head.T));
        Series g = head.Series("g"), lse = head.Series("lse");
        RowBlock o = head.Rows("o");
        int[] keys = Enumerable.Range(0, head.T).ToArray();
        var s = new double[head.T];
        for (int i = 0; i < head.T; i++)
        {
            double bias = 0; // D_ii = 0
            for (int j = i; j >= 0; j--)
            {
                s[j] = scores.Score(i, j) + bias; // s_ij = scale · q_i · k_j + D_ij
                bias += g[j];                     // D_i,j−1 = D_ij + g_j
            }
            lse[i] = SoftmaxRow.Attend(s.AsSpan(0, i + 1), keys.AsSpan(0, i + 1), scores.Keys, o[i]); // keys j ≤ i
        }
    }

    /// <summary>FlashAttention-2's online softmax over tiles, the bias of each tile from sums relative to the query block's start.</summary>
    public static IReadOnlyDictionary<string, Tensor> Tiled(Problem problem, double scale, int blockQ, int blockK) =>
        TiledViews(problem, scale, blockQ, blockK).Outputs;

    /// <summary><see cref="Tiled"/>, with each pair's view of o and lse (what the backward reads).</summary>
    private static HeadViews TiledViews(Problem problem, double scale, int blockQ, int blockK)
    {
        ArgumentNullException.ThrowIfNull(problem);
        HeadViews heads = Heads.Views(problem, "Hq");
        // One task per (sequence, query head, query block); each computes its rows start to end.
        var tasks = (from sequence in problem.Sequences
                     from h in Enumerable.Range(0, problem["Hq"])
                     from block in Chunks.Of(sequence.Steps("T").Length, blockQ)
                     select (sequence, h, q0: block.Start)).ToArray();
        Parallel.ForEach(tasks, task => TiledBlock(heads.Pair(task.sequence, task.h), scale, task.q0, blockQ, blockK));
        return heads;
    }

    /// <summary>Rows q0 … q0 + Bq of one pair, steps 1 to 4 of the tiled variant.</summary>
    private static void TiledBlock(Head head, double scale, int q0, int bq, int bk)
    {
        var scores = new Scores(head.Rows("q"), KeyValues.Of(head), scale, Window.Causal(head.T, head.T));
        RowBlock v = head.Rows("v"), o = head.Rows("o");
        Series g = head.Series("g"), lse = head.Series("lse");
        int length = head.T, rows = Math.Min(bq, length - q0), dv = v.Width;
        bk = Math.Min(bk, length); // a key block past the sequence is the sequence (length ≥ 1 here)

        // 1. A_i = Σ_{r=q0+1..i} g_r for the block's queries.
        var a = new double[rows];
        for (int r = 1; r < rows; r++)
        {
            a[r] = a[r - 1] + g[q0 + r];
        }

        // 2. Running state per query row: max m, sum l, unnormalised output acc.
        var m = new double[rows];
        Array.Fill(m, double.NegativeInfinity);
        var l = new double[rows];
        var acc = new double[rows * dv];
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
                    e += g[eAt]; // E_{eAt−1} = E_{eAt} + g_{eAt}
                    eAt--;
                }
                for (int r = 0; r < rows; r++)
                {
                    tile[r * bk + j - k0] = scores.Score(q0 + r, j) + a[r] + e;
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
                        tile[r * bk + j - k0] = scores.Score(i, j) + inside;
                    }
                    inside += g[j];
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
                Span<double> accRow = acc.AsSpan(r * dv, dv);
                double rescale = Math.Exp(m[r] - mNew); // exp(−∞) = 0 on the first tile
                VectorKernels.Scale(rescale, accRow);
                l[r] = l[r] * rescale + VectorKernels.ExpShiftedInPlace(s, mNew);
                for (int j = k0; j < k1; j++)
                {
                    VectorKernels.Axpy(s[j - k0], v[j], accRow);
                }
                m[r] = mNew;
            }
        }

        // 4. Normalise and write: o_i = acc_i / l_i, lse_i = m_i + ln l_i.
        for (int r = 0; r < rows; r++)
        {
            lse[q0 + r] = SoftmaxRow.Normalise(acc.AsSpan(r * dv, dv), o[q0 + r], m[r], l[r]);
        }
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        double scale = SoftmaxSpecs.ScaleOf(problem);
        return variant switch
        {
            "naive" => Heads.Backward(problem, head => NaiveBackward(head, scale), "Hq"),
            "tiled" => TiledBackward(problem, scale, problem.Get(SoftmaxSpecs.BlockQ), problem.Get(SoftmaxSpecs.BlockK)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>
    /// The backward pass of the definition, per (sequence, query head): each row's biased scores and softmax replayed,
    /// then softmax's chain rule (SoftmaxRow.Backward) and the bias's:
    /// <code>
    ///   P_ij = exp(s_ij − lse_i),  D_i = rowsum(do_i ∘ o_i) − dlse_i               j ≤ i
    ///   dv_j += P_ij do_i,   dS_ij = P_ij (do_i · v_j − D_i)
    ///   dq_i += scale · Σ_j dS_ij k_j,   dk_j += scale · dS_ij q_i
    ///   dg_r  = Σ_{i ≥ r} Σ_{j &lt; r} dS_ij                                        ∂D_ij/∂g_r = 1 for j &lt; r ≤ i
    /// </code>
    /// dg by a prefix sum along each row: F_i(r) = Σ_{j &lt; r} dS_ij for r = 1 … i, added to dg_r (dg_0 = 0: g_0 is in
    /// no D_ij, as every sequence's first gate).
    /// </summary>
    public static void NaiveBackward(Head head, double scale)
    {
        ArgumentNullException.ThrowIfNull(head);
        var scores = new Scores(head.Rows("q"), KeyValues.Of(head), scale, Window.Causal(head.T, head.T));
        KeyValues gradients = KeyValues.GradientsOf(head);
        Series g = head.Series("g"), dg = head.Series("dg");
        RowBlock dq = head.Rows("dq");
        RowBlock? dO = head.OptionalRows("do");
        Series? dLse = head.OptionalSeries("dlse");
        int[] keys = Enumerable.Range(0, head.T).ToArray();
        var s = new double[head.T];
        var weights = new double[head.T];
        var o = new double[head["V"]];
        for (int i = 0; i < head.T; i++)
        {
            double bias = 0; // D_ii = 0
            for (int j = i; j >= 0; j--)
            {
                s[j] = scores.Score(i, j) + bias; // s_ij = scale · q_i · k_j + D_ij
                bias += g[j];                     // D_i,j−1 = D_ij + g_j
            }
            s.AsSpan(0, i + 1).CopyTo(weights);
            Array.Clear(o);
            double lse = SoftmaxRow.Attend(weights.AsSpan(0, i + 1), keys.AsSpan(0, i + 1), scores.Keys, o); // the forward replayed
            ReadOnlySpan<double> doI = dO is null ? [] : dO[i];
            double d = (dO is null ? 0 : VectorKernels.Dot(doI, o)) - (dLse?[i] ?? 0);
            SoftmaxRow.Backward(s.AsSpan(0, i + 1), keys.AsSpan(0, i + 1), scores.Keys, lse, d, doI, gradients); // s ← dS_ij
            double prefix = 0; // F_i(r) = Σ_{j<r} dS_ij
            for (int j = 0; j <= i; j++)
            {
                VectorKernels.Axpy(scale * s[j], scores.Keys.Key(j), dq[i]);     // dq_i += scale dS_ij k_j
                VectorKernels.Axpy(scale * s[j], scores.Q[i], gradients.Key(j)); // dk_j += scale dS_ij q_i
                if (j > 0)
                {
                    prefix += s[j - 1];
                    dg[j] += prefix;                                               // dg_r += F_i(r), r = j
                }
            }
        }
    }

    /// <summary>
    /// tiled's backward: the tiled forward (o, lse), then FlashAttention-2's backward (FlashAttentionBackward.cs) with the
    /// biased scores of <see cref="GateTiles"/>, which also collects dg from each tile's dS.
    /// </summary>
    private static IReadOnlyDictionary<string, Tensor> TiledBackward(Problem problem, double scale, int blockQ, int blockK)
    {
        HeadViews saved = TiledViews(problem, scale, blockQ, blockK);
        var engine = new FlashAttentionBackward(blockQ, blockK, problem["K"], problem["V"]);
        return Heads.Backward(problem, head =>
        {
            Head forward = saved.Pair(head.Sequence, head.Index);
            var tiles = new GateTiles(head.Series("g"), head.T, blockQ, blockK);
            engine.Pair(head, head.Rows("q"), KeyValues.Of(head), forward.Rows("o"), forward.Series("lse"), scale, tiles);
            tiles.WriteGateGradient(head.Series("dg"));
        }, "Hq");
    }

    /// <summary>
    /// forgetting's scores in the backward tiles, s_ij = scale · q_i · k_j + D_ij for j ≤ i (−∞ above the diagonal), and
    /// dg from each tile's dS.
    /// <code>
    /// Bias. In a tile of keys up to p = j0 + bc − 1, row i ≥ p starts from D_ip = Σ_{r=p+1..i} g_r (a running sum down the
    /// rows), row i &lt; p from D_ii = 0, and each row's D_ij is summed leftwards, D_i,j−1 = D_ij + g_j: sums of same-sign
    /// terms, never a difference of two long cumulative sums.
    /// dg. dg_r = Σ_{i ≥ r} Σ_{j &lt; r} dS_ij sums exactly the entries of dS below-left of (r, r); the tile of query rows
    /// [i0, i1) and keys [j0, j1) holds some of them, by where r lies:
    ///   j0 &lt; r &lt; j1     Σ_i Σ_{j0 ≤ j &lt; r} dS_ij over its rows i ≥ r: each row's prefix sum      → dgKeys[r]
    ///   j1 ≤ r ≤ i0     its total W                                                               → W[I, J]
    ///   i0 &lt; r &lt; i1, r ≥ j1   Σ_{i ≥ r} rowsum_i: a suffix sum of its row sums                  → dgQueries[r]
    /// dgKeys[r] is written only by the tile of r's key block, dgQueries[r] only by that of r's query block, one tile each
    /// per step of the schedule; after the last step, the totals W of the query blocks below r are summed per key block
    /// as r goes down, and those of the key blocks left of r added. fla computes
    /// dg = reverse cumsum(rowsum(dS) − colsum(dS)) instead, which subtracts the diagonal dS_ii (of order dlse_i) from
    /// itself: under strong gates dg is ~e^−20 of that, and the difference keeps none of its digits.
    /// </code>
    /// </summary>
    private sealed class GateTiles(Series g, int length, int blockQ, int blockK) : TileScores
    {
        private readonly double[] _dgKeys = new double[length], _dgQueries = new double[length];
        private readonly int _keyBlocks = (length + blockK - 1) / blockK;
        private readonly double[] _totals = new double[((length + blockQ - 1) / blockQ) * ((length + blockK - 1) / blockK)];

        public override (int First, int End) Window(int i) => (0, i + 1);

        public override void Complete(int i0, int j0, int br, int bc, Span<double> s)
        {
            int p = j0 + bc - 1;
            double below = 0; // D_ip for the current row i ≥ p
            for (int r = p + 1; r <= i0; r++)
            {
                below += g[r];
            }
            for (int row = 0; row < br; row++)
            {
                int i = i0 + row;
                if (i > p && row > 0)
                {
                    below += g[i];
                }
                Span<double> scores = s.Slice(row * bc, bc);
                double bias = i >= p ? below : 0;
                int first = Math.Min(i, p);
                scores[Math.Max(0, first + 1 - j0)..].Fill(double.NegativeInfinity); // j > i
                for (int j = first; j >= j0; j--)
                {
                    scores[j - j0] += bias;
                    bias += g[j];
                }
            }
        }

        public override void Chain(int i0, int j0, int br, int bc, Span<double> dS, ReadOnlySpan<double> raw)
        {
            int j1 = j0 + bc;
            double suffix = 0; // Σ_{i' ≥ i} rowsum_i' over the tile's rows i' ≥ j1
            for (int row = br - 1; row >= 0; row--)
            {
                int i = i0 + row;
                ReadOnlySpan<double> values = dS.Slice(row * bc, bc);
                double prefix = 0; // Σ_{j0 ≤ j < r} dS_ij
                for (int r = j0 + 1; r <= Math.Min(i, j1 - 1); r++)
                {
                    prefix += values[r - 1 - j0];
                    _dgKeys[r] += prefix;
                }
                if (i >= j1)
                {
                    suffix += System.Numerics.Tensors.TensorPrimitives.Sum(values);
                    if (i > i0)
                    {
                        _dgQueries[i] += suffix;
                    }
                }
            }
            if (j1 <= i0)
            {
                _totals[i0 / blockQ * _keyBlocks + j0 / blockK] = suffix;
            }
        }

        /// <summary>dg_r = dgKeys[r] + dgQueries[r] + Σ W over the tiles with j1 ≤ r ≤ i0 (dg_0 = 0).</summary>
        public void WriteGateGradient(Series dg)
        {
            var columns = new double[_keyBlocks]; // Σ_{query blocks with i0 ≥ r} W[I, J], per key block J
            for (int r = length - 1; r >= 1; r--)
            {
                if (r % blockQ == 0)
                {
                    VectorKernels.AddTo(_totals.AsSpan(r / blockQ * _keyBlocks, _keyBlocks), columns);
                }
                double middle = 0;
                for (int block = 0; (long)(block + 1) * blockK <= r; block++)
                {
                    middle += columns[block];
                }
                dg[r] = _dgKeys[r] + _dgQueries[r] + middle;
            }
        }
    }
}
