using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// The symmetric power feature map of degree p over K channels, φ(x)·φ(y) = (x·y)^p: one entry per multi-index
/// a_1 ≤ … ≤ a_p over [0, K), in lexicographic order, φ(x)_α = √(p! / Π_c α_c!) · Π_r x_{a_r}, D = C(K+p−1, p)
/// entries. Its table (D multi-indices of p channels) and the work of one φ(x) (D·p products) grow with D·p, so a call
/// is held to D·p ≤ 2^22 (K = 64, p = 4 is 3 065 920; K = 128, p = 3 is 1 073 280): past it a hostile deg on a tiny
/// input (deg = 1000 at K = 3: D·p ≈ 5·10^8) would take minutes and gigabytes before the first step.
/// </summary>
public sealed class SymmetricPower
{
    /// <summary>The largest D·p accepted: 2^22.</summary>
    public const long MaxFactors = 1L << 22;

    private readonly int[] _indices;         // D·p: the multi-index of entry α at [α·p, (α+1)·p)
    private readonly double[] _coefficients; // D: √(p! / Π_c α_c!)

    /// <summary>The map of degree <paramref name="degree"/> ≥ 1 over <paramref name="keyDim"/> channels.</summary>
    public SymmetricPower(int keyDim, int degree)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(degree, 1);
        Degree = degree;
        int count = Dimension(keyDim, degree);
        (_indices, _coefficients) = (new int[count * degree], new double[count]);
        var indices = new int[degree];
        int α = 0;
        void Fill(int position, int from)
        {
            if (position == degree)
            {
                indices.CopyTo(_indices, α * degree);
                _coefficients[α++] = Math.Sqrt(Multinomial(indices));
                return;
            }
            for (int a = from; a < keyDim; a++)
            {
                indices[position] = a;
                Fill(position + 1, a);
            }
        }
        Fill(0, 0);
    }

    /// <summary>p.</summary>
    public int Degree { get; }

    /// <summary>D, the number of entries.</summary>
    public int D => _coefficients.Length;

    /// <summary>The multi-indices a_1 ≤ … ≤ a_p of every entry, entry after entry (D·p channels).</summary>
    public ReadOnlySpan<int> Indices => _indices;

    /// <summary>The coefficient √(p! / Π_c α_c!) of every entry.</summary>
    public ReadOnlySpan<double> Coefficients => _coefficients;

    /// <summary>φ ← φ(<paramref name="factor"/> · x), each entry its coefficient times p factors factor · x_a, in order.</summary>
    public void Apply(ReadOnlySpan<double> x, double factor, Span<double> φ)
    {
        for (int α = 0; α < _coefficients.Length; α++)
        {
            double product = _coefficients[α];
            foreach (int a in _indices.AsSpan(α * Degree, Degree))
            {
                product *= factor * x[a];
            }
            φ[α] = product;
        }
    }

    /// <summary>φ(x) as a new array of D entries.</summary>
    public double[] Of(ReadOnlySpan<double> x)
    {
        var φ = new double[D];
        Apply(x, 1, φ);
        return φ;
    }

    /// <summary>
    /// D = C(K+p−1, p); bad input naming deg when D·p passes <see cref="MaxFactors"/> (the bound and why: the class
    /// comment).
    /// </summary>
    public static int Dimension(int keyDim, int degree)
    {
        double d = 1;
        for (int r = 1; r <= degree && d * degree <= MaxFactors; r++)
        {
            d = d * (keyDim + r - 1) / r; // exact while D·p is within the bound: a product of r consecutive integers is divisible by r!
        }
        if (d * degree > MaxFactors)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"parameter 'deg': deg = {degree} at K = {keyDim} gives D·p > {MaxFactors} (2^22), the bound on the symmetric power feature map's D = C(K+p−1, p) entries of p factors each (the work of φ per row, the D rows of each head's state)"));
        }
        return (int)d;
    }

    /// <summary>D of a call, the contract's derived symbol: from K and deg.</summary>
    internal static int FeatureSize(Dims dims, FormParameters parameters) => Dimension(dims["K"], Power.Degree.Read(parameters));

    /// <summary>p! / Π_c α_c!, α_c the run lengths of equal indices, as a product of binomials (finite for any p whose result is).</summary>
    private static double Multinomial(ReadOnlySpan<int> indices)
    {
        double multinomial = 1;
        int run = 0;
        for (int r = 0; r < indices.Length; r++)
        {
            run = r > 0 && indices[r] == indices[r - 1] ? run + 1 : 1;
            multinomial = multinomial * (r + 1) / run; // p!/Π α_c! built as Π C(r + 1, run): exact integers below 2^53
        }
        return multinomial;
    }
}
