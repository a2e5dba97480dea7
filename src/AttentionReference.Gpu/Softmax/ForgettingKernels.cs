using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The kernels of Forms/Softmax/Forgetting.cs, forgetting attention (FoX): causal softmax attention whose score of key j
/// for query i is biased by the log forget gates between them, per sequence, same symbols:
/// <code>
///   D_ij  = Σ_{r=j+1..i} g_r  (D_ii = 0),   s_ij = scale · q_i · k_j + D_ij   (keys j ≤ i of i's sequence)
///   o_i   = Σ_j exp(s_ij − m_i) v_j / Σ_j exp(s_ij − m_i),   lse_i = m_i + ln Σ_j exp(s_ij − m_i)
///   naive   one group per (query row, head), as softmax's SoftmaxKernels.Rows, its key tiles from the diagonal
///           leftwards: thread 0 carries the running sum D_i,j−1 = D_ij + g_j through each tile into shared memory
///           (the reference's order, so the same D_ij to the bit), then every thread scores its key        Naive
///   tiled   softmax's tiled engine (FlashAttentionKernels) with <see cref="ForgettingTileScores{Real}"/>: the key
///           tiles from the diagonal leftwards, the bias split at the query block's first row q0 into
///           A_i = Σ_{r=q0+1..i} g_r and E_j = Σ_{r=j+1..q0} g_r (D_ij = A_i + E_j for j ≤ q0, both sums of same-sign
///           terms, never a difference), and D_ij summed directly from the diagonal for q0 &lt; j ≤ i            Tiled
/// </code>
/// Nothing is a difference of cumulative sums, so strong gates (g = −20 per step) stay exact.
/// </summary>
internal static class ForgettingKernels
{
    /// <summary>The definition on one query row and head (one group; shared memory: one real per thread).</summary>
    public static void Naive<Real>(AttentionProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long row = Grid.IdxX, bt = row / x.Hq;
        int h = (int)(row % x.Hq), n = x.RowSequence[bt];
        if (n < 0)
        {
            return;
        }
        KeySequence seq = x.Sequences[n];
        int i = (int)(bt % x.Tq) - seq.QueryStart, hk = x.KvHead(h), t = Group.IdxX, threads = Group.DimX;
        ArrayView<Real> shared = SharedMemory.GetDynamic<Real>(), o = x.O.SubView(row * x.Dv, x.Dv);
        long q = row * x.Dk;

        // m_i = max_{j≤i} s_ij, the tiles [j0, j1) from the diagonal leftwards.
        Real m = Real.NegativeInfinity, carry = Real.Zero; // carry: D_{i,j1−1}, thread 0's running sum
        for (int j1 = i + 1; j1 > 0; j1 -= threads)
        {
            int j0 = Math.Max(0, j1 - threads);
            carry = Biases(x, seq, h, j0, j1, carry, shared);
            if (t < j1 - j0)
            {
                m = SoftmaxKernels.MaxPropagatingNaN(m, Score(x, seq, q, hk, j0 + t, shared[t]));
            }
        }
        Group.Barrier();
        shared[t] = m;
        Group.Barrier();
        m = Real.NegativeInfinity;
        for (int u = 0; u < threads; u++)
        {
            m = SoftmaxKernels.MaxPropagatingNaN(m, shared[u]);
        }
        if (Real.IsNegativeInfinity(m))
        {
            if (t == 0)
            {
                x.Lse[row] = Real.NegativeInfinity; // every score −∞ (SoftmaxRow.Attend: l = 0): o_i = 0, lse_i = −∞
            }
            return;
        }

        // l_i and o_i = Σ_j exp(s_ij − m_i) v_j, tile by tile; then o_i / l_i and lse_i.
        Real l = Real.Zero;
        carry = Real.Zero;
        for (int j1 = i + 1; j1 > 0; j1 -= threads)
        {
            int j0 = Math.Max(0, j1 - threads), keys = j1 - j0;
            carry = Biases(x, seq, h, j0, j1, carry, shared);
            Real p = t < keys ? GpuMath.Exp(Score(x, seq, q, hk, j0 + t, shared[t]) - m) : Real.Zero;
            Group.Barrier(); // every D of the tile is read
            shared[t] = p;
            Group.Barrier();
            for (int u = 0; u < keys; u++)
            {
                l += shared[u];
            }
            for (int c = t; c < x.Dv; c += threads)
            {
                Real oc = o[c];
                for (int u = 0; u < keys; u++)
                {
                    oc += shared[u] * x.V[x.KeyRow(seq, j0 + u, hk) * x.Dv + c];
                }
                o[c] = oc;
            }
        }
        Real inverse = Real.One / l;
        for (int c = t; c < x.Dv; c += threads)
        {
            o[c] *= inverse;
        }
        if (t == 0)
        {
            x.Lse[row] = m + GpuMath.Log(l);
        }
    }

