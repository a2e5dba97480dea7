using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AttentionReference.Numerics;

/// <summary>The K rows of a K × V recurrent state, however it is stored.</summary>
public interface IStateRows
{
    /// <summary>K, the number of rows.</summary>
    int Count { get; }

    /// <summary>V, the length of every row.</summary>
    int Width { get; }

    /// <summary>Row <paramref name="a"/>.</summary>
    Span<double> this[int a] { get; }
}

/// <summary>A state kept as one array per row, S[a][c], every row <paramref name="width"/> long (checked where it is used).</summary>
public readonly struct JaggedRows(double[][] rows, int width) : IStateRows
{
    /// <inheritdoc/>
    public int Count => rows.Length;

    /// <inheritdoc/>
    public int Width => width;

    /// <inheritdoc/>
    public Span<double> this[int a] => rows[a];
}

/// <summary>
/// A state kept row-major in one span, S[a, c] = data[a·width + c] (the row count is given, not derived from the
/// span, so that a K × 0 state still has its K rows).
/// </summary>
public readonly ref struct FlatRows
#pragma warning disable CA1066 // a ref struct view, never compared
    : IStateRows
#pragma warning restore CA1066
{
    private readonly Span<double> _data;

    /// <summary>A view of <paramref name="data"/>, which must hold exactly <paramref name="rows"/> · <paramref name="width"/> values.</summary>
    public FlatRows(Span<double> data, int rows, int width)
    {
        if (rows < 0 || width < 0 || data.Length != (long)rows * width)
        {
            throw new ArgumentException($"a {rows} x {width} state needs {(long)rows * width} values; found {data.Length}");
        }
        _data = data;
        Count = rows;
        Width = width;
    }

    /// <inheritdoc/>
    public int Count { get; }

    /// <inheritdoc/>
    public int Width { get; }

    /// <inheritdoc/>
    public Span<double> this[int a] => _data.Slice(a * Width, Width);
}

