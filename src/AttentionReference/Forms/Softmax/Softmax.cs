using System.Collections.Concurrent;
using System.Globalization;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// Softmax attention, exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as flash-attn):
///   q [B,Tq,Hq,K]   k [B,Tk,Hkv,K]   v [B,Tk,Hkv,V]   →   o [B,Tq,Hq,V]   lse [B,Tq,Hq]
///   Hq is a multiple of Hkv (GQA/MQA): query head h reads key/value head h / (Hq/Hkv).
///   mask broadcastable to [B,Hq,Tq,Tk]; alibi_slopes [Hq] or [B,Hq]
///   varlen: B = 1, cu_seqlens_q [N+1], cu_seqlens_k [N+1]; sequence n is queries cu_q[n]..cu_q[n+1] against keys
///           cu_k[n]..cu_k[n+1], with its own Tq_n, Tk_n (and its own diagonal) in everything below.
///
/// For each batch (or sequence) b, query head h and query position i:
///   s_ij  = scale · q_i · k_j                         scale = K^(-1/2) unless given
///   s_ij ← c · tanh(s_ij / c)                         softcap c > 0 only
///   s_ij ← s_ij − slope_h · |i + Tk − Tq − j|         alibi_slopes only
///   s_ij ← s_ij + mask_ij                             additive mask only
///   A_i   = { j : i + Tk − Tq − wl ≤ j ≤ i + Tk − Tq + wr, mask_ij ≠ −∞ }    the allowed keys
///   m_i   = max_{j∈A_i} s_ij                          the max: no exp ever overflows
///   l_i   = Σ_{j∈A_i} exp(s_ij − m_i)
///   o_i   = Σ_{j∈A_i} exp(s_ij − m_i) v_j / l_i
///   lse_i = m_i + ln l_i                              natural log, as flash-attn's softmax_lse
/// </code>
/// Masks. The diagonal i + Tk − Tq is flash-attn's bottom-right alignment (flash-attn ≥ 2.1): when Tq ≠ Tk the last
/// query sees the last key. <c>causal</c> sets wr = 0; <c>window_left</c> = wl and <c>window_right</c> = wr are
/// counted from that diagonal, and −1 means unbounded on that side (flash-attn's window_size). With
/// <c>causal_align=top_left</c> the diagonal is i instead (PyTorch SDPA's is_causal, which aligns top-left), for the
/// windows and ALiBi alike. <c>mask</c> follows PyTorch SDPA's attn_mask: any shape that broadcasts to [B,Hq,Tq,Tk]
/// (axes aligned right, each 1 or full: [Tq,Tk], [B,1,Tq,Tk], [1,Hq,Tq,Tk], ...). A bool mask (an integer tensor, or
/// a float 0/1 tensor with mask_type=bool) keeps key j where it is true, as SDPA; it is exactly the additive mask
/// with 0 for true and −∞ for false. An additive mask is added to the score after the softcap, like a bias; −∞
/// removes the key from A_i. With varlen the mask is indexed by packed positions [1,Hq,ΣTq_n,ΣTk_n].
///
/// ALiBi, as flash-attn: the bias −slope·|i + Tk − Tq − j| is added after the softcap (flash-attn applies softcap to
/// the scaled score, then its mask, which adds the ALiBi bias; it divides the slope by the softmax scale, so the bias
/// lands on the scaled score unscaled). One difference we do not copy: flash-attn's causal kernels add +slope·j
/// instead (mask.h, "Is_causal: same bias vector for all rows"), which differs from our bias by slope·(i + Tk − Tq),
/// constant along the row: o is identical, but flash-attn's causal-ALiBi lse is ours plus slope·(i + Tk − Tq). We
/// keep the definition from flash-attn's docstring (and its test reference, and its non-causal kernels) for both.
///
/// Empty rows. A query with A_i = ∅ (Tq > Tk under causal, a window outside the keys, a mask row all false or −∞,
/// Tk = 0) gives o_i = 0 and lse_i = −∞, as flash-attn does ("if the row of the mask is all zero, the output will be
/// zero"). PyTorch SDPA's math backend gives NaN there instead (softmax over all −∞); we follow flash-attn because
/// its kernels are the ones checked against us. An additive +∞ is not a mask: it gives NaN in its row, as in PyTorch.
///
/// NaN. A NaN propagates only to the rows that read it, and every variant reads the same values. Which rows:
///   q_i (any component)      o_i and lse_i entirely, unless A_i = ∅ (an empty row reads no score: o = 0, lse = −∞)
///   k_j (any component)      o_i and lse_i entirely, for every row of the heads that read it with j ∈ A_i
///   v_j component d          only o_i[d], for every row of the heads that read it with j ∈ A_i; lse_i stays exact
///   additive mask_ij         o_i and lse_i entirely when j is in i's window (NaN ≠ −∞, so j stays in A_i)
///   alibi slope of head h    every non-empty row of head h (the bias slope·0 on the diagonal is NaN too)
/// Keys outside A_i are never read, so a NaN there reaches nothing (flash-attn skips masked blocks the same way,
/// though inside a visited block its kernels multiply a masked probability 0 by v and so would spread a NaN in v).
///
/// Variants (each equals naive to rounding, in double):
/// <code>
/// naive   per row: the scores over A_i materialised, then m, exp(s − m), l, o and lse as above.
///
/// tiled   FlashAttention-2 (Dao 2023, Algorithm 1), per sequence and head: queries in blocks of Br = block_q rows,
///         keys in blocks of Bc = block_k columns (any sizes ≥ 1; the last block may be short). For each query
///         block, m = −∞, l = 0, acc = 0; for each key block that some row's window reaches, in order:
///           S_ij  = s_ij for j ∈ A_i, −∞ elsewhere
///           m_new = max(m, max_j S_ij)
///           P_ij  = exp(S_ij − m_new)
///           l     ← exp(m − m_new) · l + Σ_j P_ij
///           acc   ← exp(m − m_new) · acc + Σ_{j∈A_i} P_ij v_j
///           m     ← m_new
///         then o_i = acc / l and lse_i = m + ln l (o_i = 0, lse_i = −∞ when l = 0). Key blocks outside every row's
///         window are skipped (FA2's n_block_min/n_block_max), and a block with no allowed key for a row leaves
///         that row's m, l, acc as they were (FA2's Check_inf: while m = −∞ there is nothing to rescale).
///
/// split   split-KV (flash-decoding) and ring attention: each sequence's keys cut into P = num_splits contiguous
///         parts of ⌈Tk/P⌉ keys (the last parts may be short or empty); part p gives a partial (o_p, lse_p) over
///         A_i ∩ part p by the naive method (an empty part: o_p = 0, lse_p = −∞); the parts merge by
///           lse = ln Σ_p exp(lse_p)     computed as M + ln Σ_p exp(lse_p − M), M = max_p lse_p
///           o   = Σ_p exp(lse_p − lse) · o_p
///         With every lse_p = −∞ the row is empty (o = 0, lse = −∞); an empty part has weight exp(−∞) = 0 and
///         contributes 0·0, so it never makes a NaN. <see cref="Merge"/> is the rule on its own.
///
/// decode  flash_attn_with_kvcache: q [B,Tq,Hq,K] (few queries) against k_cache/v_cache, contiguous
///         [B,Tcache,Hkv,K] or paged [num_blocks,page_size,Hkv,K] with block_table [B,max_blocks] (int; key j of
///         batch b is slot j mod page_size of block block_table[b, j / page_size]; any page_size ≥ 1, as
///         flash-attn 3 allows, where flash-attn 2 wants multiples of 256; table entries past the valid length are
///         never read, so they may hold anything); cache_seqlens [B] (int) gives batch b's number of valid keys
///         Tk_b (default: the whole cache). The cache's batch size must be B. Everything above holds with Tk = Tk_b,
///         so causal is bottom-right relative to cache_seqlens: query i sees keys j ≤ i + Tk_b − Tq. Computed
///         split-KV over the cache (num_splits) and merged, as flash-decoding does. Not supported here: appending
///         new k, v (write them into the cache and raise cache_seqlens), rotary, cache_batch_idx, cache_leftpad.
/// </code>
/// Sources: Vaswani et al. 2017 (the definition); Dao 2023, FlashAttention-2 (the online-softmax recurrence, lse);
/// flash-attn's flash_attn_interface.py docstrings (bottom-right causal, window_size, alibi bias, empty rows,
/// flash_attn_varlen_func, flash_attn_with_kvcache's k_cache/block_table/cache_seqlens), its csrc mask.h and
/// flash_fwd_kernel.h (softcap before mask and ALiBi; slope divided by the softmax scale; the causal ALiBi form);
/// Dao et al. 2023, Flash-Decoding (split-KV and the log-sum-exp merge); PyTorch's scaled_dot_product_attention
/// docs (attn_mask broadcasting, bool True = keep, is_causal top-left).
/// </summary>
public static class Softmax
{
    /// <summary>The reference: scores of one query row materialised, then a stable softmax.</summary>
    public static SoftmaxResult Naive(Tensor q, Tensor k, Tensor v, SoftmaxOptions? options = null) =>
        Materialised(SoftmaxProblem.Bind(q, k, v, options ?? new SoftmaxOptions()), part: 0, parts: 1);

