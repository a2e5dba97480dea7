using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// FlashAttention-2's backward pass (Dao 2023, Algorithm 2): the gradients of softmax's tiled variant, and of
/// forgetting's, per (sequence, query head) pair; the form brings its scores and their chain rule (<see cref="TileScores"/>).
/// <code>
/// Given o and lse of the forward (the tiled forward runs first: they are what an engine saves) and the cotangents do,
/// dlse (absent: 0); queries in blocks of Br = block_q rows, keys in blocks of Bc = block_k rows:
///   1.       D_i = rowsum(do_i ∘ o_i) − dlse_i for every query       (FA2's preprocessing; ∂lse_i/∂s_ij = P_ij adds dlse)
///   2.       Q, dO, dQ in blocks Q_i, dO_i, dQ_i;  K, V, dK, dV in blocks K_j, V_j, dK_j, dV_j (packed once per pair)
///   3–4.     for each key block j (in parallel; the schedule below), dK_j = 0, dV_j = 0:
///   5.         for each query block i whose rows' windows reach block j:
///   6–8.         S = scale · Q_i K_jᵀ, completed by the form into s_rc (softcap, ALiBi, mask, gate bias; −∞ outside A_r)
///   9.           P = exp(S − lse_i)                               (0 outside A_r, and on a row with no allowed key)
///   10.          dV_j += Pᵀ dO_i
///   11.          dP = dO_i V_jᵀ
///   12.          dS = P ∘ (dP − D_i), then the form's chain rule  (dslope, dg taken from dS; · (1 − tanh²) under softcap)
///   13.          dQ_i += scale · dS K_j                           (FA2: an atomic add)
///   14.          dK_j += scale · dSᵀ Q_i
///   15–16.   write dK, dV and dQ to the pair's gradient rows.
/// Schedule. FA2 runs the key blocks in parallel and adds into dQ_i atomically, so its sums come in any order. Here key
/// block j visits the query blocks starting at its own index and wrapping around: at step c it takes query block
/// (j + c) mod M, M = max(#query blocks, #key blocks), so within a step the key blocks write distinct dQ_i, every dQ_i and
/// dK_j sums its tiles in a fixed order, and the result does not depend on the thread count.
///
/// Legend (code → paper): block_q, block_k → Br, Bc; Packed.Q, DO, K, DQ, DK, DV → Q, dO, K, dQ, dK, dV (row-major);
/// Packed.KT, VT → K_jᵀ, V_jᵀ, one transposed tile [K x Bc], [V x Bc] per key block; Packed.Lse, D → L, D;
/// w.S → S_i^(j), then P_i^(j); w.DS → dP_i^(j), then dS_i^(j); w.T → Pᵀ, then dSᵀ.
///
/// Every product is a register-blocked matrix product (DenseMatrix), the transposes of P and dS one copy per tile.
/// Where a tile holds keys outside a row's A_i, P and dS are 0 there, so the products add exactly 0 for finite inputs (a
/// NaN in such a key's k or v, or such a query's q, can reach the gradients of its tile, as in FA2's kernels).
/// </code>
/// </summary>
internal sealed class FlashAttentionBackward(int blockQ, int blockK, int dk, int dv)
{
    private readonly ConcurrentBag<Workspace> _workspaces = [];

    /// <summary>softmax's tiled variant: its backward on a bound call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Softmax(Problem problem, SoftmaxOptions options)
    {
        HeadViews saved = FlashAttention.Run(problem, options); // o and lse, as the forward saves them
        bool plain = options.HasPlainScores(problem);
        var engine = new FlashAttentionBackward(options.BlockQ, options.BlockK, problem["K"], problem["V"]);
        return Heads.Backward(problem, head =>
        {
            Scores scores = options.ScoresOf(head);
            Head forward = saved.Pair(head.Sequence, head.Index);
            var tiles = new SoftmaxTiles(scores, plain, options.BlockK);
            engine.Pair(head, scores.Q, scores.Keys, forward.Rows("o"), forward.Series("lse"), scores.Scale, tiles);
            if (scores.Slope is not null)
            {
                head.Row("dalibi_slopes")[0] += tiles.SlopeGradient;
            }
        }, "Hq");
    }

