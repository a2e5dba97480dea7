using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// The backward pass of power attention, every variant, through the feature-map attention's steps reversed
/// (FeatureAttentionBackward.cs) with φq(q) = φ(s q), φk(k) = φ(k), f(x) = (s x)^p, a = 1:
/// <code>
///   recurrent  the definition's reverse-time recurrence:  dS̃ += φ(s q_t) dñ_tᵀ,  dq_t = s Jφ(s q_t)ᵀ S̃_t dñ_t,
///              dk_t = Jφ(k_t)ᵀ dS̃ ṽ_t,  dv_t = dSᵀ φ(k_t),  dg_t = exp(g_t) ⟨S̃_{t−1}, dS̃⟩,  dS̃ ← exp(g_t) dS̃
///   quadratic  the matrix form's chain rule: dw_ij = dñ_i·ṽ_j, d(q_i·k_j) = dw_ij p s (s q_i·k_j)^(p−1) γ(i, j)
///   chunked    steps 3′, 1′, 2′ per chunk, last first, from the state entering each chunk
/// </code>
/// The Jacobian of the symmetric power map: ∂φ_α(x)/∂x_c = √(p!/Π α_c!) Σ_{r: a_r = c} Π_{r'≠r} x_{a_r'} (a product of
/// the other p − 1 factors for each place the channel holds), taken as prefix and suffix products (no division: exact at
/// x_c = 0).
/// </summary>
public sealed partial class Power
{
    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        Action<Head, FeatureKernel, int> body = variant switch
        {
            "recurrent" => (head, kernel, _) => FeatureAttentionBackward.Recurrent(head, kernel),
            "quadratic" => (head, kernel, _) => FeatureAttentionBackward.Quadratic(head, kernel),
            "chunked" => FeatureAttentionBackward.Chunked,
            _ => throw UnknownVariant(variant),
        };
        PowerOptions options = PowerOptions.Read(problem);
        var kernel = new PowerKernel(options);
        return Heads.Backward(problem, head => body(head, kernel, options.ChunkSize));
    }

    /// <summary>φq(q) = φ(s q), φk(k) = φ(k), f(x) = (s x)^p as the forward pass forms it (p − 1 products).</summary>
    private sealed class PowerKernel(PowerOptions options) : FeatureKernel(options.Map.D, 1, options.Eps, options.Normalize)
    {
        private readonly PowerOptions _options = options;

        public override void Query(ReadOnlySpan<double> q, Span<double> φ) => _options.Map.Apply(q, _options.Scale, φ);

        public override void Key(ReadOnlySpan<double> k, Span<double> φ) => _options.Map.Apply(k, 1, φ);

        public override void QueryBackward(ReadOnlySpan<double> q, ReadOnlySpan<double> dφ, Span<double> dq) =>
            AddTransposedJacobian(_options.Map, q, _options.Scale, dφ, dq);

        public override void KeyBackward(ReadOnlySpan<double> k, ReadOnlySpan<double> dφ, Span<double> dk) =>
            AddTransposedJacobian(_options.Map, k, 1, dφ, dk);

        public override double Weight(double score) => IntegerPower(_options.Scale * score, _options.Degree);

        public override double Slope(double score) => _options.Degree * _options.Scale * IntegerPower(_options.Scale * score, _options.Degree - 1);

        private static double IntegerPower(double x, int p)
        {
            double power = p == 0 ? 1 : x;
            for (int r = 1; r < p; r++)
            {
                power *= x;
            }
            return power;
        }
    }

    /// <summary>
    /// dx ← dx + Jᵀ dφ for φ = φ(factor · x): each entry's p factors factor · x_{a_r}; the derivative along the channel of
    /// factor r is factor times the product of the other factors (prefix times suffix) times the coefficient.
    /// </summary>
    internal static void AddTransposedJacobian(SymmetricPower map, ReadOnlySpan<double> x, double factor, ReadOnlySpan<double> dφ, Span<double> dx)
    {
        int p = map.Degree;
        Span<double> prefix = p < 64 ? stackalloc double[p + 1] : new double[p + 1];
        ReadOnlySpan<int> indices = map.Indices;
        ReadOnlySpan<double> coefficients = map.Coefficients;
        for (int α = 0; α < coefficients.Length; α++)
        {
            double weight = dφ[α] * coefficients[α] * factor;
            ReadOnlySpan<int> a = indices.Slice(α * p, p);
            prefix[0] = 1;
            for (int r = 0; r < p; r++)
            {
                prefix[r + 1] = prefix[r] * (factor * x[a[r]]);
            }
            double suffix = 1;
            for (int r = p - 1; r >= 0; r--)
            {
                dx[a[r]] += weight * prefix[r] * suffix;
                suffix *= factor * x[a[r]];
            }
        }
    }
}
