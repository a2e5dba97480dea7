using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// One call of the softmax family's kernels as they read it (SoftmaxKernels, FlashAttentionKernels, ForgettingKernels):
/// the sizes, the sequences, a view of every tensor in the layout of the inputs, the score rules, the tile shape, and the
/// index arithmetic, named.
/// <code>
/// q [B,Tq,Hq,K]   k [rows,Hkv,K]   v [rows,Hkv,V]   (k, v, k_cache, v_cache seen as rows of Hkv heads)
/// o [B,Tq,Hq,V]   lse [B,Tq,Hq]    g [B,Tq,Hq] (forgetting's log gates)
/// split-KV: the partial o_p, lse_p of part p in OParts [P,B,Tq,Hq,V] and LseParts [P,B,Tq,Hq], then merged into o, lse
/// </code>
/// Query head h reads key/value head h / (Hq/Hkv) (GQA).
/// </summary>
internal struct AttentionProblem<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    /// <summary>The padded query axis Tq, the heads Hq and Hkv, the widths K (Dk) and V (Dv), the key parts P (1: no split).</summary>
    public int Tq, Hq, Hkv, Dk, Dv, Parts;

    /// <summary>The independent problems: batch entries, varlen sequences, or batch entries of a KV cache.</summary>
    public ArrayView<KeySequence> Sequences;

    /// <summary>The sequence of each query row b·Tq + t, or −1 where none covers it.</summary>
    public ArrayView<int> RowSequence;

    /// <summary>The cache rows of mapped sequences' keys (decode), one sequence after the other.</summary>
    public ArrayView<int> KeyRows;

    /// <summary>The tiled kernels' query blocks, heaviest first.</summary>
    public ArrayView<QueryBlock> Blocks;

    /// <summary>Inputs: q, k, v, and forgetting's log gates g.</summary>
    public ArrayView<Real> Q, K, V, G;

    /// <summary>Outputs o and lse (zeros on entry), and split-KV's partial results.</summary>
    public ArrayView<Real> O, Lse, OParts, LseParts;

    /// <summary>How a score is made and which keys a query may read.</summary>
    public ScoreRules<Real> Scores;

    /// <summary>The tiled kernels' blocking.</summary>
    public TileShape Tile;

    /// <summary>The number of query rows B·Tq·Hq.</summary>
    public readonly long Rows => RowSequence.Length * Hq;

    /// <summary>The key/value head of query head h.</summary>
    public readonly int KvHead(int h) => h / (Hq / Hkv);

    /// <summary>The row (b·Tq + start + i)·Hq + h of query i of <paramref name="seq"/>, head h: of q (·K), o (·V), lse and g.</summary>
    public readonly long QueryRow(KeySequence seq, int i, int h) => ((long)seq.Batch * Tq + seq.QueryStart + i) * Hq + h;

    /// <summary>The row of key j of <paramref name="seq"/> in k and v seen as [rows, Hkv, ·], key/value head <paramref name="hk"/>.</summary>
    public readonly long KeyRow(KeySequence seq, int j, int hk) => ((long)(seq.KeyRows < 0 ? seq.KeyRow0 + j : KeyRows[seq.KeyRows + j])) * Hkv + hk;

    /// <summary>The view of o_i of query row <paramref name="row"/>, in part <paramref name="part"/>'s slot when split.</summary>
    public readonly ArrayView<Real> OutputRow(int part, long row) =>
        Parts > 1 ? OParts.SubView((part * Rows + row) * Dv, Dv) : O.SubView(row * Dv, Dv);

    /// <summary>The index of lse_i of query row <paramref name="row"/> in <see cref="LseOf"/>(part).</summary>
    public readonly long LseIndex(int part, long row) => Parts > 1 ? part * Rows + row : row;

    /// <summary>Where lse goes: <see cref="Lse"/>, or <see cref="LseParts"/> when split.</summary>
    public readonly ArrayView<Real> LseOf() => Parts > 1 ? LseParts : Lse;

    /// <summary>Part p's keys [First, End) of a sequence of <paramref name="tk"/> keys: parts of ⌈Tk/P⌉, the last ones short or empty.</summary>
    public readonly (int First, int End) PartKeys(int tk, int part)
    {
        long size = ((long)tk + Parts - 1) / Parts, first = part * size;
        return ((int)Math.Min(first, tk), (int)Math.Min(first + size, tk));
    }
}

