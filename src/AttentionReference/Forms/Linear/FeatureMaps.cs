using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Linear;

/// <summary>The feature map φ of linear attention (<see cref="FeatureMaps"/> defines each).</summary>
public enum LinearFeatureMap
{
    /// <summary>φ(x) = x.</summary>
    Identity,
    /// <summary>φ(x) = elu(x) + 1.</summary>
    EluPlusOne,
    /// <summary>φ(x) = max(x, 0).</summary>
    Relu,
    /// <summary>Based's second-order Taylor map, F = 1 + K + K².</summary>
    Taylor2,
    /// <summary>FAVOR+ positive random features with ω = proj [M,K], F = M.</summary>
    Performer,
}

/// <summary>
/// The feature maps φ of linear attention, written once for every form that maps its queries and keys (linear; based's
/// linear branch is taylor2):
/// <code>
///   identity   φ(x) = x                                                      F = K
///   elu1       φ(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise         F = K
///   relu       φ(x) = max(x, 0)                                              F = K
///   taylor2    x̃ = x / K^(1/4);  φ(x) = [1, x̃, vec(x̃ x̃ᵀ)/√2]                  F = 1 + K + K²  (vec row-major: entry K·a + b = x̃_a x̃_b)
///              so that φ(q)·φ(k) = 1 + s + s²/2 with s = q̃·k̃ = q·k/√K, the 2nd-order Taylor expansion of exp(q·k/√K)
///   performer  x̃ = x / K^(1/4);  φ(x)_r = exp(ω_r·x̃ − |x̃|²/2) / √M,  ω_r row r of proj [M,K]    F = M
///              so that E_ω[φ(q)·φ(k)] = exp(q·k/√K) for ω ~ N(0, I)
/// </code>
/// Every map is computed exactly in double: performer subtracts no running max and adds no eps (the reference codes do,
/// for float32), so φ overflows only when ω_r·x̃ exceeds ~709.
/// </summary>
public static class FeatureMaps
{
    /// <summary>feature_map: the map's name.</summary>
    public static Parameter<string> Parameter { get; } = ParameterSpec.Choice("feature_map", "identity",
        "φ: identity, elu1, relu, taylor2 (Based) or performer (FAVOR+, needs proj)", "identity", "elu1", "relu", "taylor2", "performer");

    /// <summary>The map named <paramref name="name"/> (a value of <see cref="Parameter"/>).</summary>
    public static LinearFeatureMap Parse(string name) => name switch
    {
        "elu1" => LinearFeatureMap.EluPlusOne,
        "relu" => LinearFeatureMap.Relu,
        "taylor2" => LinearFeatureMap.Taylor2,
        "performer" => LinearFeatureMap.Performer,
        _ => LinearFeatureMap.Identity,
    };

    /// <summary>
    /// The largest feature dimension F a map may produce: 2^22. taylor2's F = 1 + K + K² grows with the square of a
    /// shape alone, so a 320 KB file with K = 20 000 asked for a state of 4·10^8 rows per head (issue #21); past the
    /// bound the call is refused. Every other map's F is an extent of an input tensor, bounded by the file.
    /// </summary>
    public const int MaxDimension = 1 << 22;

    /// <summary>The feature dimension F of <paramref name="map"/> for head dimension K (and M random features).</summary>
    public static int Dimension(LinearFeatureMap map, int keyDim, int randomFeatures)
    {
        if (map != LinearFeatureMap.Taylor2)
        {
            return map == LinearFeatureMap.Performer ? randomFeatures : keyDim;
        }
        long f = 1 + keyDim + (long)keyDim * keyDim;
        return f <= MaxDimension ? (int)f : throw new InputException(string.Create(CultureInfo.InvariantCulture,
            $"K = {keyDim} gives the taylor2 feature map F = 1 + K + K² = {f}, past the largest feature dimension {MaxDimension} (2^22; K ≤ 2047)"), tensor: "k");
    }

    /// <summary>
    /// F of a call, the contract's derived symbol: from K, feature_map and (performer) M, which only proj [M,K] binds;
    /// performer without proj and proj without performer are bad input naming proj.
    /// </summary>
    internal static int FeatureSize(Dims dims, FormParameters parameters)
    {
        LinearFeatureMap map = Parse(Parameter.Read(parameters));
        bool performer = map == LinearFeatureMap.Performer, hasProj = dims.IsBound("M");
        if (performer != hasProj)
        {
            throw new InputException(performer ? "required by feature_map=performer (shape [M,K])" : "given, but only feature_map=performer uses it", tensor: "proj");
        }
        return Dimension(map, dims["K"], hasProj ? dims["M"] : 0);
    }