    /// <summary>
    /// FlashAttention-2's online softmax: query blocks of <paramref name="blockQ"/> rows against key blocks of
    /// <paramref name="blockK"/> columns, with a running max, a running sum and a rescaled accumulator.
    /// </summary>
    public static SoftmaxResult Tiled(Tensor q, Tensor k, Tensor v, SoftmaxOptions? options = null, int blockQ = 64, int blockK = 64)
    {
        RequirePositive("block_q", blockQ);
        RequirePositive("block_k", blockK);
        options ??= new SoftmaxOptions();
        var problem = SoftmaxProblem.Bind(q, k, v, options);
        var result = problem.NewResult();
        // Plain scores (no softcap, ALiBi or mask): S = scale · Q Kᵀ as one matrix product per tile pair;
        // otherwise every score goes through the problem's full definition.
        bool plainScores = !(options.Softcap > 0) && options.AlibiSlopes is null && options.Mask is null;
        double scale = options.Scale ?? 1 / Math.Sqrt(problem.Dk); // SoftmaxProblem's default, K^(-1/2)
        int dk = problem.Dk, dv = problem.Dv, groupSize = problem.Hq / problem.Hkv;
        int maxTq = problem.Sequences.Select(s => s.Tq).DefaultIfEmpty(0).Max();
        int maxTk = problem.Sequences.Select(s => s.Tk).DefaultIfEmpty(0).Max();
        int rowsPerBlock = Math.Max(1, Math.Min(blockQ, maxTq)), keysPerBlock = Math.Max(1, Math.Min(blockK, maxTk));

        // K and V of one (sequence, key head), packed once and then read by every query block of the heads that
        // share them: V row-major [Tk x V], and K as one transposed tile Kᵀ [K x Bc] per key block (at offset
        // j0·K), so that S = Q Kᵀ runs along contiguous rows of keys.
        var kTiles = new double[plainScores ? (long)maxTk * dk : 0];
        var vRows = new double[(long)maxTk * dv];
        var workspaces = new ConcurrentBag<TiledWorkspace>(); // per-thread buffers, reused from task to task

        foreach (SoftmaxSequence sequence in problem.Sequences.Where(s => s.Tq > 0))
        {
            int queryBlocks = CeilingDivide(sequence.Tq, blockQ), keyBlocks = CeilingDivide(sequence.Tk, blockK);
            for (int kvHead = 0; kvHead < problem.Hkv; kvHead++)
            {
                QueryRow reader = problem.Row(sequence, 0, kvHead * groupSize); // a query head that reads this key head
                Parallel.For(0, keyBlocks, block =>
                {
                    int j0 = (int)((long)block * blockK), bc = Math.Min(blockK, sequence.Tk - j0);
                    for (int j = j0; j < j0 + bc; j++)
                    {
                        problem.ValueRow(reader, j).CopyTo(vRows.AsSpan(j * dv, dv));
                        if (plainScores)
                        {
                            ReadOnlySpan<double> kj = problem.KeyRow(reader, j);
                            Span<double> kT = kTiles.AsSpan(j0 * dk, bc * dk);
                            for (int d = 0; d < dk; d++)
                            {
                                kT[d * bc + j - j0] = kj[d];
                            }
                        }
                    }
                });
                // One task per (query head, query block), the last (longest under causal) blocks first; each task's
                // rows are computed start to end by one thread, so the result does not depend on the thread count.
                Parallel.For(0, groupSize * queryBlocks,
                    () => workspaces.TryTake(out var workspace) ? workspace : new TiledWorkspace(rowsPerBlock, keysPerBlock, dk, dv),
                    (task, _, workspace) =>
                    {
                        int h = kvHead * groupSize + task % groupSize, i0 = (int)((long)(queryBlocks - 1 - task / groupSize) * blockQ);
                        QueryBlock(sequence, h, i0, workspace);
                        return workspace;
                    },
                    workspaces.Add);
            }
        }
        return result;

        // Rows i0 .. i0 + Br of head h against the key blocks their windows reach.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void QueryBlock(SoftmaxSequence sequence, int h, int i0, TiledWorkspace w)
        {
            int br = Math.Min(blockQ, sequence.Tq - i0);
            for (int r = 0; r < br; r++)
            {
                w.Rows[r] = problem.Row(sequence, i0 + r, h);
                w.Windows[r] = problem.Window(w.Rows[r]);
                problem.Query(w.Rows[r]).CopyTo(w.Q.AsSpan(r * dk, dk));
            }
            double[] m = w.M, l = w.L; // the rows' running max and sum
            m.AsSpan(0, br).Fill(double.NegativeInfinity);
            l.AsSpan(0, br).Clear();
            w.Acc.AsSpan(0, br * dv).Clear();
            Span<double> Acc(int r) => w.Acc.AsSpan(r * dv, dv);

            // The key blocks some row's window reaches (FA2's n_block_min .. n_block_max); the others are skipped.
            var windows = w.Windows.AsSpan(0, br);
            int first = int.MaxValue, end = 0;
            foreach (var (firstR, endR) in windows)
            {
                if (firstR < endR)
                {
                    (first, end) = (Math.Min(first, firstR), Math.Max(end, endR));
                }
            }
            for (int block = first == int.MaxValue ? 0 : first / blockK; block < CeilingDivide(end, blockK); block++)
            {
                int j0 = (int)((long)block * blockK), bc = Math.Min(blockK, sequence.Tk - j0);
                ReadOnlySpan<double> vTile = vRows.AsSpan(j0 * dv, bc * dv);
                Span<double> s = w.S.AsSpan(0, br * bc); // S [Br x Bc], then P
                if (plainScores)
                {
                    // S = scale · Q Kᵀ over the whole tile; each row then reads only the keys of its window.
                    s.Clear();
                    DenseMatrix.AddProduct(w.Q.AsSpan(0, br * dk), br, kTiles.AsSpan(j0 * dk, bc * dk), dk, s);
                    VectorKernels.Scale(scale, s);
                }
                int fullRows = 0; // rows r − fullRows .. r cover the whole block: their P V waits for one matrix product
                for (int r = 0; r < br; r++)
                {
                    int lo = Math.Clamp(windows[r].First, j0, j0 + bc), hi = Math.Clamp(windows[r].End, lo, j0 + bc);
                    Span<double> sRow = s.Slice(r * bc + lo - j0, hi - lo); // S row over the window, then P row
                    // A score of −∞ (an overflowing dot product) sends the row to the general step, which skips that key
                    // as it skips a masked one. Min is NaN when the row holds a NaN: the row is NaN either way.
                    bool plainRow = plainScores && lo < hi && TensorPrimitives.Min<double>(sRow) != double.NegativeInfinity;
                    bool full = plainRow && hi - lo == bc;
                    if (!full && fullRows > 0)
                    {
                        AddFullRows(r);
                    }
                    if (lo == hi)
                    {
                        continue; // no key of this block in the row's window: m, l, acc stay as they were
                    }
                    if (!plainRow)
                    {
                        OnlineStep(r, j0, bc, vTile);
                        continue;
                    }
                    double mNew = Math.Max(m[r], VectorKernels.Max(sRow));
                    double alpha = Math.Exp(m[r] - mNew); // exp(−∞) = 0 on the first block with an allowed key
                    double rowSum = VectorKernels.ExpShiftedInPlace(sRow, mNew); // P_ij = exp(S_ij − m_new)
                    l[r] = alpha * l[r] + rowSum;
                    VectorKernels.Scale(alpha, Acc(r));
                    m[r] = mNew;
                    if (full)
                    {
                        fullRows++;
                    }
                    else
                    {
                        DenseMatrix.AddWeightedRows(sRow, vTile.Slice((lo - j0) * dv, (hi - lo) * dv), Acc(r)); // acc += Σ_{j∈A_i} P_ij v_j
                    }
                }
                if (fullRows > 0)
                {
                    AddFullRows(br);
                }

                // acc += P V for the rows end − fullRows .. end, whose windows cover the whole block.
                void AddFullRows(int end)
                {
                    int start = end - fullRows;
                    DenseMatrix.AddProduct(w.S.AsSpan(start * bc, fullRows * bc), fullRows, vRows.AsSpan(j0 * dv, bc * dv), bc, w.Acc.AsSpan(start * dv, fullRows * dv));
                    fullRows = 0;
                }
            }

            for (int r = 0; r < br; r++)
            {
                Finish(result, w.Rows[r].Index, Acc(r), m[r], l[r]);
            }

            // The online step of row r on the key block j0 .. j0 + bc, every score through the problem's full definition.
            void OnlineStep(int r, int j0, int bc, ReadOnlySpan<double> vTile)
            {
                QueryRow row = w.Rows[r];
                Span<double> s = w.Scores.AsSpan(0, bc);
                for (int j = j0; j < j0 + bc; j++)
                {
                    s[j - j0] = problem.IsAllowed(row, j) ? problem.Score(row, j) : double.NegativeInfinity;
                }
                double mNew = Math.Max(m[r], VectorKernels.Max(s));
                if (double.IsNegativeInfinity(mNew))
                {
                    return; // nothing allowed yet: nothing to rescale (FA2's Check_inf)
                }
                double alpha = Math.Exp(m[r] - mNew); // exp(−∞) = 0 on the first block with an allowed key
                double rowSum = 0;
                VectorKernels.Scale(alpha, Acc(r));
                for (int j = j0; j < j0 + bc; j++)
                {
                    if (!double.IsNegativeInfinity(s[j - j0]))
                    {
                        double p = Math.Exp(s[j - j0] - mNew);
                        rowSum += p;
                        VectorKernels.Axpy(p, vTile.Slice((j - j0) * dv, dv), Acc(r)); // only allowed keys' v are read
                    }
                }
                l[r] = alpha * l[r] + rowSum;
                m[r] = mNew;
            }
        }
    }