/// <summary>
/// One independent problem: queries [QueryStart, QueryStart + Tq) of batch entry Batch against Tk keys, key j at row
/// KeyRow0 + j of k seen as [rows, Hkv, K] (KeyRows = −1), or at row KeyRows[KeyRows + j] (a KV cache); KeyStart is
/// its keys' column in the mask, Offset its diagonal (query i's own key is i + Offset).
/// </summary>
internal struct KeySequence
{
    public int Batch, QueryStart, Tq, KeyStart, Tk, Offset, KeyRows, KeyRow0;
}

/// <summary>A query block of the tiled kernels: rows First .. First + Br of sequence Sequence.</summary>
internal struct QueryBlock
{
    public int Sequence, First;
}

/// <summary>
/// The blocking of the tiled kernels (FlashAttentionKernels), taken from the group size G and the shared memory of the
/// accelerator: the G threads form a grid of GY rows × GX columns (GX the power of two with GX² ≥ G, GY = G / GX; 16 × 8
/// for 128 threads, 4 × 4 on ILGPU's CPU accelerator), and thread (ty, tx) owns
/// <code>
///   rows      r_a = ty + GY·a            (a &lt; 4) of the query block of Br = 4·GY rows: its m, its share of ℓ, its rows of O;
///   keys      c_b = tx + GX·b            (b &lt; 4) of each key tile of Bc = 4·GX keys: a 4 × 4 block of S in registers;
///   columns   pass·VP + tx + GX·e        (e &lt; 8) of a pass of VP = 8·GX value columns: a 4 × 8 block of O in registers.
/// </code>
/// Shared memory (reals): Q_i [Br × QStride] (all K dims when they fit: resident for the whole block; else chunks of
/// DK dims); a stage shared in turn by a chunk of K_j [Bc × KStride], the rows' partial maxima and sums
/// [Br × RedStride] and a sub-tile of V_j [VK × VP]; P̃ [Br × PStride]. Strides are padded to odd lengths so that
/// the rows a warp reads fall in different banks.
/// </summary>
internal struct TileShape
{
    /// <summary>Head dims per chunk of K (and of Q when not resident); keys per V sub-tile.</summary>
    public const int ChunkDims = 16, SubTileKeys = 8;

    public int GX, GY, Br, Bc, VP, Passes, DK, VK, QResident, QStride, KStride, PStride, RedStride, StageAt, PAt, Length;

    /// <summary>The blocking for <paramref name="groupSize"/> threads, K = <paramref name="dk"/>, V = <paramref name="dv"/>, in at most <paramref name="sharedReals"/> reals.</summary>
    public static TileShape For(int groupSize, int dk, int dv, long sharedReals)
    {
        int gx = 1;
        while (gx * gx < groupSize)
        {
            gx *= 2;
        }
        var tile = new TileShape { GX = gx, GY = Math.Max(1, groupSize / gx), DK = ChunkDims, VK = SubTileKeys };
        tile.Br = 4 * tile.GY;
        tile.Bc = 4 * tile.GX;
        tile.VP = 8 * tile.GX;
        tile.Passes = Math.Max(1, (dv + tile.VP - 1) / tile.VP);
        tile.KStride = Odd(tile.DK);
        tile.PStride = Odd(tile.Bc);
        tile.RedStride = Odd(tile.GX);
        int stage = Math.Max(tile.Bc * tile.KStride, Math.Max(tile.VK * tile.VP, tile.Br * tile.RedStride));
        long resident = (long)tile.Br * Odd(dk) + stage + tile.Br * tile.PStride;
        tile.QResident = resident <= sharedReals ? 1 : 0;
        tile.QStride = tile.QResident != 0 ? Odd(dk) : Odd(tile.DK);
        tile.StageAt = tile.Br * tile.QStride;
        tile.PAt = tile.StageAt + stage;
        tile.Length = tile.PAt + tile.Br * tile.PStride;
        return tile;
    }

    private static int Odd(int n) => n % 2 == 0 ? n + 1 : n;
}