    /// <summary>φ ← φ(x) for one row x [K]; <paramref name="proj"/> is performer's ω [M,K], row-major.</summary>
    public static void Apply(LinearFeatureMap map, ReadOnlySpan<double> x, Span<double> φ, ReadOnlySpan<double> proj = default)
    {
        int K = x.Length;
        switch (map)
        {
            case LinearFeatureMap.Identity:
                x.CopyTo(φ);
                break;
            case LinearFeatureMap.EluPlusOne:
                for (int a = 0; a < K; a++)
                {
                    φ[a] = x[a] > 0 ? x[a] + 1 : Math.Exp(x[a]); // elu(x) + 1, with elu(x) = exp(x) − 1 for x ≤ 0
                }
                break;
            case LinearFeatureMap.Relu:
                for (int a = 0; a < K; a++)
                {
                    φ[a] = Math.Max(x[a], 0);
                }
                break;
            case LinearFeatureMap.Taylor2:
                {
                    Span<double> x̃ = φ.Slice(1, K); // [1, x̃, vec(x̃ x̃ᵀ)/√2]
                    φ[0] = 1;
                    Scaled(x, x̃);
                    for (int a = 0; a < K; a++)
                    {
                        for (int b = 0; b < K; b++)
                        {
                            φ[1 + K + K * a + b] = x̃[a] * x̃[b] / Math.Sqrt(2);
                        }
                    }
                    break;
                }
            case LinearFeatureMap.Performer:
                {
                    int M = K == 0 ? φ.Length : proj.Length / K;
                    Span<double> x̃ = K <= 256 ? stackalloc double[K] : new double[K];
                    Scaled(x, x̃);
                    double squaredNorm = 0; // |x̃|², summed in order, as every ω_r·x̃: the features are the same numbers on every machine
                    foreach (double x̃a in x̃)
                    {
                        squaredNorm += x̃a * x̃a;
                    }
                    for (int r = 0; r < M; r++)
                    {
                        double ωx = 0;
                        for (int a = 0; a < K; a++)
                        {
                            ωx += proj[r * K + a] * x̃[a];
                        }
                        φ[r] = Math.Exp(ωx - squaredNorm / 2) / Math.Sqrt(M);
                    }
                    break;
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(map), map, "unknown feature map");
        }
    }

    /// <summary>
    /// The chain rule through φ for one row x [K]: dx += (∂φ/∂x)ᵀ dφ, and for performer dproj += (∂φ/∂ω)ᵀ dφ
    /// (<paramref name="dproj"/> [M,K] row-major; empty for the other maps):
    /// <code>
    ///   identity   dx = dφ
    ///   elu1       dx_a = dφ_a · (1 for x_a > 0, exp(x_a) otherwise)           (both sides give 1 at 0: no convention needed)
    ///   relu       dx_a = dφ_a · (1 for x_a > 0, 0 otherwise)                  (0 at x_a = 0, as PyTorch's relu)
    ///   taylor2    dx̃_a = dφ_{1+a} + Σ_b (dφ_{1+K+Ka+b} + dφ_{1+K+Kb+a}) x̃_b / √2,   dx = dx̃ / K^(1/4)
    ///   performer  ρ_r = dφ_r φ_r;   dx̃ = Σ_r ρ_r (ω_r − x̃),   dx = dx̃ / K^(1/4);   dω_r += ρ_r x̃
    /// </code>
    /// </summary>
    public static void Backward(LinearFeatureMap map, ReadOnlySpan<double> x, ReadOnlySpan<double> dφ, Span<double> dx,
        ReadOnlySpan<double> proj = default, Span<double> dproj = default)
    {
        int K = x.Length;
        switch (map)
        {
            case LinearFeatureMap.Identity:
                VectorKernels.AddTo(dφ, dx);
                break;
            case LinearFeatureMap.EluPlusOne:
                for (int a = 0; a < K; a++)
                {
                    dx[a] += dφ[a] * (x[a] > 0 ? 1 : Math.Exp(x[a]));
                }
                break;
            case LinearFeatureMap.Relu:
                for (int a = 0; a < K; a++)
                {
                    dx[a] += x[a] > 0 ? dφ[a] : 0;
                }
                break;
            case LinearFeatureMap.Taylor2:
                {
                    Span<double> x̃ = K <= 256 ? stackalloc double[K] : new double[K];
                    Scaled(x, x̃);
                    for (int a = 0; a < K; a++)
                    {
                        double dx̃a = dφ[1 + a];
                        for (int b = 0; b < K; b++)
                        {
                            dx̃a += (dφ[1 + K + K * a + b] + dφ[1 + K + K * b + a]) * x̃[b] / Math.Sqrt(2);
                        }
                        dx[a] += dx̃a / Math.Sqrt(Math.Sqrt(K));
                    }
                    break;
                }
            case LinearFeatureMap.Performer:
                {
                    int M = dφ.Length;
                    Span<double> x̃ = K <= 256 ? stackalloc double[K] : new double[K];
                    Span<double> φ = M <= 256 ? stackalloc double[M] : new double[M];
                    Scaled(x, x̃);
                    Apply(map, x, φ, proj);
                    double rootRootK = Math.Sqrt(Math.Sqrt(K)), ρTotal = 0;
                    for (int r = 0; r < M; r++)
                    {
                        double ρ = dφ[r] * φ[r]; // the gradient of the exponent ω_r·x̃ − |x̃|²/2
                        ρTotal += ρ;
                        VectorKernels.Axpy(ρ / rootRootK, proj.Slice(r * K, K), dx);
                        VectorKernels.Axpy(ρ, x̃, dproj.Slice(r * K, K));
                    }
                    VectorKernels.Axpy(-ρTotal / rootRootK, x̃, dx);
                    break;
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(map), map, "unknown feature map");
        }
    }

