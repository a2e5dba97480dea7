using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>
/// Whether two softmax results agree to rounding in double, element by element, on the scale their rounding has.
/// o_i is a convex combination of rows of v, so its rounding error scales with max|v| however much o_i itself cancels
/// towards 0 (a normwise ‖a − b‖/‖b‖ fails on such rows: found with V = 1, one row); lse_i = m_i + ln l_i errs on the
/// scale of |lse_i| + ln Tk, and ln Tk ≤ ln 20 is covered by the + 1 with room to spare at 1e-12.
/// </summary>
internal static class Agreement
{
    /// <summary>Sums of ≤ 17·9 terms in double in different orders: a few ulps (2.2e-16) each, far below 1e-12.</summary>
    public const double SameMathInDouble = 1e-12;

    /// <summary>o and lse agree: same non-finite values at the same places, finite ones within the bounds above.</summary>
    public static bool Close(SoftmaxResult actual, SoftmaxResult expected, Tensor v, double tolerance = SameMathInDouble) =>
        CloseO(actual.O, expected.O, v, tolerance) && CloseLse(actual.Lse, expected.Lse, tolerance);

    /// <summary>|a − b| ≤ tolerance·(|b| + max|v|) element by element.</summary>
    public static bool CloseO(Tensor actual, Tensor expected, Tensor v, double tolerance = SameMathInDouble)
    {
        double scale = v.Data.Where(double.IsFinite).Select(Math.Abs).DefaultIfEmpty(0).Max();
        return Within(actual, expected, b => tolerance * (Math.Abs(b) + scale));
    }

    /// <summary>|a − b| ≤ tolerance·(|b| + 1) element by element.</summary>
    public static bool CloseLse(Tensor actual, Tensor expected, double tolerance = SameMathInDouble) =>
        Within(actual, expected, b => tolerance * (Math.Abs(b) + 1));

    private static bool Within(Tensor actual, Tensor expected, Func<double, double> bound) =>
        actual.Shape.SequenceEqual(expected.Shape)
        && actual.Data.Zip(expected.Data).All(p => double.IsFinite(p.Second)
            ? double.IsFinite(p.First) && Math.Abs(p.First - p.Second) <= bound(p.Second)
            : p.First.Equals(p.Second)); // −∞ for −∞, NaN for NaN
}
