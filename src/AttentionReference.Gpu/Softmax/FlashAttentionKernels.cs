using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The kernel of Forms/Softmax/FlashAttention.cs: FlashAttention-2's forward pass (Dao 2023, Algorithm 1), softmax's
/// tiled variant and MLA's attention, with the score rules of Scores.cs; and the same engine under forgetting's
/// rules (ForgettingKernels.Tiled). Same steps, same symbols:
/// <code>
///   1.     K, V in blocks K_j, V_j of Bc keys (read through shared memory, a tile at a time)
///   3.     one group per query block Q_i of Br rows, head h and pass of value columns
///   4–5.     load Q_i (resident while it fits); m = −∞, ℓ = 0, O = 0
///   6.       for each key block j some row's window reaches, in order:
///   7–8.       S = Q_i K_jᵀ, then the rules: s_rc for c ∈ A_r, −∞ elsewhere
///   9.         m_new = max(m, rowmax S),  P̃ = exp(S − m_new),  ℓ ← exp(m − m_new) · ℓ + rowsum P̃
///   10.        O ← exp(m − m_new) · O + P̃ V_j,  m ← m_new
///   12–15.   o = O / ℓ,  lse = m + ln ℓ                      (o = 0, lse = −∞ when ℓ = 0: no allowed key)
/// </code>
/// Blocking (<see cref="TileShape"/>): thread (ty, tx) keeps a 4 × 4 block of S (rows r_a = ty + GY·a, keys
/// c_b = tx + GX·b) and a 4 × 8 block of O (value columns tx + GX·e) in registers. Step 7 runs over chunks of 16 head
/// dims: each chunk of K_j (and of Q_i when it is not resident) goes through shared memory, and every dim costs a
/// thread 8 shared loads for 16 FMAs. Step 9 takes each row's max over the GX threads of the row through shared
/// memory; each thread keeps its partial ℓ (rescaled with the row) and the partials are added at the end. Step 10 runs
/// over sub-tiles of 8 keys of V_j through shared memory: 12 loads for 32 FMAs per key. A row whose shift would be
/// −∞ − (−∞) (nothing allowed yet) takes shift 0, FA2's Check_inf, so it stays at m = −∞, ℓ = 0, O = 0.
/// NaN and ∞: the max lets a NaN win, as the reference's; a key outside A_i gets P̃ = −0, which adds nothing to a
/// finite v; a sub-tile of V holding a NaN or ±∞ takes a slower loop that reads only the keys in A_i (an allowed key
/// whose weight underflows to 0 still multiplies its v, as in the reference).
/// </summary>
internal static class FlashAttentionKernels
{
    /// <summary>Steps 3 to 15 for one query block, head and pass of value columns, under Scores.cs's rules.</summary>
    public static void Forward<Real>(AttentionProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        QueryBlock(x, new SoftmaxTileScores<Real>());

    /// <summary>
    /// Steps 3 to 15 for one query block (one group; shared memory: <see cref="TileShape.Length"/> reals) under the
    /// rules <paramref name="rules"/>, which say which keys a block reaches, in which order its tiles go, and what each
    /// score is.
    /// </summary>
    internal static void QueryBlock<Real, TRules>(AttentionProblem<Real> x, TRules rules)
        where Real : unmanaged, IFloatingPointIeee754<Real> where TRules : struct, ITileRules<Real>
    {
        TileShape tile = x.Tile;
        int group = Grid.IdxX;
        int h = group % x.Hq, pass = group / x.Hq % tile.Passes;
        QueryBlock block = x.Blocks[group / x.Hq / tile.Passes];
        KeySequence seq = x.Sequences[block.Sequence];
        int i0 = block.First, last = Math.Min(i0 + tile.Br, seq.Tq) - 1, hk = x.KvHead(h);
        int t = Group.IdxX, tx = t % tile.GX, ty = t / tile.GX;
        bool active = ty < tile.GY; // a group size that is no GX·GY leaves its last threads idle (at the barriers only)
        ArrayView<Real> shared = SharedMemory.GetDynamic<Real>();
        ArrayView<Real> qs = shared.SubView(0, tile.StageAt), stage = shared.SubView(tile.StageAt, tile.PAt - tile.StageAt);
        ArrayView<Real> p = shared.SubView(tile.PAt, tile.Length - tile.PAt);

        // 4–5. Load Q_i (when resident: all K dims, once); m = −∞, ℓ = 0, O = 0.
        if (tile.QResident != 0)
        {
            StageQ(x, tile, seq, h, i0, last, 0, x.Dk, qs);
        }
        Four<Real> m = Four<Real>.Fill(Real.NegativeInfinity), l = default;
        Block<Real> oLow = default, oHigh = default; // value columns tx + GX·e for e < 4 and e ≥ 4
        rules.BeginBlock(x, seq, h, i0, i0 + ty, tile.GY);

        // 6. The key blocks the rows reach, in the rules' order.
        var (lo, hi) = rules.Keys(x, seq, i0, last);
        int blocks = lo < hi ? (hi - lo + tile.Bc - 1) / tile.Bc : 0;
        for (int n = 0; n < blocks; n++)
        {
            int j0 = rules.RightToLeft ? Math.Max(lo, hi - (n + 1) * tile.Bc) : lo + n * tile.Bc;
            int j1 = rules.RightToLeft ? hi - n * tile.Bc : Math.Min(hi, j0 + tile.Bc);

            // 7. S = Q_i K_jᵀ, a chunk of head dims at a time.
            Block<Real> s = default;
            for (int d0 = 0; d0 < x.Dk; d0 += tile.DK)
            {
                int width = Math.Min(tile.DK, x.Dk - d0);
                Group.Barrier(); // the stage is no longer read
                StageK(x, tile, seq, hk, j0, j1, d0, width, stage);
                if (tile.QResident == 0)
                {
                    StageQ(x, tile, seq, h, i0, last, d0, width, qs);
                }
                Group.Barrier();
                if (active)
                {
                    int qAt = ty * tile.QStride + (tile.QResident != 0 ? d0 : 0), kAt = tx * tile.KStride;
                    int qStep = tile.GY * tile.QStride, kStep = tile.GX * tile.KStride;
                    for (int d = 0; d < width; d++)
                    {
                        s = s.AddOuter(Four<Real>.Load(qs, qAt + d, qStep), Four<Real>.Load(stage, kAt + d, kStep));
                    }
                }
            }

            // 8. The rules: s_rc for c ∈ A_r, −∞ elsewhere (bit 4a + b of allowed: key c_b is in A of row r_a).
            rules.BeginTile(x, seq, h, j0, j1, j0 + tx, tile.GX);
            int allowed = 0;
            Four<Real> rowMax = Four<Real>.Fill(Real.NegativeInfinity);
            for (int a = 0; a < 4; a++)
            {
                int i = i0 + ty + tile.GY * a;
                for (int b = 0; b < 4; b++)
                {
                    int j = j0 + tx + tile.GX * b;
                    Real score = Real.NegativeInfinity;
                    if (active && i <= last && j < j1)
                    {
                        var (value, kept) = rules.Score(x, seq, h, s[a, b], a, b, i, j);
                        if (kept)
                        {
                            score = value;
                            allowed |= 1 << (4 * a + b);
                        }
                    }
                    s = s.With(a, b, score);
                    rowMax = rowMax.With(a, SoftmaxKernels.MaxPropagatingNaN(rowMax[a], score));
                }
            }

            // 9. m_new over the row's GX threads, P̃ = exp(S − m_new) (−0 outside A_r), ℓ and O rescaled.
            Group.Barrier(); // the last chunk of K_j is read
            if (active)
            {
                for (int a = 0; a < 4; a++)
                {
                    stage[(ty + tile.GY * a) * tile.RedStride + tx] = rowMax[a];
                }
            }
            Group.Barrier();
            if (active)
            {
                Four<Real> alpha = default;
                for (int a = 0; a < 4; a++)
                {
                    int r = ty + tile.GY * a;
                    Real mNew = m[a];
                    for (int u = 0; u < tile.GX; u++)
                    {
                        mNew = SoftmaxKernels.MaxPropagatingNaN(mNew, stage[r * tile.RedStride + u]);
                    }
                    Real shift = Real.IsNegativeInfinity(mNew) ? Real.Zero : mNew; // FA2's Check_inf
                    alpha = alpha.With(a, m[a] == mNew ? Real.One : GpuMath.Exp(m[a] - shift));
                    Real rowSum = Real.Zero;
                    for (int b = 0; b < 4; b++)
                    {
                        bool kept = (allowed & (1 << (4 * a + b))) != 0;
                        Real weight = kept ? GpuMath.Exp(s[a, b] - shift) : Real.NegativeZero;
                        p[r * tile.PStride + tx + tile.GX * b] = weight;
                        if (kept)
                        {
                            rowSum += weight;
                        }
                    }
                    l = l.With(a, alpha[a] * l[a] + rowSum);
                    m = m.With(a, mNew);
                }
                oLow = oLow.ScaleRows(alpha);
                oHigh = oHigh.ScaleRows(alpha);
            }

            // 10. O += P̃ V_j, a sub-tile of VK keys of V_j at a time.
            for (int k0 = 0; k0 < j1 - j0; k0 += tile.VK)
            {
                int keys = Math.Min(tile.VK, j1 - j0 - k0);
                Group.Barrier(); // the stage is no longer read; P̃ is written
                bool special = Group.BarrierOr(StageV(x, tile, seq, hk, pass, j0 + k0, keys, stage));
                if (!active)
                {
                    continue;
                }
                int pAt = ty * tile.PStride + k0, pStep = tile.GY * tile.PStride;
                if (!special)
                {
                    for (int kk = 0; kk < keys; kk++)
                    {
                        Four<Real> weights = Four<Real>.Load(p, pAt + kk, pStep);
                        oLow = oLow.AddOuter(weights, Four<Real>.Load(stage, kk * tile.VP + tx, tile.GX));
                        oHigh = oHigh.AddOuter(weights, Four<Real>.Load(stage, kk * tile.VP + tx + 4 * tile.GX, tile.GX));
                    }
                }
                else
                {
                    // A NaN or ±∞ in this sub-tile of V: only the keys in A_r (P̃ not −0) may read their v.
                    for (int kk = 0; kk < keys; kk++)
                    {
                        Four<Real> vLow = Four<Real>.Load(stage, kk * tile.VP + tx, tile.GX);
                        Four<Real> vHigh = Four<Real>.Load(stage, kk * tile.VP + tx + 4 * tile.GX, tile.GX);
                        for (int a = 0; a < 4; a++)
                        {
                            Real weight = p[pAt + kk + a * pStep];
                            if (!(weight == Real.Zero && Real.IsNegative(weight)))
                            {
                                oLow = oLow.WithRow(a, oLow.Row(a).AddScaled(weight, vLow));
                                oHigh = oHigh.WithRow(a, oHigh.Row(a).AddScaled(weight, vHigh));
                            }
                        }
                    }
                }
            }
        }

        // 12–15. ℓ = the sum of the row's partials; o = O / ℓ (times 1 / ℓ, as the reference), lse = m + ln ℓ.
        Group.Barrier();
        if (active)
        {
            for (int a = 0; a < 4; a++)
            {
                stage[(ty + tile.GY * a) * tile.RedStride + tx] = l[a];
            }
        }
        Group.Barrier();
        if (!active)
        {
            return;
        }
        for (int a = 0; a < 4; a++)
        {
            int i = i0 + ty + tile.GY * a;
            if (i > last)
            {
                continue;
            }
            Real sum = Real.Zero;
            for (int u = 0; u < tile.GX; u++)
            {
                sum += stage[(ty + tile.GY * a) * tile.RedStride + u];
            }
            long row = x.QueryRow(seq, i, h);
            Real inverse = sum == Real.Zero ? Real.Zero : Real.One / sum;
            Four<Real> low = oLow.Row(a), high = oHigh.Row(a);
            for (int e = 0; e < 8; e++)
            {
                int c = pass * tile.VP + tx + tile.GX * e;
                if (c < x.Dv)
                {
                    x.O[row * x.Dv + c] = sum == Real.Zero ? Real.Zero : (e < 4 ? low[e] : high[e - 4]) * inverse;
                }
            }
            if (tx == 0 && pass == 0)
            {
                x.Lse[row] = sum == Real.Zero ? Real.NegativeInfinity : m[a] + GpuMath.Log(sum);
            }
        }
    }

    /// <summary>Q_i's dims [d0, d0 + width) into shared memory, rows past the block's last query as zeros.</summary>
    private static void StageQ<Real>(AttentionProblem<Real> x, TileShape tile, KeySequence seq, int h, int i0, int last, int d0, int width, ArrayView<Real> qs)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int span = tile.QResident != 0 ? x.Dk : tile.DK;
        for (int e = Group.IdxX; e < tile.Br * span; e += Group.DimX)
        {
            int r = e / span, d = e % span;
            qs[r * tile.QStride + d] = i0 + r <= last && d < width ? x.Q[x.QueryRow(seq, i0 + r, h) * x.Dk + d0 + d] : Real.Zero;
        }
    }