    /// <summary>φ(x) as a new array of its dimension.</summary>
    public static double[] Of(LinearFeatureMap map, ReadOnlySpan<double> x, ReadOnlySpan<double> proj = default)
    {
        int M = map == LinearFeatureMap.Performer && x.Length > 0 ? proj.Length / x.Length : 0;
        var φ = new double[Dimension(map, x.Length, M)];
        Apply(map, x, φ, proj);
        return φ;
    }

    /// <summary>taylor2's φ(q)·φ(k) from s = q̃·k̃: 1 + s + s²/2, O(K) instead of a dot of 1 + K + K² features.</summary>
    public static double Taylor2Score(double s) => 1 + s + s * s / 2;

    /// <summary>x̃ = x / K^(1/4): the input scaling of taylor2 (Based) and performer (FAVOR+).</summary>
    public static void Scaled(ReadOnlySpan<double> x, Span<double> x̃)
    {
        double rootRootK = Math.Sqrt(Math.Sqrt(x.Length));
        for (int a = 0; a < x.Length; a++)
        {
            x̃[a] = x[a] / rootRootK;
        }
    }
}

/// <summary>
/// One (sequence, head) pair's features for linear's parallel and chunked forms: φ(q_t) on demand, φ(k_t) of every key
/// computed once (T x F, row after row), and the pair scores A_ij = φ(q_i)·φ(k_j) as products of packed rows. taylor2
/// keeps q̃ and k̃ instead and scores by <see cref="FeatureMaps.Taylor2Score"/>: at K = 128 its F = 16 513 features would
/// make every score a 16 513-long dot product.
/// </summary>
internal sealed class FeatureRows
{
    private readonly LinearFeatureMap _map;
    private readonly double[] _proj, _φq;
    private readonly RowBlock _q, _k;
    private readonly double[]? _keyFeatures;             // φ(k_t), every map but taylor2
    private readonly double[]? _scaledQuery, _scaledKey; // q̃_t, k̃_t, taylor2

    public FeatureRows(LinearFeatureMap map, double[] proj, RowBlock q, RowBlock k, int features)
    {
        (_map, _proj, _q, _k, F) = (map, proj, q, k, features);
        int T = q.Count, K = q.Width;
        _φq = new double[F];
        if (map == LinearFeatureMap.Taylor2)
        {
            (_scaledQuery, _scaledKey) = (new double[T * K], new double[T * K]);
            for (int t = 0; t < T; t++)
            {
                FeatureMaps.Scaled(q[t], _scaledQuery.AsSpan(t * K, K));
                FeatureMaps.Scaled(k[t], _scaledKey.AsSpan(t * K, K));
            }
        }
        else
        {
            _keyFeatures = new double[T * F];
            Features(_k, 0, T, _keyFeatures);
        }
    }

    /// <summary>The feature dimension.</summary>
    public int F { get; }

    /// <summary>φ(q_t) for t = first … first + count − 1, row after row, into <paramref name="φ"/> [count x F].</summary>
    public void QueryFeatures(int first, int count, Span<double> φ) => Features(_q, first, count, φ);

    /// <summary>φ(k_t) for t = first … first + count − 1, row after row, into <paramref name="φ"/> [count x F].</summary>
    public void KeyFeatures(int first, int count, Span<double> φ)
    {
        if (_keyFeatures is not null)
        {
            _keyFeatures.AsSpan(first * F, count * F).CopyTo(φ);
        }
        else
        {
            Features(_k, first, count, φ);
        }
    }