/// <summary>
/// One step of a K × V recurrent state, decayed, written and read:
/// <code>
///   S_t[a, :] = α_a S_{t−1}[a, :] + κ_a x_t        (a per-row decay, then a rank-one write κ x_tᵀ)
///   y_t      += Σ_a ω_a S_t[a, :]                  (a read-out such as o_t = S_tᵀ q_t)
/// </code>
/// The recurrent forms spend their time here: the state is K·V values per head (128 KiB at K = V = 128), the rest of a
/// step is O(K + V). Row by row, as the equations read, each step would load and store y once per row; here y and x are
/// held in registers for a block of columns while the rows stream past, so each state element is loaded once and
/// stored once per step, the floor a recurrence cannot go below (bench/README.md, "× floor").
/// Every element is still computed in the equations' order: s = fma(κ_a, x_c, α_a·S[a, c]), then
/// y_c = fma(ω_a, s, y_c) for a = 0, 1, …, K − 1; Vector512 (where accelerated), Vector256 and scalar code compute the
/// same roundings, so the result depends neither on the vector width nor on the thread count.
/// </summary>
public static class StateStep
{
    /// <summary>S[a, :] ← α_a S[a, :] + κ_a x, then y ← y + Σ_a ω_a S[a, :], one pass over S.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DecayWriteAndRead<TRows>(TRows S, ReadOnlySpan<double> α, ReadOnlySpan<double> κ, ReadOnlySpan<double> x,
        ReadOnlySpan<double> ω, Span<double> y)
        where TRows : IStateRows, allows ref struct
    {
        Check(S, α, ω, y);
        if (κ.Length != S.Count || x.Length != S.Width)
        {
            throw new ArgumentException($"κ must have the state's {S.Count} rows and x its {S.Width} columns; found {κ.Length}, {x.Length}");
        }
        int width = S.Width, c = 0;
        if (S.Count == 0 || width == 0)
        {
            return;
        }
        ref double xs = ref MemoryMarshal.GetReference(x);
        ref double ys = ref MemoryMarshal.GetReference(y);
        if (Vector512.IsHardwareAccelerated)
        {
            // Four vectors of columns at a time: x and y in eight registers while the rows stream past.
            for (; c + 4 * Vector512<double>.Count <= width; c += 4 * Vector512<double>.Count)
            {
                nuint c0 = (nuint)c, c1 = c0 + 8, c2 = c0 + 16, c3 = c0 + 24;
                Vector512<double> x0 = Vector512.LoadUnsafe(ref xs, c0), x1 = Vector512.LoadUnsafe(ref xs, c1),
                    x2 = Vector512.LoadUnsafe(ref xs, c2), x3 = Vector512.LoadUnsafe(ref xs, c3);
                Vector512<double> y0 = Vector512.LoadUnsafe(ref ys, c0), y1 = Vector512.LoadUnsafe(ref ys, c1),
                    y2 = Vector512.LoadUnsafe(ref ys, c2), y3 = Vector512.LoadUnsafe(ref ys, c3);
                for (int a = 0; a < S.Count; a++)
                {
                    ref double r = ref MemoryMarshal.GetReference(S[a]);
                    Vector512<double> αa = Vector512.Create(α[a]), κa = Vector512.Create(κ[a]), ωa = Vector512.Create(ω[a]);
                    y0 = Write512(ref r, c0, αa, κa, x0, ωa, y0);
                    y1 = Write512(ref r, c1, αa, κa, x1, ωa, y1);
                    y2 = Write512(ref r, c2, αa, κa, x2, ωa, y2);
                    y3 = Write512(ref r, c3, αa, κa, x3, ωa, y3);
                }
                y0.StoreUnsafe(ref ys, c0);
                y1.StoreUnsafe(ref ys, c1);
                y2.StoreUnsafe(ref ys, c2);
                y3.StoreUnsafe(ref ys, c3);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            // Two vectors at a time: with x, y and the three broadcasts that is nine of AVX2's sixteen registers.
            for (; c + 2 * Vector256<double>.Count <= width; c += 2 * Vector256<double>.Count)
            {
                nuint c0 = (nuint)c, c1 = c0 + 4;
                Vector256<double> x0 = Vector256.LoadUnsafe(ref xs, c0), x1 = Vector256.LoadUnsafe(ref xs, c1);
                Vector256<double> y0 = Vector256.LoadUnsafe(ref ys, c0), y1 = Vector256.LoadUnsafe(ref ys, c1);
                for (int a = 0; a < S.Count; a++)
                {
                    ref double r = ref MemoryMarshal.GetReference(S[a]);
                    Vector256<double> αa = Vector256.Create(α[a]), κa = Vector256.Create(κ[a]), ωa = Vector256.Create(ω[a]);
                    y0 = Write256(ref r, c0, αa, κa, x0, ωa, y0);
                    y1 = Write256(ref r, c1, αa, κa, x1, ωa, y1);
                }
                y0.StoreUnsafe(ref ys, c0);
                y1.StoreUnsafe(ref ys, c1);
            }
            for (; c + Vector256<double>.Count <= width; c += Vector256<double>.Count)
            {
                nuint c0 = (nuint)c;
                Vector256<double> x0 = Vector256.LoadUnsafe(ref xs, c0), y0 = Vector256.LoadUnsafe(ref ys, c0);
                for (int a = 0; a < S.Count; a++)
                {
                    y0 = Write256(ref MemoryMarshal.GetReference(S[a]), c0, Vector256.Create(α[a]), Vector256.Create(κ[a]), x0,
                        Vector256.Create(ω[a]), y0);
                }
                y0.StoreUnsafe(ref ys, c0);
            }
        }
        for (; c < width; c++)
        {
            double yc = y[c];
            for (int a = 0; a < S.Count; a++)
            {
                Span<double> row = S[a];
                double s = Math.FusedMultiplyAdd(κ[a], x[c], α[a] * row[c]);
                row[c] = s;
                yc = Math.FusedMultiplyAdd(ω[a], s, yc);
            }
            y[c] = yc;
        }
    }

    /// <summary>S[a, :] ← α_a S[a, :], then y ← y + Σ_a ω_a S[a, :], one pass over S (a decay and a read, no write).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DecayAndRead<TRows>(TRows S, ReadOnlySpan<double> α, ReadOnlySpan<double> ω, Span<double> y)
        where TRows : IStateRows, allows ref struct
    {
        Check(S, α, ω, y);
        int width = S.Width, c = 0;
        if (S.Count == 0 || width == 0)
        {
            return;
        }
        ref double ys = ref MemoryMarshal.GetReference(y);
        if (Vector512.IsHardwareAccelerated)
        {
            for (; c + 4 * Vector512<double>.Count <= width; c += 4 * Vector512<double>.Count)
            {
                nuint c0 = (nuint)c, c1 = c0 + 8, c2 = c0 + 16, c3 = c0 + 24;
                Vector512<double> y0 = Vector512.LoadUnsafe(ref ys, c0), y1 = Vector512.LoadUnsafe(ref ys, c1),
                    y2 = Vector512.LoadUnsafe(ref ys, c2), y3 = Vector512.LoadUnsafe(ref ys, c3);
                for (int a = 0; a < S.Count; a++)
                {
                    ref double r = ref MemoryMarshal.GetReference(S[a]);
                    Vector512<double> αa = Vector512.Create(α[a]), ωa = Vector512.Create(ω[a]);
                    y0 = Decay512(ref r, c0, αa, ωa, y0);
                    y1 = Decay512(ref r, c1, αa, ωa, y1);
                    y2 = Decay512(ref r, c2, αa, ωa, y2);
                    y3 = Decay512(ref r, c3, αa, ωa, y3);
                }
                y0.StoreUnsafe(ref ys, c0);
                y1.StoreUnsafe(ref ys, c1);
                y2.StoreUnsafe(ref ys, c2);
                y3.StoreUnsafe(ref ys, c3);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c + Vector256<double>.Count <= width; c += Vector256<double>.Count)
            {
                nuint c0 = (nuint)c;
                Vector256<double> y0 = Vector256.LoadUnsafe(ref ys, c0);
                for (int a = 0; a < S.Count; a++)
                {
                    ref double r = ref MemoryMarshal.GetReference(S[a]);
                    var s = Vector256.Create(α[a]) * Vector256.LoadUnsafe(ref r, c0);
                    s.StoreUnsafe(ref r, c0);
                    y0 = Vector256.FusedMultiplyAdd(Vector256.Create(ω[a]), s, y0);
                }
                y0.StoreUnsafe(ref ys, c0);
            }
        }
        for (; c < width; c++)
        {
            double yc = y[c];
            for (int a = 0; a < S.Count; a++)
            {
                Span<double> row = S[a];
                double s = α[a] * row[c];
                row[c] = s;
                yc = Math.FusedMultiplyAdd(ω[a], s, yc);
            }
            y[c] = yc;
        }
    }

    private static void Check<TRows>(TRows S, ReadOnlySpan<double> α, ReadOnlySpan<double> ω, Span<double> y)
        where TRows : IStateRows, allows ref struct
    {
        if (α.Length != S.Count || ω.Length != S.Count || y.Length != S.Width)
        {
            throw new ArgumentException(
                $"α and ω must have the state's {S.Count} rows and y its {S.Width} columns; found {α.Length}, {ω.Length}, {y.Length}");
        }
        for (int a = 0; a < S.Count; a++)
        {
            // The vector loops read whole blocks of columns from every row: a short row would be read past its end.
            if (S[a].Length != S.Width)
            {
                throw new ArgumentException($"state row {a} has {S[a].Length} columns, the state {S.Width}");
            }
        }
    }

    // s = fma(κ, x, α·S[a, c..]); S[a, c..] = s; returns fma(ω, s, y).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<double> Write512(ref double row, nuint c, Vector512<double> α, Vector512<double> κ, Vector512<double> x,
        Vector512<double> ω, Vector512<double> y)
    {
        var s = Vector512.FusedMultiplyAdd(κ, x, α * Vector512.LoadUnsafe(ref row, c));
        s.StoreUnsafe(ref row, c);
        return Vector512.FusedMultiplyAdd(ω, s, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<double> Write256(ref double row, nuint c, Vector256<double> α, Vector256<double> κ, Vector256<double> x,
        Vector256<double> ω, Vector256<double> y)
    {
        var s = Vector256.FusedMultiplyAdd(κ, x, α * Vector256.LoadUnsafe(ref row, c));
        s.StoreUnsafe(ref row, c);
        return Vector256.FusedMultiplyAdd(ω, s, y);
    }

    // s = α·S[a, c..]; S[a, c..] = s; returns fma(ω, s, y).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<double> Decay512(ref double row, nuint c, Vector512<double> α, Vector512<double> ω, Vector512<double> y)
    {
        var s = α * Vector512.LoadUnsafe(ref row, c);
        s.StoreUnsafe(ref row, c);
        return Vector512.FusedMultiplyAdd(ω, s, y);
    }
}
