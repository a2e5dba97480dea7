using System.Runtime.InteropServices;

namespace AttentionReference.Forms.Common;

/// <summary>
/// <see cref="Count"/> rows of <see cref="Width"/> values in one array, row t at [offset + t·stride, … + width): one
/// (sequence, head) pair's q_t, k_t, v_t or o_t seen in place inside a [B,T,H,D] tensor (stride H·D, see
/// <see cref="Head.Rows"/>), or rows of a block of its own (<see cref="Zeros"/>, <see cref="AlignedZeros"/>). Rows are
/// seen in place rather than copied so that a form reads its inputs without allocating per step.
/// </summary>
public sealed class RowBlock
{
    private readonly double[] _data;
    private readonly int _offset, _stride;

    /// <summary>Rows t = 0 … <paramref name="count"/> − 1 of <paramref name="width"/> values at <paramref name="offset"/> + t · <paramref name="stride"/>.</summary>
    public RowBlock(double[] data, int offset, int stride, int count, int width)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (count < 0 || width < 0 || offset < 0 || stride < width
            || (count > 0 && offset + (long)(count - 1) * stride + width > data.Length))
        {
            throw new ArgumentException($"{count} rows of {width} at offset {offset}, stride {stride} do not fit in {data.Length} values");
        }
        (_data, _offset, _stride, Count, Width) = (data, offset, stride, count, width);
    }

    /// <summary>
    /// <paramref name="count"/> rows of <paramref name="width"/> zeros, packed, in an array that never moves (the pinned
    /// object heap) with row 0 on a 64-byte boundary, and so every row where the width is a multiple of 8: a state or a
    /// workspace that vector loops load and store in whole cache lines. A .NET array's data sits 16 bytes past an
    /// 8-byte-aligned object, so an ordinary array lands on a boundary only by chance, and how fast a loop over it runs
    /// varies with where it fell (bench/results).
    /// </summary>
    public static RowBlock AlignedZeros(int count, int width)
    {
        const int lineDoubles = 64 / sizeof(double);
        double[] data = GC.AllocateArray<double>(checked(count * width + lineDoubles - 1), pinned: true);
        GCHandle handle = GCHandle.Alloc(data, GCHandleType.Pinned);
        long address = handle.AddrOfPinnedObject();
        handle.Free(); // an array on the pinned object heap stays where it is without the handle
        int offset = (int)((64 - address % 64) % 64 / sizeof(double));
        return new RowBlock(data, offset, width, count, width);
    }

    /// <summary>Every row at once, row after row: only for packed rows (stride = width).</summary>
    public Span<double> Contiguous()
    {
        if (_stride != Width)
        {
            throw new InvalidOperationException("the rows are not packed one after another");
        }
        return _data.AsSpan(_offset, Count * Width);
    }

    /// <summary><paramref name="count"/> rows of <paramref name="width"/> zeros, packed.</summary>
    public static RowBlock Zeros(int count, int width) => new(new double[checked(count * width)], 0, width, count, width);

    /// <summary>The number of rows.</summary>
    public int Count { get; }

    /// <summary>The length of every row.</summary>
    public int Width { get; }

    /// <summary>Rows of one value seen as a <see cref="Common.Series"/> (value t = row t).</summary>
    public Series AsSeries() => Width == 1
        ? new Series(_data, _offset, _stride, Count)
        : throw new InvalidOperationException($"rows of {Width} values are not a series");

    /// <summary>Row <paramref name="t"/>.</summary>
    public Span<double> this[int t] => _data.AsSpan(_offset + t * _stride, Width);
}
