using System.Numerics;
using AttentionReference.Forms.Linear;
using ILGPU;

namespace AttentionReference.Gpu.Linear;

/// <summary>
/// The kernel of Forms/Linear/FeatureMaps.cs: φ(x) of every row x of q or k, each feature by the CPU's expression.
/// <code>
///   elu1       φ(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise         F = K
///   relu       φ(x) = max(x, 0)                                              F = K
///   taylor2    x̃ = x / K^(1/4);  φ(x) = [1, x̃, vec(x̃ x̃ᵀ)/√2]                  F = 1 + K + K²  (entry 1 + K + K·a + b = x̃_a x̃_b / √2)
///   performer  x̃ = x / K^(1/4);  φ(x)_r = exp(ω_r·x̃ − |x̃|²/2) / √M,  ω_r row r of proj [M,K]    F = M
/// </code>
/// The identity map needs no kernel: q and k are their own features. taylor2 keeps x̃ (K per row) instead of its
/// 1 + K + K² features, as the CPU form's FeatureRows does: its scores need only q̃·k̃, and the state pass reads each
/// feature from x̃ where it needs it (<see cref="Taylor2"/>), so no buffer holds K² values per row. One thread per
/// (row, stored value): performer's features are O(K) each (|x̃|² and ω_r·x̃, summed in the CPU's order), every other
/// map's O(1).
/// </summary>
internal static class FeatureMapKernels
{
    /// <summary>FeatureMaps.Apply for feature a of one row (for taylor2, x̃_a).</summary>
    public static void Features<Real>(Index1D thread, FeatureMapProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (row, a) = x.FeatureOf(thread);
        x.Φ[row * x.Width + a] = x.Map switch
        {
            (int)LinearFeatureMap.EluPlusOne => EluPlusOne(x.X[x.Input(row, a)]),
            (int)LinearFeatureMap.Relu => x.X[x.Input(row, a)] > Real.Zero ? x.X[x.Input(row, a)] : Real.Zero,
            (int)LinearFeatureMap.Taylor2 => x.X[x.Input(row, a)] / x.RootRootK,
            (int)LinearFeatureMap.Performer => Performer(x, row, a),
            _ => x.X[x.Input(row, a)],
        };
    }

    /// <summary>
    /// taylor2's feature a of <paramref name="row"/> from its x̃ [rows, K]: 1, x̃_{a−1}, or x̃_a' x̃_b' / √2 for
    /// a = 1 + K + K·a' + b'.
    /// </summary>
    internal static Real Taylor2<Real>(ArrayView<Real> x̃, long row, int K, int a, Real sqrt2) where Real : unmanaged, INumber<Real>
    {
        if (a == 0)
        {
            return Real.One;
        }
        if (a <= K)
        {
            return x̃[row * K + a - 1];
        }
        int pair = a - 1 - K;
        return x̃[row * K + pair / K] * x̃[row * K + pair % K] / sqrt2;
    }

    /// <summary>elu(x) + 1, with elu(x) = exp(x) − 1 for x ≤ 0.</summary>
    private static Real EluPlusOne<Real>(Real x) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        x > Real.Zero ? x + Real.One : GpuMath.Exp(x);

    /// <summary>performer's feature r: exp(ω_r·x̃ − |x̃|²/2) / √M.</summary>
    private static Real Performer<Real>(FeatureMapProblem<Real> x, long row, int r) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real squaredNorm = Real.Zero, ωx = Real.Zero;
        for (int a = 0; a < x.Dk; a++)
        {
            Real x̃a = x.X[x.Input(row, a)] / x.RootRootK;
            squaredNorm += x̃a * x̃a;
            ωx += x.Proj[(long)r * x.Dk + a] * x̃a;
        }
        return GpuMath.Exp(ωx - squaredNorm / (Real.One + Real.One)) / x.SqrtM;
    }
}
