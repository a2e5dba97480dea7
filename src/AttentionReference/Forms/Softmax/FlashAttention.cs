using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// FlashAttention-2's forward pass (Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work
/// Partitioning", Algorithm 1): softmax's tiled variant, per (sequence, query head) pair, the scores of Scores.cs.
/// <code>
/// Queries in blocks Q_i of Br = block_q rows, keys and values in blocks K_j, V_j of Bc = block_k rows (any sizes ≥ 1;
/// the last block may be short):
///   1.     divide K, V into blocks: packed once per (sequence, key/value head), Kᵀ one tile per block, V row-major
///   3.     for each query block Q_i (in parallel, and for every query head that reads this key/value head):
///   4–5.     load Q_i; m = −∞, ℓ = 0, O = 0 for each of its rows
///   6.       for each key block j that some row's window reaches, in order:
///   7–8.       S = s_rc for c ∈ A_r, −∞ elsewhere                 (S = scale · Q_i K_jᵀ as one product when plain)
///   9.         m_new = max(m, rowmax S),  P̃ = exp(S − m_new),  ℓ ← exp(m − m_new) · ℓ + rowsum P̃
///   10.        O ← exp(m − m_new) · O + P̃ V_j,  m ← m_new
///   12–15.   o = O / ℓ,  lse = m + ln ℓ, written                 (o = 0, lse = −∞ when ℓ = 0: no allowed key)
/// Key blocks outside every row's window are skipped (FA2's n_block_min .. n_block_max), and a block with no allowed key
/// for a row leaves that row's m, ℓ, O as they were (FA2's Check_inf: while m = −∞ there is nothing to rescale).
///
/// Legend (code → paper): block_q, block_k → Br, Bc; w.Q → Q_i; kTiles → K_jᵀ, one transposed tile [K x Bc] per key
/// block; vRows → V_j; w.S → S_i^(j), then P̃_i^(j); w.M, w.L, w.Acc → m_i, ℓ_i, O_i.
///
/// Arithmetic and scheduling. Plain scores (no softcap, ALiBi or mask) go through register-blocked matrix products
/// (DenseMatrix): S = scale · Q_i K_jᵀ over the whole tile, and P̃ V_j at once for the rows whose window covers the
/// whole block; any other score goes through <see cref="Scores.Score"/> one key at a time, and a score of −∞ (an
/// overflowing dot product) sends its row there too. K and V of one (sequence, key/value head) are packed once and
/// read by the query blocks of every query head of its group, one task per (query head, query block), the last
/// (longest under causal) blocks first; each task runs start to end on one thread with a per-thread workspace, so the
/// result does not depend on the thread count.
/// </code>
/// </summary>
internal static class FlashAttention
{
    /// <summary>The tiled variant of softmax on a bound call: o and lse.</summary>
    public static IReadOnlyDictionary<string, Tensor> Forward(Problem problem, SoftmaxOptions options) => Run(problem, options).Outputs;