    /// <summary>
    /// Steps 1–16 on one pair: its queries <paramref name="q"/>, keys and values <paramref name="keys"/>, the forward's
    /// <paramref name="o"/> and <paramref name="lse"/>, the cotangents do and dlse of <paramref name="head"/>; writes its
    /// dq, dk and dv rows (a group's own copies of dk, dv, which the runner sums).
    /// </summary>
    public void Pair(Head head, RowBlock q, KeyValues keys, RowBlock o, Series lse, double scale, TileScores tiles)
    {
        int tq = q.Count, tk = keys.Count;
        if (tq == 0 || tk == 0)
        {
            return; // nothing is read: every gradient stays 0
        }
        RowBlock? dO = head.OptionalRows("do");
        Series? dLse = head.OptionalSeries("dlse");
        var p = new Packed(tq, tk, dk, dv);
        for (int i = 0; i < tq; i++)
        {
            // 1. D_i = rowsum(do_i ∘ o_i) − dlse_i;  2. Q, dO packed.
            p.Lse[i] = lse[i];
            p.D[i] = (dO is null ? 0 : VectorKernels.Dot(dO[i], o[i])) - (dLse?[i] ?? 0);
            q[i].CopyTo(p.Q.AsSpan(i * dk, dk));
            dO?[i].CopyTo(p.DO.AsSpan(i * dv, dv));
        }
        int queryBlocks = CeilingDivide(tq, blockQ), keyBlocks = CeilingDivide(tk, blockK), steps = Math.Max(queryBlocks, keyBlocks);
        int tileSize = Math.Min(blockQ, tq) * Math.Min(blockK, tk);
        for (int block = 0; block < keyBlocks; block++)
        {
            // 2. K row-major, Kᵀ and Vᵀ one tile per key block.
            int j0 = (int)((long)block * blockK), bc = Math.Min(blockK, tk - j0);
            for (int j = j0; j < j0 + bc; j++)
            {
                keys.Key(j).CopyTo(p.K.AsSpan(j * dk, dk));
                Transposed(keys.Key(j), p.KT.AsSpan(j0 * dk, bc * dk), bc, j - j0);
                Transposed(keys.Value(j), p.VT.AsSpan(j0 * dv, bc * dv), bc, j - j0);
            }
        }
        // 5. The keys each query block's rows may reach: its tiles outside them are skipped.
        var reach = new (int First, int End)[queryBlocks];
        for (int block = 0; block < queryBlocks; block++)
        {
            int i0 = (int)((long)block * blockQ), first = int.MaxValue, end = 0;
            for (int i = i0; i < Math.Min(tq, i0 + blockQ); i++)
            {
                var (firstI, endI) = tiles.Window(i);
                if (firstI < endI)
                {
                    (first, end) = (Math.Min(first, firstI), Math.Max(end, endI));
                }
            }
            reach[block] = (first, end);
        }
        // 3–14, one step of the schedule at a time: key block j takes query block (j + step) mod M.
        for (int step = 0; step < steps; step++)
        {
            Parallel.For(0, keyBlocks, () => (_workspaces.TryTake(out var w) ? w : new Workspace()).Fit(tileSize),
                (j, _, w) =>
                {
                    int i = (j + step) % steps;
                    long j0 = (long)j * blockK;
                    if (i < queryBlocks && reach[i].First < Math.Min(tk, j0 + blockK) && j0 < reach[i].End)
                    {
                        Tile(p, tiles, scale, i, j, w);
                    }
                    return w;
                },
                _workspaces.Add);
        }
        // 15–16. Write dQ, dK, dV.
        RowBlock dq = head.Rows("dq");
        KeyValues gradients = KeyValues.GradientsOf(head);
        for (int i = 0; i < tq; i++)
        {
            p.DQ.AsSpan(i * dk, dk).CopyTo(dq[i]);
        }
        for (int j = 0; j < tk; j++)
        {
            p.DK.AsSpan(j * dk, dk).CopyTo(gradients.Key(j));
            p.DV.AsSpan(j * dv, dv).CopyTo(gradients.Value(j));
        }
    }

