using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AttentionReference.Numerics;

/// <summary>
/// Products with a row-major matrix held in a span (rows of <c>width</c> values, one after the other): Y += W B, the
/// shape of both halves of an attention tile, S = Q Kᵀ (with Kᵀ stored as rows of keys) and acc += P V. Blocks of
/// four rows of Y by 32 columns (Vector512) or 16 columns (Vector256) stay in registers over the whole inner
/// dimension, so that each load of B serves four rows; the remaining rows and columns go through
/// <see cref="TensorPrimitives"/>. Like <see cref="VectorKernels"/>: deterministic on one machine for any thread
/// count, equal across machines to rounding (a multiply-add may be fused where the hardware fuses it).
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

    /// <summary>
    /// Y ← Y + W B: Y[i, :] += Σ_k W[i, k] B_k, k = 0, 1, … in order, for W [rows x inner], B [inner x width] and
    /// Y [rows x width], all row-major. Four rows of Y by 32 columns (Vector512) or 16 (Vector256) stay in registers
    /// over all k.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddProduct(ReadOnlySpan<double> w, int rows, ReadOnlySpan<double> b, int inner, Span<double> y)
    {
        int width = rows == 0 ? 0 : y.Length / rows, i = 0;
        int block = Vector512.IsHardwareAccelerated ? 4 * Vector512<double>.Count
            : Vector256.IsHardwareAccelerated ? 4 * Vector256<double>.Count : 0;
        if (block > 0 && width >= block)
        {
            int blocked = width / block * block;
            for (; i + 4 <= rows; i += 4)
            {
                ReadOnlySpan<double> w4 = w.Slice(i * inner, 4 * inner);
                Span<double> y4 = y[(i * width)..((i + 4) * width)];
                for (int c0 = 0; c0 < blocked; c0 += block)
                {
                    if (Vector512.IsHardwareAccelerated)
                    {
                        Axpy4x32(w4, inner, b[..(inner * width)], width, y4, c0);
                    }
                    else
                    {
                        Axpy4x16(w4, inner, b[..(inner * width)], width, y4, c0);
                    }
                }
                for (int r = 0; r < 4 && blocked < width; r++)
                {
                    Span<double> tail = y4.Slice(r * width + blocked, width - blocked);
                    for (int k = 0; k < inner; k++)
                    {
                        TensorPrimitives.MultiplyAdd(b.Slice(k * width + blocked, width - blocked), w4[r * inner + k], tail, tail);
                    }
                }
            }
        }
        for (; i < rows; i++)
        {
            AddWeightedRows(w.Slice(i * inner, inner), b[..(inner * width)], y.Slice(i * width, width));
        }
    }

    /// <summary>
    /// Y ← Y + Aᵀ B: Y[i, :] += Σ_k A[k, i] B_k, k = 0, 1, … in order, for A [inner x rows], B [inner x width] and
    /// Y [rows x width], all row-major: the update of a state by a block of steps, S += Φᵀ V with one row of features
    /// and one row of values per step. A is transposed once, then <see cref="AddProduct"/>.
    /// </summary>
    public static void AddTransposedProduct(ReadOnlySpan<double> a, int inner, ReadOnlySpan<double> b, Span<double> y)
    {
        int rows = inner == 0 ? 0 : a.Length / inner;
        var transposed = new double[rows * inner];
        for (int k = 0; k < inner; k++)
        {
            for (int i = 0; i < rows; i++)
            {
                transposed[i * inner + k] = a[k * rows + i];
            }
        }
        AddProduct(transposed, rows, b, inner, y);
    }

    /// <summary>Y[m, c0..c0+32) += Σ_k W[m, k] B[k, c0..c0+32) for the four rows m of y4 (row-major, width wide), k in order.</summary>
    private static void Axpy4x32(ReadOnlySpan<double> w4, int inner, ReadOnlySpan<double> b, int width, Span<double> y4, int c0)
    {
        const int N = 8; // Vector512<double>.Count
        ref double yr = ref MemoryMarshal.GetReference(y4);
        ref double br = ref MemoryMarshal.GetReference(b); // b.Length == inner·width, y4.Length == 4·width (sliced by the caller)
        nuint o0 = (nuint)c0, o1 = (nuint)(width + c0), o2 = (nuint)(2 * width + c0), o3 = (nuint)(3 * width + c0);
        Vector512<double> y00 = Vector512.LoadUnsafe(ref yr, o0), y01 = Vector512.LoadUnsafe(ref yr, o0 + N), y02 = Vector512.LoadUnsafe(ref yr, o0 + 2 * N), y03 = Vector512.LoadUnsafe(ref yr, o0 + 3 * N);
        Vector512<double> y10 = Vector512.LoadUnsafe(ref yr, o1), y11 = Vector512.LoadUnsafe(ref yr, o1 + N), y12 = Vector512.LoadUnsafe(ref yr, o1 + 2 * N), y13 = Vector512.LoadUnsafe(ref yr, o1 + 3 * N);
        Vector512<double> y20 = Vector512.LoadUnsafe(ref yr, o2), y21 = Vector512.LoadUnsafe(ref yr, o2 + N), y22 = Vector512.LoadUnsafe(ref yr, o2 + 2 * N), y23 = Vector512.LoadUnsafe(ref yr, o2 + 3 * N);
        Vector512<double> y30 = Vector512.LoadUnsafe(ref yr, o3), y31 = Vector512.LoadUnsafe(ref yr, o3 + N), y32 = Vector512.LoadUnsafe(ref yr, o3 + 2 * N), y33 = Vector512.LoadUnsafe(ref yr, o3 + 3 * N);
        for (int k = 0; k < inner; k++)
        {
            nuint bk = (nuint)(k * width + c0);
            Vector512<double> b0 = Vector512.LoadUnsafe(ref br, bk), b1 = Vector512.LoadUnsafe(ref br, bk + N);
            Vector512<double> b2 = Vector512.LoadUnsafe(ref br, bk + 2 * N), b3 = Vector512.LoadUnsafe(ref br, bk + 3 * N);
            Vector512<double> wv = Vector512.Create(w4[k]);
            (y00, y01, y02, y03) = (Vector512.MultiplyAddEstimate(b0, wv, y00), Vector512.MultiplyAddEstimate(b1, wv, y01), Vector512.MultiplyAddEstimate(b2, wv, y02), Vector512.MultiplyAddEstimate(b3, wv, y03));
            wv = Vector512.Create(w4[inner + k]);
            (y10, y11, y12, y13) = (Vector512.MultiplyAddEstimate(b0, wv, y10), Vector512.MultiplyAddEstimate(b1, wv, y11), Vector512.MultiplyAddEstimate(b2, wv, y12), Vector512.MultiplyAddEstimate(b3, wv, y13));
            wv = Vector512.Create(w4[2 * inner + k]);
            (y20, y21, y22, y23) = (Vector512.MultiplyAddEstimate(b0, wv, y20), Vector512.MultiplyAddEstimate(b1, wv, y21), Vector512.MultiplyAddEstimate(b2, wv, y22), Vector512.MultiplyAddEstimate(b3, wv, y23));
            wv = Vector512.Create(w4[3 * inner + k]);
            (y30, y31, y32, y33) = (Vector512.MultiplyAddEstimate(b0, wv, y30), Vector512.MultiplyAddEstimate(b1, wv, y31), Vector512.MultiplyAddEstimate(b2, wv, y32), Vector512.MultiplyAddEstimate(b3, wv, y33));
        }
        y00.StoreUnsafe(ref yr, o0); y01.StoreUnsafe(ref yr, o0 + N); y02.StoreUnsafe(ref yr, o0 + 2 * N); y03.StoreUnsafe(ref yr, o0 + 3 * N);
        y10.StoreUnsafe(ref yr, o1); y11.StoreUnsafe(ref yr, o1 + N); y12.StoreUnsafe(ref yr, o1 + 2 * N); y13.StoreUnsafe(ref yr, o1 + 3 * N);
        y20.StoreUnsafe(ref yr, o2); y21.StoreUnsafe(ref yr, o2 + N); y22.StoreUnsafe(ref yr, o2 + 2 * N); y23.StoreUnsafe(ref yr, o2 + 3 * N);
        y30.StoreUnsafe(ref yr, o3); y31.StoreUnsafe(ref yr, o3 + N); y32.StoreUnsafe(ref yr, o3 + 2 * N); y33.StoreUnsafe(ref yr, o3 + 3 * N);
    }

    /// <summary>Y[m, c0..c0+16) += Σ_k W[m, k] B[k, c0..c0+16) for the four rows m of y4 (row-major, width wide), k in order: <see cref="Axpy4x32"/> on Vector256.</summary>
    private static void Axpy4x16(ReadOnlySpan<double> w4, int inner, ReadOnlySpan<double> b, int width, Span<double> y4, int c0)
    {
        const int N = 4; // Vector256<double>.Count
        ref double yr = ref MemoryMarshal.GetReference(y4);
        ref double br = ref MemoryMarshal.GetReference(b); // b.Length == inner·width, y4.Length == 4·width (sliced by the caller)
        nuint o0 = (nuint)c0, o1 = (nuint)(width + c0), o2 = (nuint)(2 * width + c0), o3 = (nuint)(3 * width + c0);
        Vector256<double> y00 = Vector256.LoadUnsafe(ref yr, o0), y01 = Vector256.LoadUnsafe(ref yr, o0 + N), y02 = Vector256.LoadUnsafe(ref yr, o0 + 2 * N), y03 = Vector256.LoadUnsafe(ref yr, o0 + 3 * N);
        Vector256<double> y10 = Vector256.LoadUnsafe(ref yr, o1), y11 = Vector256.LoadUnsafe(ref yr, o1 + N), y12 = Vector256.LoadUnsafe(ref yr, o1 + 2 * N), y13 = Vector256.LoadUnsafe(ref yr, o1 + 3 * N);
        Vector256<double> y20 = Vector256.LoadUnsafe(ref yr, o2), y21 = Vector256.LoadUnsafe(ref yr, o2 + N), y22 = Vector256.LoadUnsafe(ref yr, o2 + 2 * N), y23 = Vector256.LoadUnsafe(ref yr, o2 + 3 * N);
        Vector256<double> y30 = Vector256.LoadUnsafe(ref yr, o3), y31 = Vector256.LoadUnsafe(ref yr, o3 + N), y32 = Vector256.LoadUnsafe(ref yr, o3 + 2 * N), y33 = Vector256.LoadUnsafe(ref yr, o3 + 3 * N);
        for (int k = 0; k < inner; k++)
        {
            nuint bk = (nuint)(k * width + c0);
            Vector256<double> b0 = Vector256.LoadUnsafe(ref br, bk), b1 = Vector256.LoadUnsafe(ref br, bk + N);
            Vector256<double> b2 = Vector256.LoadUnsafe(ref br, bk + 2 * N), b3 = Vector256.LoadUnsafe(ref br, bk + 3 * N);
            Vector256<double> wv = Vector256.Create(w4[k]);
            (y00, y01, y02, y03) = (Vector256.MultiplyAddEstimate(b0, wv, y00), Vector256.MultiplyAddEstimate(b1, wv, y01), Vector256.MultiplyAddEstimate(b2, wv, y02), Vector256.MultiplyAddEstimate(b3, wv, y03));
            wv = Vector256.Create(w4[inner + k]);
            (y10, y11, y12, y13) = (Vector256.MultiplyAddEstimate(b0, wv, y10), Vector256.MultiplyAddEstimate(b1, wv, y11), Vector256.MultiplyAddEstimate(b2, wv, y12), Vector256.MultiplyAddEstimate(b3, wv, y13));
            wv = Vector256.Create(w4[2 * inner + k]);
            (y20, y21, y22, y23) = (Vector256.MultiplyAddEstimate(b0, wv, y20), Vector256.MultiplyAddEstimate(b1, wv, y21), Vector256.MultiplyAddEstimate(b2, wv, y22), Vector256.MultiplyAddEstimate(b3, wv, y23));
            wv = Vector256.Create(w4[3 * inner + k]);
            (y30, y31, y32, y33) = (Vector256.MultiplyAddEstimate(b0, wv, y30), Vector256.MultiplyAddEstimate(b1, wv, y31), Vector256.MultiplyAddEstimate(b2, wv, y32), Vector256.MultiplyAddEstimate(b3, wv, y33));
        }
        y00.StoreUnsafe(ref yr, o0); y01.StoreUnsafe(ref yr, o0 + N); y02.StoreUnsafe(ref yr, o0 + 2 * N); y03.StoreUnsafe(ref yr, o0 + 3 * N);
        y10.StoreUnsafe(ref yr, o1); y11.StoreUnsafe(ref yr, o1 + N); y12.StoreUnsafe(ref yr, o1 + 2 * N); y13.StoreUnsafe(ref yr, o1 + 3 * N);
        y20.StoreUnsafe(ref yr, o2); y21.StoreUnsafe(ref yr, o2 + N); y22.StoreUnsafe(ref yr, o2 + 2 * N); y23.StoreUnsafe(ref yr, o2 + 3 * N);
        y30.StoreUnsafe(ref yr, o3); y31.StoreUnsafe(ref yr, o3 + N); y32.StoreUnsafe(ref yr, o3 + 2 * N); y33.StoreUnsafe(ref yr, o3 + 3 * N);
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
