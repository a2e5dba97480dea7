using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AttentionReference.Numerics;

/// <summary>
/// Products of a row with a row-major matrix held in a span (rows of <c>width</c> values, one after the other): the
/// two halves of an attention tile, S_i = q_i Kᵀ and o_i += Σ_j p_ij v_j. Where Vector512 is accelerated, four rows of
/// the matrix are taken per pass so that each load of the shared row (or of the accumulator) serves four products;
/// elsewhere, and for the remaining rows, each row goes through <see cref="TensorPrimitives"/>. Like
/// <see cref="VectorKernels"/>: deterministic on one machine for any thread count, equal across machines to rounding
/// (a multiply-add may be fused where the hardware fuses it, as in <see cref="TensorPrimitives.Dot{T}"/>).
/// </summary>
public static class DenseMatrix
{
    /// <summary>result_j = x · B_j for the rows B_j (each x.Length wide) of the row-major <paramref name="b"/>, j &lt; result.Length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TimesTransposed(ReadOnlySpan<double> x, ReadOnlySpan<double> b, Span<double> result)
    {
        int width = x.Length, rows = result.Length, j = 0;
        if (Vector512.IsHardwareAccelerated && width >= Vector512<double>.Count)
        {
            for (; j + 4 <= rows; j += 4)
            {
                Dot4(x, b.Slice(j * width, 4 * width), result.Slice(j, 4));
            }
        }
        for (; j < rows; j++)
        {
            result[j] = TensorPrimitives.Dot(x, b.Slice(j * width, width));
        }
    }

    /// <summary>y ← y + Σ_j w_j B_j, j = 0, 1, … in order, for the rows B_j (each y.Length wide) of the row-major <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddWeightedRows(ReadOnlySpan<double> w, ReadOnlySpan<double> b, Span<double> y)
    {
        int width = y.Length, rows = w.Length, j = 0;
        if (Vector512.IsHardwareAccelerated && width >= Vector512<double>.Count)
        {
            for (; j + 4 <= rows; j += 4)
            {
                Axpy4(w.Slice(j, 4), b.Slice(j * width, 4 * width), y);
            }
        }
        for (; j < rows; j++)
        {
            TensorPrimitives.MultiplyAdd(b.Slice(j * width, width), w[j], y, y);
        }
    }

    /// <summary>r_m = x · B_m for the four rows of b4 [4 x width], each load of x shared by the four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4(ReadOnlySpan<double> x, ReadOnlySpan<double> b4, Span<double> r)
    {
        int width = x.Length, d = 0;
        ref double xr = ref MemoryMarshal.GetReference(x);
        ref double br = ref MemoryMarshal.GetReference(b4); // b4.Length == 4·width (sliced by the caller)
        Vector512<double> s0 = Vector512<double>.Zero, s1 = s0, s2 = s0, s3 = s0;
        for (; d + Vector512<double>.Count <= width; d += Vector512<double>.Count)
        {
            Vector512<double> xv = Vector512.LoadUnsafe(ref xr, (nuint)d);
            s0 = Vector512.MultiplyAddEstimate(xv, Vector512.LoadUnsafe(ref br, (nuint)d), s0);
            s1 = Vector512.MultiplyAddEstimate(xv, Vector512.LoadUnsafe(ref br, (nuint)(width + d)), s1);
            s2 = Vector512.MultiplyAddEstimate(xv, Vector512.LoadUnsafe(ref br, (nuint)(2 * width + d)), s2);
            s3 = Vector512.MultiplyAddEstimate(xv, Vector512.LoadUnsafe(ref br, (nuint)(3 * width + d)), s3);
        }
        double r0 = Vector512.Sum(s0), r1 = Vector512.Sum(s1), r2 = Vector512.Sum(s2), r3 = Vector512.Sum(s3);
        for (; d < width; d++)
        {
            r0 += x[d] * b4[d];
            r1 += x[d] * b4[width + d];
            r2 += x[d] * b4[2 * width + d];
            r3 += x[d] * b4[3 * width + d];
        }
        (r[0], r[1], r[2], r[3]) = (r0, r1, r2, r3);
    }

    /// <summary>y ← (((y + w_0 B_0) + w_1 B_1) + w_2 B_2) + w_3 B_3 for the four rows of b4, y loaded and stored once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Axpy4(ReadOnlySpan<double> w, ReadOnlySpan<double> b4, Span<double> y)
    {
        int width = y.Length, d = 0;
        ref double yr = ref MemoryMarshal.GetReference(y);
        ref double br = ref MemoryMarshal.GetReference(b4); // b4.Length == 4·width (sliced by the caller)
        Vector512<double> w0 = Vector512.Create(w[0]), w1 = Vector512.Create(w[1]), w2 = Vector512.Create(w[2]), w3 = Vector512.Create(w[3]);
        for (; d + Vector512<double>.Count <= width; d += Vector512<double>.Count)
        {
            Vector512<double> acc = Vector512.LoadUnsafe(ref yr, (nuint)d);
            acc = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref br, (nuint)d), w0, acc);
            acc = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref br, (nuint)(width + d)), w1, acc);
            acc = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref br, (nuint)(2 * width + d)), w2, acc);
            acc = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref br, (nuint)(3 * width + d)), w3, acc);
            acc.StoreUnsafe(ref yr, (nuint)d);
        }
        for (; d < width; d++)
        {
            y[d] = y[d] + w[0] * b4[d] + w[1] * b4[width + d] + w[2] * b4[2 * width + d] + w[3] * b4[3 * width + d];
        }
    }
}