    /// <summary>The tiled variant: softmax's tiled engine under forgetting's rules (one group per query block and head).</summary>
    public static void Tiled<Real>(AttentionProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        FlashAttentionKernels.QueryBlock(x, new ForgettingTileScores<Real>());

    /// <summary>
    /// D_ij of the tile's keys j1 − 1 down to j0 into shared memory, by thread 0 in the reference's order
    /// (D_i,j−1 = D_ij + g_j, from <paramref name="carry"/> = D_{i,j1−1}); returns D_{i,j0−1} for the next tile.
    /// </summary>
    private static Real Biases<Real>(AttentionProblem<Real> x, KeySequence seq, int h, int j0, int j1, Real carry, ArrayView<Real> shared)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Group.Barrier(); // the previous tile is read
        if (Group.IdxX == 0)
        {
            for (int j = j1 - 1; j >= j0; j--)
            {
                shared[j - j0] = carry;
                carry += x.G[x.QueryRow(seq, j, h)];
            }
        }
        Group.Barrier();
        return carry;
    }

    /// <summary>s_ij = scale · q_i · k_j + D_ij (Scores.Score, then the bias, as the reference adds them).</summary>
    private static Real Score<Real>(AttentionProblem<Real> x, KeySequence seq, long q, int hk, int j, Real bias)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long k = x.KeyRow(seq, j, hk) * x.Dk;
        Real dot = Real.Zero;
        for (int d = 0; d < x.Dk; d++)
        {
            dot += x.Q[q + d] * x.K[k + d];
        }
        return x.Scores.Score(dot, Real.Zero, Real.Zero, Real.Zero) + bias;
    }
}

/// <summary>
/// Forgetting's rules for the tiled engine: causal within the sequence, the tiles from the diagonal leftwards, and the
/// bias D_ij split at the block's first query q0 as Forgetting.Tiled splits it, each sum in the reference's order.
/// </summary>
internal struct ForgettingTileScores<Real> : ITileRules<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    private int _q0, _at;         // the block's first query; the position E is carried to
    private Real _carry;          // E_at = Σ_{r=at+1..q0} g_r
    private Four<Real> _a, _e;    // A_i of the thread's rows; E_j of its keys in this tile

    /// <inheritdoc/>
    public readonly bool RightToLeft => true;

    /// <inheritdoc/>
    public readonly (int First, int End) Keys(AttentionProblem<Real> x, KeySequence seq, int first, int last) => (0, last + 1);

    /// <inheritdoc/>
    public void BeginBlock(AttentionProblem<Real> x, KeySequence seq, int h, int i0, int row0, int step)
    {
        (_q0, _at, _carry) = (i0, i0, Real.Zero);
        // A_i = Σ_{r=q0+1..i} g_r, summed upwards from q0 as the reference does (rows past the sequence: unused).
        Real sum = Real.Zero;
        int r = i0;
        for (int a = 0; a < 4; a++)
        {
            for (int target = Math.Min(row0 + step * a, seq.Tq - 1); r < target; r++)
            {
                sum += x.G[x.QueryRow(seq, r + 1, h)];
            }
            _a = _a.With(a, sum);
        }
    }

    /// <inheritdoc/>
    public void BeginTile(AttentionProblem<Real> x, KeySequence seq, int h, int j0, int j1, int key0, int step)
    {
        // E_j for the thread's keys j ≤ q0, from the largest down: E_{at−1} = E_at + g_at, carried across the tiles.
        for (int b = 3; b >= 0; b--)
        {
            int j = key0 + step * b;
            if (j < j1 && j <= _q0)
            {
                for (; _at > j; _at--)
                {
                    _carry += x.G[x.QueryRow(seq, _at, h)];
                }
                _e = _e.With(b, _carry);
            }
        }
    }

    /// <inheritdoc/>
    public readonly (Real Score, bool Allowed) Score(AttentionProblem<Real> x, KeySequence seq, int h, Real dot, int a, int b, int i, int j)
    {
        if (j > i)
        {
            return (Real.NegativeInfinity, false);
        }
        Real s = x.Scores.Score(dot, Real.Zero, Real.Zero, Real.Zero);
        if (j <= _q0)
        {
            return (s + _a[a] + _e[b], true); // D_ij = A_i + E_j
        }
        Real inside = Real.Zero; // Σ_{r=j+1..i} g_r from the diagonal leftwards
        for (int r = i; r > j; r--)
        {
            inside += x.G[x.QueryRow(seq, r, h)];
        }
        return (s + inside, true);
    }
}