    /// <summary>The buffers of one thread's query block in <see cref="Tiled"/>, sized for the largest block.</summary>
    private sealed class TiledWorkspace(int rows, int keys, int dk, int dv)
    {
        public QueryRow[] Rows { get; } = new QueryRow[rows];
        public (int First, int End)[] Windows { get; } = new (int, int)[rows];
        public double[] Q { get; } = new double[rows * dk];      // the query block [Br x K]
        public double[] S { get; } = new double[rows * keys];    // S, then P, of one key block [Br x Bc]
        public double[] Acc { get; } = new double[rows * dv];    // the rows' accumulators [Br x V]
        public double[] M { get; } = new double[rows];
        public double[] L { get; } = new double[rows];
        public double[] Scores { get; } = new double[keys];      // one row's scores, general path
    }

    /// <summary>
    /// Split-KV: each sequence's keys cut into <paramref name="numSplits"/> contiguous parts, a partial (o, lse) per
    /// part, merged by the log-sum-exp rule.
    /// </summary>
    public static SoftmaxResult Split(Tensor q, Tensor k, Tensor v, SoftmaxOptions? options = null, int numSplits = 4)
    {
        RequirePositive("num_splits", numSplits);
        return SplitKv(SoftmaxProblem.Bind(q, k, v, options ?? new SoftmaxOptions()), numSplits);
    }