    /// <summary>Dims [d0, d0 + width) of K_j's keys [j0, j1) into the stage, keys past j1 and dims past width as zeros.</summary>
    private static void StageK<Real>(AttentionProblem<Real> x, TileShape tile, KeySequence seq, int hk, int j0, int j1, int d0, int width, ArrayView<Real> stage)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        for (int e = Group.IdxX; e < tile.Bc * tile.DK; e += Group.DimX)
        {
            int c = e / tile.DK, d = e % tile.DK;
            stage[c * tile.KStride + d] = j0 + c < j1 && d < width ? x.K[x.KeyRow(seq, j0 + c, hk) * x.Dk + d0 + d] : Real.Zero;
        }
    }

    /// <summary>
    /// Value columns [pass·VP, pass·VP + VP) of <paramref name="keys"/> keys of V_j from key <paramref name="j"/> into
    /// the stage (zeros past them and past V); whether this thread loaded a NaN or ±∞.
    /// </summary>
    private static bool StageV<Real>(AttentionProblem<Real> x, TileShape tile, KeySequence seq, int hk, int pass, int j, int keys, ArrayView<Real> stage)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        bool special = false;
        for (int e = Group.IdxX; e < tile.VK * tile.VP; e += Group.DimX)
        {
            int kk = e / tile.VP, c = pass * tile.VP + e % tile.VP;
            Real v = kk < keys && c < x.Dv ? x.V[x.KeyRow(seq, j + kk, hk) * x.Dv + c] : Real.Zero;
            stage[e] = v;
            special |= !Real.IsFinite(v);
        }
        return special;
    }
}

