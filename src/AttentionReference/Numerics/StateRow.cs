using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttentionReference.Numerics;

/// <summary>
/// One row of a K × V recurrent state, updated and read in a single pass. The recurrent forms step
/// <code>
///   S_t[a, :] = α_a S_{t−1}[a, :] + κ_a x_t        (a decay, then a rank-one write k_t x_tᵀ)
///   y_t      += ω_a S_t[a, :]                      (a read-out such as o_t = Σ_a q_ta S_t[a, :])
/// </code>
/// row by row. Written as three span calls (scale, axpy, axpy) a step sweeps the state three times and pays three
/// calls per row; the state is K·V values per head (128 KB at K = V = 128), so the sweeps, not the arithmetic, bound
/// the step. Here each element of the row is loaded and stored once, and each product is one fused multiply-add
/// (Vector512 where accelerated, else Vector256, else scalar <see cref="Math.FusedMultiplyAdd"/>: the same rounding
/// on every path, so the result does not depend on the width, and never on the thread count).
/// </summary>
public static class StateRow
{
    /// <summary>row ← α·row + κ·x, then y ← y + ω·row (the new row), element by element, in one pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DecayWriteAndRead(double α, Span<double> row, double κ, ReadOnlySpan<double> x, double ω, Span<double> y)
    {
        int n = row.Length, i = 0;
        if (x.Length != n || y.Length != n)
        {
            throw new ArgumentException($"row, x and y must have one length; found {n}, {x.Length}, {y.Length}");
        }
        if (n == 0)
        {
            return;
        }
        ref double r = ref row[0];
        ref double xs = ref Unsafe.AsRef(in x[0]);
        ref double ys = ref y[0];
        if (Vector512.IsHardwareAccelerated)
        {
            var a = Vector512.Create(α);
            var k = Vector512.Create(κ);
            var w = Vector512.Create(ω);
            for (; i + Vector512<double>.Count <= n; i += Vector512<double>.Count)
            {
                var s = Vector512.FusedMultiplyAdd(k, Vector512.LoadUnsafe(ref xs, (nuint)i), a * Vector512.LoadUnsafe(ref r, (nuint)i));
                s.StoreUnsafe(ref r, (nuint)i);
                Vector512.FusedMultiplyAdd(w, s, Vector512.LoadUnsafe(ref ys, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Create(α);
            var k = Vector256.Create(κ);
            var w = Vector256.Create(ω);
            for (; i + Vector256<double>.Count <= n; i += Vector256<double>.Count)
            {
                var s = Vector256.FusedMultiplyAdd(k, Vector256.LoadUnsafe(ref xs, (nuint)i), a * Vector256.LoadUnsafe(ref r, (nuint)i));
                s.StoreUnsafe(ref r, (nuint)i);
                Vector256.FusedMultiplyAdd(w, s, Vector256.LoadUnsafe(ref ys, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            double s = Math.FusedMultiplyAdd(κ, x[i], α * row[i]);
            row[i] = s;
            y[i] = Math.FusedMultiplyAdd(ω, s, y[i]);
        }
    }

    /// <summary>row ← α·row, then y ← y + ω·row (the new row), element by element, in one pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DecayAndRead(double α, Span<double> row, double ω, Span<double> y)
    {
        int n = row.Length, i = 0;
        if (y.Length != n)
        {
            throw new ArgumentException($"row and y must have one length; found {n}, {y.Length}");
        }
        if (n == 0)
        {
            return;
        }
        ref double r = ref row[0];
        ref double ys = ref y[0];
        if (Vector512.IsHardwareAccelerated)
        {
            var a = Vector512.Create(α);
            var w = Vector512.Create(ω);
            for (; i + Vector512<double>.Count <= n; i += Vector512<double>.Count)
            {
                var s = a * Vector512.LoadUnsafe(ref r, (nuint)i);
                s.StoreUnsafe(ref r, (nuint)i);
                Vector512.FusedMultiplyAdd(w, s, Vector512.LoadUnsafe(ref ys, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Create(α);
            var w = Vector256.Create(ω);
            for (; i + Vector256<double>.Count <= n; i += Vector256<double>.Count)
            {
                var s = a * Vector256.LoadUnsafe(ref r, (nuint)i);
                s.StoreUnsafe(ref r, (nuint)i);
                Vector256.FusedMultiplyAdd(w, s, Vector256.LoadUnsafe(ref ys, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            double s = α * row[i];
            row[i] = s;
            y[i] = Math.FusedMultiplyAdd(ω, s, y[i]);
        }
    }
}