    /// <summary>
    /// Decoding against a KV cache, as flash_attn_with_kvcache: contiguous or paged (<see cref="KvCache.BlockTable"/>),
    /// each batch entry with its own length (<see cref="KvCache.CacheSeqlens"/>), computed split-KV over
    /// <paramref name="numSplits"/> parts.
    /// </summary>
    public static SoftmaxResult Decode(Tensor q, KvCache cache, SoftmaxOptions? options = null, int numSplits = 4)
    {
        RequirePositive("num_splits", numSplits);
        return SplitKv(SoftmaxProblem.BindDecode(q, cache, options ?? new SoftmaxOptions()), numSplits);
    }

    /// <summary>
    /// The log-sum-exp merge of partial results over disjoint key sets (split-KV, ring attention):
    /// lse = ln Σ_p exp(lse_p), o = Σ_p exp(lse_p − lse) o_p; rows empty in every part stay o = 0, lse = −∞.
    /// </summary>
    public static SoftmaxResult Merge(IReadOnlyList<SoftmaxResult> partials)
    {
        ArgumentNullException.ThrowIfNull(partials);
        if (partials.Count == 0)
        {
            throw new InputException("merge needs at least one partial result");
        }
        Tensor o0 = partials[0].O, lse0 = partials[0].Lse;
        if (o0.Rank != lse0.Rank + 1 || !o0.Shape.Take(lse0.Rank).SequenceEqual(lse0.Shape)
            || partials.Any(p => !p.O.Shape.SequenceEqual(o0.Shape) || !p.Lse.Shape.SequenceEqual(lse0.Shape)))
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"partial results must all have o [...,V] and lse [...] of the first one's shapes {o0.ShapeString} and {lse0.ShapeString}"));
        }
        int dv = o0.Rank == 0 ? 1 : o0.Dim(o0.Rank - 1);
        var merged = new SoftmaxResult(Tensor.Zeros(o0.ShapeArray()), Tensor.Zeros(lse0.ShapeArray()));
        Parallel.For(0, lse0.Length, row =>
        {
            double max = double.NegativeInfinity;
            foreach (SoftmaxResult p in partials)
            {
                max = Math.Max(max, p.Lse.Data[row]); // Math.Max propagates NaN
            }
            Span<double> oRow = merged.O.Data.AsSpan(row * dv, dv);
            if (double.IsNegativeInfinity(max))
            {
                merged.Lse.Data[row] = double.NegativeInfinity; // empty in every part: o = 0, lse = −∞
                return;
            }
            double sum = 0;
            foreach (SoftmaxResult p in partials)
            {
                sum += Math.Exp(p.Lse.Data[row] - max);
            }
            double lse = max + Math.Log(sum);
            foreach (SoftmaxResult p in partials)
            {
                VectorKernels.Axpy(Math.Exp(p.Lse.Data[row] - lse), p.O.Data.AsSpan(row * dv, dv), oRow);
            }
            merged.Lse.Data[row] = lse;
        });
        return merged;
    }

    private static SoftmaxResult SplitKv(SoftmaxProblem problem, int parts) =>
        Merge(Enumerable.Range(0, parts).Select(p => Materialised(problem, p, parts)).ToArray());

    /// <summary>
    /// The naive method over part <paramref name="part"/> of <paramref name="parts"/> of each sequence's keys: keys
    /// [p·⌈Tk/P⌉, (p+1)·⌈Tk/P⌉) ∩ A_i. Naive is the one-part case.
    /// </summary>
    private static SoftmaxResult Materialised(SoftmaxProblem problem, int part, int parts)
    {
        var result = problem.NewResult();
        // One task per (b, t, h) row; each row is computed start to end by one thread, so the result does not
        // depend on the number of threads.
        Parallel.For(0, problem.RowCount, index =>
        {
            QueryRow row = problem.Row(index);
            long size = CeilingDivide(row.Sequence.Tk, parts);
            long partFirst = part * size, partEnd = Math.Min(row.Sequence.Tk, partFirst + size);
            int[] keys = problem.AllowedKeys(row).Where(j => j >= partFirst && j < partEnd).ToArray();

            var s = new double[keys.Length];
            for (int n = 0; n < keys.Length; n++)
            {
                s[n] = problem.Score(row, keys[n]);
            }
            double m = VectorKernels.Max(s); // −∞ for an empty row
            double l = double.IsNegativeInfinity(m) ? 0 : VectorKernels.ExpShiftedInPlace(s, m); // s now holds exp(s − m)
            var acc = new double[problem.Dv];
            for (int n = 0; n < keys.Length && l != 0; n++)
            {
                VectorKernels.Axpy(s[n], problem.ValueRow(row, keys[n]), acc);
            }
            Finish(result, row.Index, acc, m, l);
        });
        return result;
    }

    /// <summary>o = acc / l and lse = m + ln l; a row with nothing allowed (l = 0) gets o = 0 and lse = −∞.</summary>
    private static void Finish(SoftmaxResult result, int index, ReadOnlySpan<double> acc, double m, double l)
    {
        Span<double> o = result.O.Data.AsSpan(index * acc.Length, acc.Length);
        if (l == 0)
        {
            result.Lse.Data[index] = double.NegativeInfinity;
            return;
        }
        acc.CopyTo(o);
        VectorKernels.Scale(1 / l, o);
        result.Lse.Data[index] = m + Math.Log(l);
    }

    /// <summary>⌈a / b⌉ for a ≥ 0, b ≥ 1, without overflow for any int b.</summary>
    private static int CeilingDivide(int a, int b) => (int)(((long)a + b - 1) / b);

    private static void RequirePositive(string name, int value)
    {
        if (value < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter '{name}' must be ≥ 1, found {value}"));
        }
    }
}