    /// <summary>A_ij = φ(q_i)·φ(k_j) for the keys j = first, first + 1, … (as many as <paramref name="A"/> holds).</summary>
    public void Scores(int i, int first, Span<double> A)
    {
        if (_scaledQuery is not null)
        {
            int K = _q.Width;
            DenseMatrix.TimesTransposed(_scaledQuery.AsSpan(i * K, K), _scaledKey.AsSpan(first * K, A.Length * K), A);
            foreach (ref double s in A)
            {
                s = FeatureMaps.Taylor2Score(s);
            }
            return;
        }
        QueryFeatures(i, 1, _φq);
        DenseMatrix.TimesTransposed(_φq, _keyFeatures.AsSpan(first * F, A.Length * F), A);
    }

    /// <summary>
    /// The width of the rows whose products are the scores: F (φ(q_i)·φ(k_j)), or K for taylor2, whose scores are
    /// 1 + s + s²/2 of s = q̃_i·k̃_j.
    /// </summary>
    public int ScoreWidth => _scaledQuery is null ? F : _q.Width;

    /// <summary>The rows of queries first … first + count − 1 whose products are the scores (φ(q_t), or q̃_t), row after row.</summary>
    public void QueryScoreRows(int first, int count, Span<double> rows)
    {
        if (_scaledQuery is not null)
        {
            _scaledQuery.AsSpan(first * ScoreWidth, count * ScoreWidth).CopyTo(rows);
        }
        else
        {
            QueryFeatures(first, count, rows);
        }
    }

    /// <summary>The rows of keys first … first + count − 1 whose products are the scores (φ(k_t), or k̃_t), row after row.</summary>
    public ReadOnlySpan<double> KeyScoreRows(int first, int count) =>
        (_scaledKey ?? _keyFeatures).AsSpan(first * ScoreWidth, count * ScoreWidth);

    /// <summary>
    /// dA_j ← dA_j · ∂A_ij/∂s_ij for the keys j = first, first + 1, …: the gradient of the product of the score rows. That
    /// is dA itself for products of features, and dA_j · (1 + s_ij) for taylor2's A = 1 + s + s²/2.
    /// </summary>
    public void ScoreSlopes(int i, int first, Span<double> dA)
    {
        if (_scaledQuery is null)
        {
            return;
        }
        int K = _q.Width;
        Span<double> s = dA.Length <= 256 ? stackalloc double[dA.Length] : new double[dA.Length];
        DenseMatrix.TimesTransposed(_scaledQuery.AsSpan(i * K, K), _scaledKey.AsSpan(first * K, dA.Length * K), s);
        for (int j = 0; j < dA.Length; j++)
        {
            dA[j] *= 1 + s[j];
        }
    }

    /// <summary>
    /// dq_t += the chain rule of the gradients of φ(q_t) (<paramref name="dφ"/>, F values, overwritten) and of its score row
    /// (<paramref name="dRow"/>, <see cref="ScoreWidth"/> values, or empty); performer's dproj too.
    /// </summary>
    public void QueryBackward(int t, Span<double> dφ, ReadOnlySpan<double> dRow, Span<double> dq, Span<double> dproj) =>
        Backward(_q[t], dφ, dRow, dq, dproj);

    /// <summary>dk_t alike, from the gradients of φ(k_t) and of its score row.</summary>
    public void KeyBackward(int t, Span<double> dφ, ReadOnlySpan<double> dRow, Span<double> dk, Span<double> dproj) =>
        Backward(_k[t], dφ, dRow, dk, dproj);

    private void Backward(ReadOnlySpan<double> x, Span<double> dφ, ReadOnlySpan<double> dRow, Span<double> dx, Span<double> dproj)
    {
        if (_scaledQuery is null && !dRow.IsEmpty)
        {
            VectorKernels.AddTo(dRow, dφ); // the score rows are the features
        }
        FeatureMaps.Backward(_map, x, dφ, dx, _proj, dproj);
        if (_scaledQuery is not null && !dRow.IsEmpty)
        {
            VectorKernels.Axpy(1 / Math.Sqrt(Math.Sqrt(x.Length)), dRow, dx); // x̃ = x / K^(1/4)
        }
    }

    private void Features(RowBlock x, int first, int count, Span<double> φ)
    {
        for (int t = first; t < first + count; t++)
        {
            FeatureMaps.Apply(_map, x[t], φ.Slice((t - first) * F, F), _proj);
        }
    }
}