    /// <summary>Steps 6–14 on the tile of query block i and key block j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Tile(Packed p, TileScores tiles, double scale, int i, int j, Workspace w)
    {
        int i0 = (int)((long)i * blockQ), br = Math.Min(blockQ, p.Tq - i0), j0 = (int)((long)j * blockK), bc = Math.Min(blockK, p.Tk - j0);
        ReadOnlySpan<double> qTile = p.Q.AsSpan(i0 * dk, br * dk), doTile = p.DO.AsSpan(i0 * dv, br * dv);
        Span<double> s = w.S.AsSpan(0, br * bc), dS = w.DS.AsSpan(0, br * bc), t = w.T.AsSpan(0, br * bc);

        // 6–8. S = scale · Q_i K_jᵀ, completed by the form into s_rc (−∞ outside A_r).
        s.Clear();
        DenseMatrix.AddProduct(qTile, br, p.KT.AsSpan(j0 * dk, bc * dk), dk, s);
        VectorKernels.Scale(scale, s);
        Span<double> raw = tiles.ReadsRaw ? w.Raw.AsSpan(0, br * bc) : default;
        if (tiles.ReadsRaw)
        {
            s.CopyTo(raw);
        }
        tiles.Complete(i0, j0, br, bc, s);

        // 9. P = exp(S − lse_r): 0 where S = −∞; a row with no allowed key (lse = −∞) has none.
        for (int r = 0; r < br; r++)
        {
            Span<double> row = s.Slice(r * bc, bc);
            double l = p.Lse[i0 + r];
            if (double.IsNegativeInfinity(l))
            {
                row.Clear();
                continue;
            }
            TensorPrimitives.Subtract(row, l, row);
            TensorPrimitives.Exp(row, row);
        }

        // 10. dV_j += Pᵀ dO_i.
        Transpose(s, br, bc, t);
        DenseMatrix.AddProduct(t, bc, doTile, br, p.DV.AsSpan(j0 * dv, bc * dv));

        // 11. dP = dO_i V_jᵀ.
        dS.Clear();
        DenseMatrix.AddProduct(doTile, br, p.VT.AsSpan(j0 * dv, bc * dv), dv, dS);

        // 12. dS = P ∘ (dP − D_r), then the form's chain rule.
        for (int r = 0; r < br; r++)
        {
            Span<double> row = dS.Slice(r * bc, bc);
            TensorPrimitives.Subtract(row, p.D[i0 + r], row);
            TensorPrimitives.Multiply(row, s.Slice(r * bc, bc), row);
        }
        tiles.Chain(i0, j0, br, bc, dS, raw);
        VectorKernels.Scale(scale, dS);

        // 13. dQ_i += scale · dS K_j.
        DenseMatrix.AddProduct(dS, br, p.K.AsSpan(j0 * dk, bc * dk), bc, p.DQ.AsSpan(i0 * dk, br * dk));

        // 14. dK_j += scale · dSᵀ Q_i.
        Transpose(dS, br, bc, t);
        DenseMatrix.AddProduct(t, bc, qTile, br, p.DK.AsSpan(j0 * dk, bc * dk));
    }

    /// <summary>y [columns x rows] = xᵀ for x [rows x columns], both row-major.</summary>
    private static void Transpose(ReadOnlySpan<double> x, int rows, int columns, Span<double> y)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < columns; c++)
            {
                y[c * rows + r] = x[r * columns + c];
            }
        }
    }

    /// <summary>Column <paramref name="column"/> of a transposed tile [width x <paramref name="columns"/>] ← <paramref name="row"/>.</summary>
    private static void Transposed(ReadOnlySpan<double> row, Span<double> tile, int columns, int column)
    {
        for (int d = 0; d < row.Length; d++)
        {
            tile[d * columns + column] = row[d];
        }
    }

    /// <summary>⌈a / b⌉ for a ≥ 0, b ≥ 1, without overflow for any int b.</summary>
    private static int CeilingDivide(int a, int b) => (int)(((long)a + b - 1) / b);

    /// <summary>One pair's packed rows (step 2) and accumulators (dQ, dK, dV), and L, D per query.</summary>
    private sealed class Packed(int tq, int tk, int dk, int dv)
    {
        public int Tq => tq;
        public int Tk => tk;
        public double[] Q { get; } = new double[(long)tq * dk];
        public double[] DO { get; } = new double[(long)tq * dv];
        public double[] DQ { get; } = new double[(long)tq * dk];
        public double[] Lse { get; } = new double[tq];
        public double[] D { get; } = new double[tq];
        public double[] K { get; } = new double[(long)tk * dk];
        public double[] KT { get; } = new double[(long)tk * dk];
        public double[] VT { get; } = new double[(long)tk * dv];
        public double[] DK { get; } = new double[(long)tk * dk];
        public double[] DV { get; } = new double[(long)tk * dv];
    }

    /// <summary>The buffers of one thread's tiles, grown to the largest tile it meets.</summary>
    private sealed class Workspace
    {
        public double[] S { get; private set; } = [];   // S, then P [Br x Bc]
        public double[] DS { get; private set; } = [];  // dP, then dS [Br x Bc]
        public double[] T { get; private set; } = [];   // Pᵀ, then dSᵀ [Bc x Br]
        public double[] Raw { get; private set; } = []; // scale · Q_i K_jᵀ, for a form's chain rule

        /// <summary>This workspace, with room for a tile of <paramref name="size"/> values.</summary>
        public Workspace Fit(int size)
        {
            if (S.Length < size)
            {
                (S, DS, T, Raw) = (new double[size], new double[size], new double[size], new double[size]);
            }
            return this;
        }
    }
}