/// <summary>Where the causal diagonal sits when Tq ≠ Tk.</summary>
public enum CausalAlignment
{
    /// <summary>flash-attn ≥ 2.1: query i's diagonal key is i + Tk − Tq (the last query sees the last key).</summary>
    BottomRight,
    /// <summary>PyTorch SDPA's is_causal: query i's diagonal key is i.</summary>
    TopLeft,
}

/// <summary>How a mask's values are read.</summary>
public enum MaskKind
{
    /// <summary>The value is added to the score; −∞ removes the key.</summary>
    Additive,
    /// <summary>Nonzero keeps the key, zero removes it (PyTorch SDPA's bool attn_mask: True = keep).</summary>
    Boolean,
}

/// <summary>The options of <see cref="Softmax"/>; defaults give full (non-causal) attention with scale K^-1/2.</summary>
public sealed record SoftmaxOptions
{
    /// <summary>Score scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>Causal masking (window_right = 0).</summary>
    public bool Causal { get; init; }

    /// <summary>Where the diagonal sits when Tq ≠ Tk.</summary>
    public CausalAlignment Alignment { get; init; } = CausalAlignment.BottomRight;

    /// <summary>Keys allowed left of the diagonal; −1 = unbounded.</summary>
    public int WindowLeft { get; init; } = -1;