/// <summary>
/// What the tiled engine asks of a form's scores (<see cref="FlashAttentionKernels.QueryBlock"/>): the keys a query
/// block reaches and the order of its tiles, what a thread prepares per block and per tile, and each score. A struct
/// type argument, so that ILGPU compiles each form's engine with its rules inlined.
/// </summary>
internal interface ITileRules<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    /// <summary>Whether the key tiles are visited from the last leftwards (else from the first rightwards).</summary>
    bool RightToLeft { get; }

    /// <summary>The keys [First, End) that queries <paramref name="first"/> to <paramref name="last"/> of the sequence reach (empty: First ≥ End).</summary>
    (int First, int End) Keys(AttentionProblem<Real> x, KeySequence seq, int first, int last);

    /// <summary>Once per query block, for the thread's rows row0 + step·a (a &lt; 4) of the block starting at query i0.</summary>
    void BeginBlock(AttentionProblem<Real> x, KeySequence seq, int h, int i0, int row0, int step);

    /// <summary>Once per key tile [j0, j1), for the thread's keys key0 + step·b (b &lt; 4).</summary>
    void BeginTile(AttentionProblem<Real> x, KeySequence seq, int h, int j0, int j1, int key0, int step);

    /// <summary>s_ij from q_i · k_j (the thread's row slot a and key slot b), and whether key j is in A_i.</summary>
    (Real Score, bool Allowed) Score(AttentionProblem<Real> x, KeySequence seq, int h, Real dot, int a, int b, int i, int j);
}

