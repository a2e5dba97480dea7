using System.Numerics;
using System.Runtime.CompilerServices;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// Four reals a thread keeps in registers: the rows r, r + s, r + 2s, r + 3s of a tile that it owns (or four keys, or
/// four value columns). ILGPU keeps a struct value in registers as long as nothing takes its address, and does not
/// unroll loops, so the hot loops of the tiled kernels are written on these structs, unrolled by hand; a loop over an
/// index (<see cref="this[int]"/>, <see cref="With"/>) is for the few steps per tile that are not hot.
/// </summary>
internal struct Four<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    public Real X0, X1, X2, X3;

    /// <summary>All four equal to <paramref name="value"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Four<Real> Fill(Real value) => new() { X0 = value, X1 = value, X2 = value, X3 = value };

    /// <summary>s[at], s[at + step], s[at + 2·step], s[at + 3·step].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Four<Real> Load(ArrayView<Real> s, int at, int step) =>
        new() { X0 = s[at], X1 = s[at + step], X2 = s[at + 2 * step], X3 = s[at + 3 * step] };

    /// <summary>Element <paramref name="n"/> (0 to 3).</summary>
    public readonly Real this[int n] => n == 0 ? X0 : n == 1 ? X1 : n == 2 ? X2 : X3;

    /// <summary>This with element <paramref name="n"/> replaced by <paramref name="value"/>.</summary>
    public readonly Four<Real> With(int n, Real value) => new()
    {
        X0 = n == 0 ? value : X0, X1 = n == 1 ? value : X1, X2 = n == 2 ? value : X2, X3 = n == 3 ? value : X3,
    };

    /// <summary>this + a·y, element by element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Four<Real> AddScaled(Real a, Four<Real> y) =>
        new() { X0 = X0 + a * y.X0, X1 = X1 + a * y.X1, X2 = X2 + a * y.X2, X3 = X3 + a * y.X3 };

    /// <summary>a·this.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Four<Real> Scale(Real a) => new() { X0 = a * X0, X1 = a * X1, X2 = a * X2, X3 = a * X3 };
}

/// <summary>
/// A 4 × 4 block of a tile in one thread's registers: rows R0..R3 (its rows r_a), each four columns (its keys c_b, or
/// its value columns). <see cref="AddOuter"/> is the register-blocked step of a matrix product: 8 operands, 16 FMAs.
/// </summary>
internal struct Block<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    public Four<Real> R0, R1, R2, R3;

    /// <summary>this + a ⊗ b: element (r, c) gains a_r·b_c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Block<Real> AddOuter(Four<Real> a, Four<Real> b) => new()
    {
        R0 = R0.AddScaled(a.X0, b), R1 = R1.AddScaled(a.X1, b), R2 = R2.AddScaled(a.X2, b), R3 = R3.AddScaled(a.X3, b),
    };

    /// <summary>Row r scaled by a_r.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Block<Real> ScaleRows(Four<Real> a) => new() { R0 = R0.Scale(a.X0), R1 = R1.Scale(a.X1), R2 = R2.Scale(a.X2), R3 = R3.Scale(a.X3) };

    /// <summary>Row <paramref name="r"/> (0 to 3).</summary>
    public readonly Four<Real> Row(int r) => r == 0 ? R0 : r == 1 ? R1 : r == 2 ? R2 : R3;

    /// <summary>This with row <paramref name="r"/> replaced.</summary>
    public readonly Block<Real> WithRow(int r, Four<Real> row) => new()
    {
        R0 = r == 0 ? row : R0, R1 = r == 1 ? row : R1, R2 = r == 2 ? row : R2, R3 = r == 3 ? row : R3,
    };

    /// <summary>Element (r, c).</summary>
    public readonly Real this[int r, int c] => Row(r)[c];

    /// <summary>This with element (r, c) replaced.</summary>
    public readonly Block<Real> With(int r, int c, Real value) => WithRow(r, Row(r).With(c, value));
}
