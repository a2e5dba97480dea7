using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Delta;

/// <summary>
/// The kernel of Forms/Delta/DeltaSpecs.cs's <c>QkL2Norm</c>, fla's <c>use_qk_l2norm_in_kernel</c>: every row of q and k
/// divided by √(Σx² + ε), ε = 1e-6, in place on the device copies, before any other kernel reads them.
/// </summary>
internal static class QkL2NormKernels
{
    /// <summary>
    /// QkL2Norm.Normalise for one row: rows of q first, then rows of k (one thread each, 2·B·T·H threads):
    /// x ← x · (1 / √(Σ_d x_d² + ε)), the squares summed in order d = 0..K−1.
    /// </summary>
    public static void Normalise<Real>(Index1D thread, DeltaProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long rows = x.Q.Length / x.Dk;
        ArrayView<Real> rowsOf = thread < rows ? x.Q : x.K;
        long row = thread < rows ? thread : thread - rows;
        Real sumOfSquares = Real.Zero;
        for (int d = 0; d < x.Dk; d++)
        {
            Real value = rowsOf[x.Key(row, d)];
            sumOfSquares += value * value;
        }
        Real inverseNorm = Real.One / GpuMath.Sqrt(sumOfSquares + x.Epsilon);
        for (int d = 0; d < x.Dk; d++)
        {
            rowsOf[x.Key(row, d)] *= inverseNorm;
        }
    }
}
