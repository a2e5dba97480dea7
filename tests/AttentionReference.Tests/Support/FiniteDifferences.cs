using AttentionReference.Tensors;

namespace AttentionReference.Tests.Support;

/// <summary>
/// Gradients checked against central finite differences of the f64 forward: for random cotangents c_Y of the outputs
/// and a random direction u of one input X, with L(θ) = Σ_Y ⟨c_Y, Y(θ)⟩,
///   (L(X + εu) − L(X − εu)) / 2ε  =  ⟨dX, u⟩ + O(ε² |L'''|) + O(u_f64 M / ε),
/// where M = Σ_Y Σ_i |c_Y,i| |Y_i| bounds the rounding of L. With ε = 1e-6 the rounding term is about 1e-16 · M / 1e-6
/// = 1e-10 M and the truncation term ε²/6 |L'''| ≈ 2e-13 M (L is at most cubic in the inputs where it is polynomial,
/// and its exp gates keep |L'''| of order M): <see cref="Tolerance"/> = 1e-8 (M + |⟨dX, u⟩|) leaves a margin of 100.
/// </summary>
internal static class FiniteDifferences
{
    /// <summary>The step ε.</summary>
    public const double Step = 1e-6;

    /// <summary>The bound on |finite difference − ⟨dX, u⟩| (see the class comment).</summary>
    public static double Tolerance(double magnitude, double analytic) => 1e-8 * (magnitude + Math.Abs(analytic));

    /// <summary>⟨c, y⟩ summed over the outputs that have a cotangent, and Σ |c| |y| (the magnitude M).</summary>
    public static (double Value, double Magnitude) Pairing(IReadOnlyDictionary<string, Tensor> cotangents, IReadOnlyDictionary<string, Tensor> outputs)
    {
        double value = 0, magnitude = 0;
        foreach (var (name, y) in outputs)
        {
            if (cotangents.TryGetValue("d" + name, out Tensor? c))
            {
                for (int i = 0; i < y.Length; i++)
                {
                    value += c.Data[i] * y.Data[i];
                    magnitude += Math.Abs(c.Data[i] * y.Data[i]);
                }
            }
        }
        return (value, magnitude);
    }

    /// <summary>x + ε u.</summary>
    public static Tensor Moved(Tensor x, Tensor u, double epsilon) =>
        new(x.ShapeArray(), x.Data.Zip(u.Data, (a, b) => a + epsilon * b).ToArray(), x.DType);

    /// <summary>⟨a, b⟩.</summary>
    public static double Dot(Tensor a, Tensor b) => a.Data.Zip(b.Data, (x, y) => x * y).Sum();
}