/// <summary>What a form brings to FlashAttention-2's backward tiles (<see cref="FlashAttentionBackward"/>): its scores, and the chain rule behind them.</summary>
internal abstract class TileScores
{
    /// <summary>The keys [First, End) query i may read at most (empty as (0, 0)); a tile outside every row's is skipped.</summary>
    public abstract (int First, int End) Window(int i);

    /// <summary>Whether <see cref="Chain"/> reads r = scale · q_i · k_j of the tile.</summary>
    public virtual bool ReadsRaw => false;

    /// <summary>
    /// s ← the scores s_ij of the tile of <paramref name="br"/> queries from i0 and <paramref name="bc"/> keys from j0
    /// (row-major), given s = scale · q_i · k_j: −∞ for a key outside A_i.
    /// </summary>
    public abstract void Complete(int i0, int j0, int br, int bc, Span<double> s);

    /// <summary>
    /// dS = ∂L/∂s of the tile, before it flows into q and k: the form takes the gradients of its other inputs from it,
    /// and turns it into ∂L/∂r in place where s is not r plus a constant (softcap).
    /// </summary>
    public virtual void Chain(int i0, int j0, int br, int bc, Span<double> dS, ReadOnlySpan<double> raw)
    {
    }
}

/// <summary>
/// softmax's scores in the backward tiles (Scores.cs): plain ones are r_ij inside each row's window; any other (softcap,
/// ALiBi, mask) is made key by key, its chain rule taken key by key: dslope per key block (summed in order at the end)
/// and the softcap's 1 − tanh²(r/c).
/// </summary>
internal sealed class SoftmaxTiles(Scores scores, bool plain, int blockK) : TileScores
{
    private readonly double[] _slope = new double[(scores.Tk + blockK - 1) / blockK]; // dslope of each key block

    /// <summary>dslope of the pair: Σ_ij dS_ij · (−|d_i − j|).</summary>
    public double SlopeGradient => _slope.Sum();

    public override (int First, int End) Window(int i) => scores.Window(i);

    public override bool ReadsRaw => scores.Softcap > 0;

    public override void Complete(int i0, int j0, int br, int bc, Span<double> s)
    {
        for (int r = 0; r < br; r++)
        {
            int i = i0 + r;
            Span<double> row = s.Slice(r * bc, bc);
            if (plain)
            {
                var (first, end) = scores.Window(i);
                int lo = Math.Clamp(first, j0, j0 + bc), hi = Math.Clamp(end, lo, j0 + bc);
                row[..(lo - j0)].Fill(double.NegativeInfinity);
                row[(hi - j0)..].Fill(double.NegativeInfinity);
                continue;
            }
            for (int c = 0; c < bc; c++)
            {
                row[c] = scores.IsAllowed(i, j0 + c) ? scores.ScoreOf(i, j0 + c, row[c]) : double.NegativeInfinity;
            }
        }
    }

    public override void Chain(int i0, int j0, int br, int bc, Span<double> dS, ReadOnlySpan<double> raw)
    {
        if (plain)
        {
            return;
        }
        double slope = 0;
        for (int r = 0; r < br; r++)
        {
            for (int c = 0; c < bc; c++)
            {
                int n = r * bc + c;
                if (scores.Slope is not null)
                {
                    slope += dS[n] * scores.SlopeDerivative(i0 + r, j0 + c);
                }
                if (scores.Softcap > 0)
                {
                    dS[n] *= scores.SoftcapDerivative(raw[n]);
                }
            }
        }
        _slope[j0 / blockK] += slope;
    }
}
