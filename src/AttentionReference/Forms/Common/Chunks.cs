namespace AttentionReference.Forms.Common;

/// <summary>The chunks [start, end) of a sequence that every chunked algorithm walks.</summary>
public static class Chunks
{
    /// <summary>
    /// [0, C), [C, 2C), … up to <paramref name="length"/> (the last chunk may be shorter). A chunk size past the sequence is
    /// the whole sequence, so the chunk never outgrows the data (and C near int.MaxValue cannot overflow).
    /// </summary>
    public static IEnumerable<(int Start, int End)> Of(int length, int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        size = Math.Min(size, Math.Max(length, 1));
        for (int start = 0; start < length; start += size)
        {
            yield return (start, Math.Min(start + size, length));
        }
    }
}