    /// <summary>The tiled variant on a bound call: o and lse, and each pair's view of them (what the backward reads).</summary>
    public static HeadViews Run(Problem problem, SoftmaxOptions options)
    {
        HeadViews heads = Heads.Views(problem, "Hq");
        int blockQ = options.BlockQ, blockK = options.BlockK;
        bool plainScores = options.HasPlainScores(problem);
        double scale = options.Scale;
        int dk = problem["K"], dv = problem["V"], hkv = problem["Hkv"], groupSize = hkv == 0 ? 0 : problem["Hq"] / hkv;
        int maxTq = problem.Sequences.Select(s => s.Steps("Tq").Length).DefaultIfEmpty(0).Max();
        int maxTk = problem.Sequences.Select(s => s.Steps("Tk").Length).DefaultIfEmpty(0).Max();
        int rowsPerBlock = Math.Max(1, Math.Min(blockQ, maxTq)), keysPerBlock = Math.Max(1, Math.Min(blockK, maxTk));

        // K and V of one (sequence, key/value head), packed once and then read by every query block of the heads
        // that share them: V row-major [Tk x V], and K as one transposed tile Kᵀ [K x Bc] per key block (at offset
        // j0·K), so that S = Q Kᵀ runs along contiguous rows of keys.
        var kTiles = new double[plainScores ? (long)maxTk * dk : 0];
        var vRows = new double[(long)maxTk * dv];
        var workspaces = new ConcurrentBag<Workspace>(); // per-thread buffers, reused from task to task

        foreach (Sequence sequence in problem.Sequences.Where(s => s.Steps("Tq").Length > 0))
        {
            int tq = sequence.Steps("Tq").Length, tk = sequence.Steps("Tk").Length;
            int queryBlocks = CeilingDivide(tq, blockQ), keyBlocks = CeilingDivide(tk, blockK);
            for (int kvHead = 0; kvHead < hkv; kvHead++)
            {
                // The pairs of the query heads that read this key/value head, and the rows they all read.
                var group = Enumerable.Range(kvHead * groupSize, groupSize).Select(h => Pair.Of(heads.Pair(sequence, h), options)).ToArray();
                KeyValues keys = group[0].Scores.Keys;
                // 1. K_j (as Kᵀ tiles, for plain scores) and V_j of this key/value head, packed.
                Parallel.For(0, keyBlocks, block =>
                {
                    int j0 = (int)((long)block * blockK), bc = Math.Min(blockK, tk - j0);
                    for (int j = j0; j < j0 + bc; j++)
                    {
                        keys.Value(j).CopyTo(vRows.AsSpan(j * dv, dv));
                        if (plainScores)
                        {
                            ReadOnlySpan<double> kj = keys.Key(j);
                            Span<double> kT = kTiles.AsSpan(j0 * dk, bc * dk);
                            for (int d = 0; d < dk; d++)
                            {
                                kT[d * bc + j - j0] = kj[d];
                            }
                        }
                    }
                });
                // 3. One task per (query head, query block), the last (longest under causal) blocks first.
                Parallel.For(0, groupSize * queryBlocks,
                    () => workspaces.TryTake(out var workspace) ? workspace : new Workspace(rowsPerBlock, keysPerBlock, dk, dv),
                    (task, _, workspace) =>
                    {
                        int i0 = (int)((long)(queryBlocks - 1 - task / groupSize) * blockQ);
                        QueryBlock(group[task % groupSize], i0, workspace);
                        return workspace;
                    },
                    workspaces.Add);
            }
        }
        return heads;

        // Rows i0 .. i0 + Br of one pair against the key blocks their windows reach.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void QueryBlock(Pair pair, int i0, Workspace w)
        {
            Scores scores = pair.Scores;
            int br = Math.Min(blockQ, pair.Tq - i0);
            // 4–5. Load Q_i; m = −∞, ℓ = 0, O = 0.
            for (int r = 0; r < br; r++)
            {
                w.Windows[r] = scores.Window(i0 + r);
                scores.Q[i0 + r].CopyTo(w.Q.AsSpan(r * dk, dk));
            }
            double[] m = w.M, l = w.L; // the rows' running max and sum
            m.AsSpan(0, br).Fill(double.NegativeInfinity);
            l.AsSpan(0, br).Clear();
            w.Acc.AsSpan(0, br * dv).Clear();
            Span<double> Acc(int r) => w.Acc.AsSpan(r * dv, dv);

            // 6. The key blocks some row's window reaches (FA2's n_block_min .. n_block_max); the others are skipped.
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
                // 7–8. S = scale · Q_i K_jᵀ over the whole tile when plain; each row then reads only the keys of its window.
                int j0 = (int)((long)block * blockK), bc = Math.Min(blockK, pair.Tk - j0);
                ReadOnlySpan<double> vTile = vRows.AsSpan(j0 * dv, bc * dv);
                Span<double> s = w.S.AsSpan(0, br * bc); // S [Br x Bc], then P̃
                if (plainScores)
                {
                    s.Clear();
                    DenseMatrix.AddProduct(w.Q.AsSpan(0, br * dk), br, kTiles.AsSpan(j0 * dk, bc * dk), dk, s);
                    VectorKernels.Scale(scale, s);
                }
                int fullRows = 0; // rows r − fullRows .. r cover the whole block: their P̃ V_j waits for one matrix product
                for (int r = 0; r < br; r++)
                {
                    int lo = Math.Clamp(windows[r].First, j0, j0 + bc), hi = Math.Clamp(windows[r].End, lo, j0 + bc);
                    Span<double> sRow = s.Slice(r * bc + lo - j0, hi - lo); // S row over the window, then P̃ row
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
                        continue; // no key of this block in the row's window: m, ℓ, O stay as they were
                    }
                    if (!plainRow)
                    {
                        OnlineStep(r, j0, bc, vTile);
                        continue;
                    }
                    // 9. m_new = max(m, rowmax S), P̃ = exp(S − m_new), ℓ ← exp(m − m_new) ℓ + rowsum P̃.
                    double mNew = Math.Max(m[r], VectorKernels.Max(sRow));
                    double alpha = Math.Exp(m[r] - mNew); // exp(−∞) = 0 on the first block with an allowed key
                    double rowSum = VectorKernels.ExpShiftedInPlace(sRow, mNew);
                    l[r] = alpha * l[r] + rowSum;
                    // 10. O ← exp(m − m_new) O + P̃ V_j.
                    VectorKernels.Scale(alpha, Acc(r));
                    m[r] = mNew;
                    if (full)
                    {
                        fullRows++;
                    }
                    else
                    {
                        DenseMatrix.AddWeightedRows(sRow, vTile.Slice((lo - j0) * dv, (hi - lo) * dv), Acc(r)); // O += Σ_{c∈A_r} P̃_rc v_c
                    }
                }
                if (fullRows > 0)
                {
                    AddFullRows(br);
                }

                // 10, for the rows end − fullRows .. end, whose windows cover the whole block: O += P̃ V_j as one product.
                void AddFullRows(int end)
                {
                    int start = end - fullRows;
                    DenseMatrix.AddProduct(w.S.AsSpan(start * bc, fullRows * bc), fullRows, vRows.AsSpan(j0 * dv, bc * dv), bc, w.Acc.AsSpan(start * dv, fullRows * dv));
                    fullRows = 0;
                }
            }