    /// <summary>Keys allowed right of the diagonal; −1 = unbounded (0 when causal).</summary>
    public int WindowRight { get; init; } = -1;

    /// <summary>Softcap c: score ← c·tanh(score/c); 0 = off.</summary>
    public double Softcap { get; init; }

    /// <summary>ALiBi slopes [Hq] or [B,Hq]; null = none.</summary>
    public Tensor? AlibiSlopes { get; init; }

    /// <summary>A mask broadcastable to [B,Hq,Tq,Tk], bool or additive (<see cref="MaskKind"/>); null = none.</summary>
    public Tensor? Mask { get; init; }

    /// <summary>How <see cref="Mask"/> is read; null = by its dtype (integer: bool, float: additive).</summary>
    public MaskKind? MaskKind { get; init; }

    /// <summary>Varlen: query sequence boundaries, int [N+1] (B = 1, as flash_attn_varlen_func); with <see cref="CuSeqlensK"/>.</summary>
    public Tensor? CuSeqlensQ { get; init; }

    /// <summary>Varlen: key sequence boundaries, int [N+1].</summary>
    public Tensor? CuSeqlensK { get; init; }
}

/// <summary>
/// A KV cache as flash_attn_with_kvcache takes it: k_cache/v_cache [B,Tcache,Hkv,D], or paged
/// [num_blocks,page_size,Hkv,D] with <paramref name="BlockTable"/> int [B,max_blocks]; <paramref name="CacheSeqlens"/>
/// int [B] gives each batch entry's number of valid keys (null: the whole cache).
/// </summary>
public sealed record KvCache(Tensor K, Tensor V, Tensor? CacheSeqlens = null, Tensor? BlockTable = null);

/// <summary>Outputs of softmax attention: o [B,Tq,Hq,V] and lse [B,Tq,Hq].</summary>
public sealed record SoftmaxResult(Tensor O, Tensor Lse);