/// <summary>Scores.cs's rules for the tiled engine: the window, the mask (the pattern, if any), softcap and ALiBi.</summary>
internal struct SoftmaxTileScores<Real> : ITileRules<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    private Real _slope;
    private Four<Real> _rowAt, _keyAt; // ALiBi: the thread's rows' diagonals d_i and its keys j, as reals

    /// <inheritdoc/>
    public readonly bool RightToLeft => false;

    /// <inheritdoc/>
    public readonly (int First, int End) Keys(AttentionProblem<Real> x, KeySequence seq, int first, int last) => x.Scores.Reach(seq, first, last);

    /// <inheritdoc/>
    public void BeginBlock(AttentionProblem<Real> x, KeySequence seq, int h, int i0, int row0, int step)
    {
        if (x.Scores.HasSlopes)
        {
            _slope = x.Scores.Slope(seq, h);
            for (int a = 0; a < 4; a++)
            {
                _rowAt = _rowAt.With(a, ScoreRules<Real>.Whole(row0 + step * a + seq.Offset));
            }
        }
    }

    /// <inheritdoc/>
    public void BeginTile(AttentionProblem<Real> x, KeySequence seq, int h, int j0, int j1, int key0, int step)
    {
        if (x.Scores.HasSlopes)
        {
            for (int b = 0; b < 4; b++)
            {
                _keyAt = _keyAt.With(b, ScoreRules<Real>.Whole(key0 + step * b));
            }
        }
    }

    /// <inheritdoc/>
    public readonly (Real Score, bool Allowed) Score(AttentionProblem<Real> x, KeySequence seq, int h, Real dot, int a, int b, int i, int j)
    {
        if (!x.Scores.InWindow(seq, i, j) || !x.Scores.Allows(seq, h, i, j))
        {
            return (Real.NegativeInfinity, false);
        }
        Real bias = x.Scores.Bias(seq, h, i, j);
        return Real.IsNegativeInfinity(bias)
            ? (Real.NegativeInfinity, false)
            : (x.Scores.Score(dot, _slope, Real.Abs(_rowAt[a] - _keyAt[b]), bias), true);
    }
}