            // 12–15. o = O / ℓ, lse = m + ln ℓ, written to the pair's rows.
            Series lse = pair.Lse;
            for (int r = 0; r < br; r++)
            {
                lse[i0 + r] = SoftmaxRow.Normalise(Acc(r), pair.O[i0 + r], m[r], l[r]);
            }

            // Steps 7–10 of row r on the key block j0 .. j0 + bc, every score through Scores, one key at a time.
            void OnlineStep(int r, int j0, int bc, ReadOnlySpan<double> vTile)
            {
                int i = i0 + r;
                Span<double> s = w.Scores.AsSpan(0, bc);
                for (int j = j0; j < j0 + bc; j++)
                {
                    s[j - j0] = scores.IsAllowed(i, j) ? scores.Score(i, j) : double.NegativeInfinity;
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

    /// <summary>One (sequence, query head) pair: its scores and its output rows.</summary>
    private sealed record Pair(Scores Scores, RowBlock O, Series Lse, int Tq, int Tk)
    {
        public static Pair Of(Head head, SoftmaxOptions options)
        {
            Scores scores = options.ScoresOf(head);
            return new Pair(scores, head.Rows("o"), head.Series("lse"), head.T, scores.Tk);
        }
    }

    /// <summary>The buffers of one thread's query block, sized for the largest block.</summary>
    private sealed class Workspace(int rows, int keys, int dk, int dv)
    {
        public (int First, int End)[] Windows { get; } = new (int, int)[rows];
        public double[] Q { get; } = new double[rows * dk];      // Q_i [Br x K]
        public double[] S { get; } = new double[rows * keys];    // S, then P̃, of one key block [Br x Bc]
        public double[] Acc { get; } = new double[rows * dv];    // the rows' O [Br x V]
        public double[] M { get; } = new double[rows];
        public double[] L { get; } = new double[rows];
        public double[] Scores { get; } = new double[keys];      // one row's scores, general step
    }

    /// <summary>⌈a / b⌉ for a ≥ 0, b ≥ 1, without overflow for any int b.</summary>
    private static int CeilingDivide(int a, int b) => (int)(((long)a + b - 1) / b);
}
