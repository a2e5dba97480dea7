using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// Power attention (symmetric power transformers; Buckman, Gelada, Zhang, Manifest AI 2024, "Symmetric Power
/// Transformers", and the power-attention library), exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   g [B,T,H] (optional log gates ≤ 0)
///   initial_state [N,H,D,V]   initial_normalizer [N,H,D]   (optional; N = B, or sequences with cu_seqlens)
///   →   o [B,T,H,V]   final_state [N,H,D,V]   final_normalizer [N,H,D]
///   p = deg ≥ 1, D = C(K+p−1, p) the symmetric power dimension.
///
/// Per sequence and head, with s = scale (K^(-1/2) unless given) and the decay between steps j ≤ i
///   γ(i, j) = exp(g_{j+1} + … + g_i)   (1 without g; γ(i, i) = 1):
///   w_ij = (s · q_i·k_j)^p · γ(i, j)                                for j ≤ i
///   n_i  = γ(i, −1) · φ(s q_i)ᵀ S0 + Σ_{j≤i} w_ij v_j                 S0 = initial_state (0 if absent)
///   d_i  = γ(i, −1) · φ(s q_i)·z0  + Σ_{j≤i} w_ij                     z0 = initial_normalizer (0 if absent)
///   o_i  = n_i / (d_i + eps)        normalize = true (default)
///   o_i  = n_i                      normalize = false
///   (γ(i, −1) = exp(g_0 + … + g_i): the initial state decays by every gate of the sequence, as the recurrence says.)
///
/// Symmetric power feature map (φ(x)·φ(y) = (x·y)^p exactly, by the multinomial theorem):
///   one entry per multi-index a_1 ≤ a_2 ≤ … ≤ a_p over [0, K), in lexicographic order; with α_c the number of
///   times channel c occurs,  φ(x)_α = √(p! / Π_c α_c!) · Π_r x_{a_r}.
///
/// Variants:
///   quadratic  the weights above, masked j ≤ i (the definition); the decay of each pair is summed over (j, i].
///   recurrent  S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ,  z_t = exp(g_t) z_{t−1} + φ(k_t);
///              o_t = φ(s q_t)ᵀ S_t / (φ(s q_t)·z_t + eps)  (numerator alone when not normalised).
///   chunked    chunks of C steps (any C ≥ 1): the state entering the chunk, decayed to t relative to the chunk's
///              start, plus the quadratic weights inside the chunk; then S, z advance over the chunk.
///   final_state = S_{T−1}, final_normalizer = z_{T−1}, always written.
/// </code>
/// Sources and choices:
/// - The weights and the normaliser are power-attention's (m-a-n-i-f-e-s-t/power-attention; the copy searched was
///   power_attention/_attention/reference.py and power_full_maker.py): s = matmul(Q, Kᵀ) · scale, then the power
///   deg · log|s| (sign kept for odd deg), plus the gate difference G_i − G_j of cumulative log gates, and with
///   norm = True the output divided by the row sum. power_full's default scale is 1/√d (d the head dimension), and
///   the doc string's RNN form Y_i = S_i φ(Q_i) / (Z_i φ(Q_i)) is our recurrent variant. The gate of step j does not
///   decay key j itself (G_i − G_j), as in gated linear attention.
/// - Stabilisation: the reference computes exp(deg·log(|s| + 1e-7) − rowmax) and adds 1e-6 to the row sum after the
///   row-max shift (so its eps is relative to the largest weight); chunked kernels gate keys by exp(ΔG/deg) before
///   the feature map. We compute the weights exactly, and the normaliser eps is absolute and defaults to 0, so that
///   all three variants are the same function; set eps to compare with a stabilised kernel on tiny weights.
/// - deg: the library asserts deg even (even p makes every weight ≥ 0, so the normaliser is positive); we accept
///   any p ≥ 1 so that p = 1 reduces to linear attention (normalize = false: linear with φ = identity; with g:
///   simple_gla). With odd p and normalize = true the row sum can vanish: the output is then ±∞ or NaN, not hidden.
/// - The library keeps only the state S (its normaliser is the extra column of a D(d+1) state); we keep S and z as
///   two tensors, as our linear form does, so state passing works in both modes. Its initial_state is not gated
///   (a TODO there); ours decays by the gates like every other state.
/// - The library also offers an output layer norm ("Norm" in its doc string) and GQA; neither is part of this form.
/// </summary>
public static class Power
{
    /// <summary>The quadratic form: weights (s q_i·k_j)^p γ(i, j) for j ≤ i; the definition.</summary>
    public static PowerResult Quadratic(Tensor q, Tensor k, Tensor v, Tensor? g = null, PowerOptions? options = null) =>
        PowerProblem.Bind(q, k, v, g, options ?? new PowerOptions()).Run((head, S0, z0) =>
        {
            var o = new double[head.T][];
            for (int i = 0; i < head.T; i++)
            {
                var numerator = new double[head.V];
                double denominator = 0;
                // Keys j = i, i−1, …, 0, the log decay log γ(i, j) growing by g_{j+1} at each step back.
                double logDecay = 0;
                for (int j = i; j >= 0; j--)
                {
                    if (j < i)
                    {
                        logDecay += head.Gate[j + 1];
                    }
                    double w = Math.Pow(head.Scale * Dot(head.Query[i], head.Key[j]), head.Degree) * Math.Exp(logDecay);
                    for (int c = 0; c < head.V; c++)
                    {
                        numerator[c] += w * head.Value[j][c];
                    }
                    denominator += w;
                }
                // The initial state, decayed by every gate up to i.
                double γ0 = Math.Exp(logDecay + head.Gate[0]);
                double[] φq = head.PhiQ(i);
                double[] fromState = Transposed(S0, φq, head.V);
                for (int c = 0; c < head.V; c++)
                {
                    numerator[c] += γ0 * fromState[c];
                }
                denominator += γ0 * Dot(φq, z0);
                o[i] = head.Finish(numerator, denominator);
            }
            for (int t = 0; t < head.T; t++)
            {
                Step(head, t, S0, z0); // final_state and final_normalizer
            }
            return o;
        });

    /// <summary>The recurrence over the symmetric power state, token by token.</summary>
    public static PowerResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor? g = null, PowerOptions? options = null) =>
        PowerProblem.Bind(q, k, v, g, options ?? new PowerOptions()).Run((head, S, z) =>
        {
            var o = new double[head.T][];
            for (int t = 0; t < head.T; t++)
            {
                Step(head, t, S, z);
                double[] φq = head.PhiQ(t);
                o[t] = head.Finish(Transposed(S, φq, head.V), Dot(φq, z));
            }
            return o;
        });

    /// <summary>Chunks of <paramref name="chunkSize"/> steps (any C ≥ 1).</summary>
    public static PowerResult Chunked(Tensor q, Tensor k, Tensor v, int chunkSize, Tensor? g = null, PowerOptions? options = null)
    {
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
        return PowerProblem.Bind(q, k, v, g, options ?? new PowerOptions()).Run((head, S, z) =>
        {
            var o = new double[head.T][];
            for (int s = 0; s < head.T; s += chunkSize)
            {
                int e = Math.Min(s + chunkSize, head.T);
                // b_t = g_s + … + g_t: log decay from the chunk's entry to t (relative to the chunk's start, ≤ 0).
                var b = new double[e - s];
                for (int t = s; t < e; t++)
                {
                    b[t - s] = (t > s ? b[t - s - 1] : 0) + head.Gate[t];
                }
                for (int t = s; t < e; t++)
                {
                    // 1. inter-chunk part: the state entering the chunk, decayed by exp(b_t).
                    double[] φq = head.PhiQ(t);
                    double entry = Math.Exp(b[t - s]);
                    double[] numerator = Transposed(S, φq, head.V);
                    double denominator = Dot(φq, z);
                    for (int c = 0; c < head.V; c++)
                    {
                        numerator[c] *= entry;
                    }
                    denominator *= entry;
                    // 2. intra-chunk part: w_tj = (s q_t·k_j)^p exp(b_t − b_j) for s ≤ j ≤ t.
                    for (int j = s; j <= t; j++)
                    {
                        double w = Math.Pow(head.Scale * Dot(head.Query[t], head.Key[j]), head.Degree) * Math.Exp(b[t - s] - b[j - s]);
                        for (int c = 0; c < head.V; c++)
                        {
                            numerator[c] += w * head.Value[j][c];
                        }
                        denominator += w;
                    }
                    o[t] = head.Finish(numerator, denominator);
                }
                // 3. the state handed on: S ← exp(b_last) S + Σ_j exp(b_last − b_j) φ(k_j) v_jᵀ, z likewise.
                double last = b[e - s - 1];
                double whole = Math.Exp(last);
                for (int a = 0; a < head.D; a++)
                {
                    for (int c = 0; c < head.V; c++)
                    {
                        S[a][c] *= whole;
                    }
                    z[a] *= whole;
                }
                for (int j = s; j < e; j++)
                {
                    double[] φk = head.PhiK(j);
                    double decay = Math.Exp(last - b[j - s]);
                    for (int a = 0; a < head.D; a++)
                    {
                        double weight = decay * φk[a];
                        for (int c = 0; c < head.V; c++)
                        {
                            S[a][c] += weight * head.Value[j][c];
                        }
                        z[a] += weight;
                    }
                }
            }
            return o;
        });
    }

    /// <summary>The symmetric power dimension D = C(K+p−1, p).</summary>
    public static int FeatureDimension(int keyDim, int degree)
    {
        long d = 1;
        for (int r = 1; r <= degree; r++)
        {
            d = d * (keyDim + r - 1) / r; // exact: a product of r consecutive integers is divisible by r!
            if (d > int.MaxValue)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"the symmetric power dimension C(K+p−1, p) for K = {keyDim}, deg = {degree} is too large"));
            }
        }
        return (int)d;
    }

    /// <summary>φ(x) of degree <paramref name="degree"/>: one entry per multi-index a_1 ≤ … ≤ a_p, lexicographic.</summary>
    public static double[] FeatureMap(ReadOnlySpan<double> x, int degree)
    {
        var terms = SymmetricTerms(x.Length, degree);
        var φ = new double[terms.Length];
        for (int α = 0; α < terms.Length; α++)
        {
            double product = terms[α].Coefficient;
            foreach (int a in terms[α].Indices)
            {
                product *= x[a];
            }
            φ[α] = product;
        }
        return φ;
    }

    /// <summary>The multi-indices a_1 ≤ … ≤ a_p over [0, K) and their weights √(p!/Π α_c!).</summary>
    internal static (int[] Indices, double Coefficient)[] SymmetricTerms(int keyDim, int degree)
    {
        var terms = new List<(int[], double)>();
        var indices = new int[degree];
        void Fill(int position, int from)
        {
            if (position == degree)
            {
                // p! / Π α_c!, with α_c the run lengths of equal indices.
                double multinomial = Factorial(degree);
                int run = 1;
                for (int r = 1; r <= degree; r++)
                {
                    if (r < degree && indices[r] == indices[r - 1])
                    {
                        run++;
                    }
                    else
                    {
                        multinomial /= Factorial(run);
                        run = 1;
                    }
                }
                terms.Add(((int[])indices.Clone(), Math.Sqrt(multinomial)));
                return;
            }
            for (int a = from; a < keyDim; a++)
            {
                indices[position] = a;
                Fill(position + 1, a);
            }
        }
        Fill(0, 0);
        return [.. terms];
    }

    private static double Factorial(int n)
    {
        double f = 1;
        for (int r = 2; r <= n; r++)
        {
            f *= r;
        }
        return f;
    }

    /// <summary>S ← exp(g_t) S + φ(k_t) v_tᵀ, z ← exp(g_t) z + φ(k_t).</summary>
    private static void Step(PowerHead head, int t, double[][] S, double[] z)
    {
        double decay = Math.Exp(head.Gate[t]);
        double[] φk = head.PhiK(t);
        for (int a = 0; a < head.D; a++)
        {
            for (int c = 0; c < head.V; c++)
            {
                S[a][c] = decay * S[a][c] + φk[a] * head.Value[t][c];
            }
            z[a] = decay * z[a] + φk[a];
        }
    }

    private static double[] Transposed(double[][] S, double[] x, int v)
    {
        var result = new double[v];
        for (int a = 0; a < x.Length; a++)
        {
            for (int c = 0; c < v; c++)
            {
                result[c] += x[a] * S[a][c];
            }
        }
        return result;
    }

    private static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        double sum = 0;
        for (int a = 0; a < x.Length; a++)
        {
            sum += x[a] * y[a];
        }
        return sum;
    }
}

/// <summary>The options of <see cref="Power"/>; defaults give normalised power attention of degree 2.</summary>
public sealed record PowerOptions
{
    /// <summary>The power p (power-attention's deg), ≥ 1; the library uses even p.</summary>
    public int Degree { get; init; } = 2;

    /// <summary>Divide by the sum of the weights (plus eps), as power-attention's norm = True.</summary>
    public bool Normalize { get; init; } = true;

    /// <summary>Added to the normaliser; 0 by default (exact).</summary>
    public double Eps { get; init; }

    /// <summary>Weights (scale · q·k)^p; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>S before the first step, [N,H,D,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>z before the first step, [N,H,D]; null means zeros.</summary>
    public Tensor? InitialNormalizer { get; init; }

    /// <summary>Varlen: int32/int64 [N+1] sequence boundaries along T, with B = 1.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of power attention: o [B,T,H,V], final_state [N,H,D,V], final_normalizer [N,H,D].</summary>
public sealed record PowerResult(Tensor O, Tensor FinalState, Tensor FinalNormalizer);

/// <summary>One (sequence, head) pair's rows, gates and output rule.</summary>
internal sealed class PowerHead
{
    private readonly (int[] Indices, double Coefficient)[] _terms;

    public PowerHead(double[][] query, double[][] key, double[][] value, double[] gate, int v, int degree, double scale,
        bool normalize, double eps, (int[] Indices, double Coefficient)[] terms)
    {
        (Query, Key, Value, Gate, V, Degree, Scale, Normalize, Eps, _terms) = (query, key, value, gate, v, degree, scale, normalize, eps, terms);
    }

    public double[][] Query { get; }
    public double[][] Key { get; }
    public double[][] Value { get; }
    public double[] Gate { get; }
    public int V { get; }
    public int Degree { get; }
    public double Scale { get; }
    public bool Normalize { get; }
    public double Eps { get; }
    public int T => Value.Length;
    public int D => _terms.Length;

    /// <summary>φ(s q_t).</summary>
    public double[] PhiQ(int t) => Map(Query[t], Scale);

    /// <summary>φ(k_t).</summary>
    public double[] PhiK(int t) => Map(Key[t], 1);

    /// <summary>n / (d + eps) when normalised, n otherwise.</summary>
    public double[] Finish(double[] numerator, double denominator)
    {
        var o = new double[V];
        for (int c = 0; c < V; c++)
        {
            o[c] = Normalize ? numerator[c] / (denominator + Eps) : numerator[c];
        }
        return o;
    }

    private double[] Map(double[] x, double factor)
    {
        var φ = new double[_terms.Length];
        for (int α = 0; α < _terms.Length; α++)
        {
            double product = _terms[α].Coefficient;
            foreach (int a in _terms[α].Indices)
            {
                product *= factor * x[a];
            }
            φ[α] = product;
        }
        return φ;
    }
}

/// <summary>The validated inputs of one power-attention call and its batch/varlen/head loop.</summary>
internal sealed class PowerProblem
{
    private readonly Tensor _q, _k, _v;
    private readonly Tensor? _g;
    private readonly PowerOptions _options;
    private readonly IReadOnlyList<SequenceSlice> _slices;
    private readonly int _batch, _time, _heads, _valueDim;
    private readonly double _scale;
    private readonly (int[] Indices, double Coefficient)[] _terms;

    private PowerProblem(Tensor q, Tensor k, Tensor v, Tensor? g, PowerOptions options, Dims dims, IReadOnlyList<SequenceSlice> slices)
    {
        (_q, _k, _v, _g, _options, _slices) = (q, k, v, g, options, slices);
        (_batch, _time, _heads, _valueDim) = (dims["B"], dims["T"], dims["H"], dims["V"]);
        _scale = options.Scale ?? 1 / Math.Sqrt(dims["K"]);
        _terms = Power.SymmetricTerms(dims["K"], options.Degree);
    }

    /// <summary>Checks shapes, dtypes and options; every error names the tensor or parameter at fault.</summary>
    public static PowerProblem Bind(Tensor q, Tensor k, Tensor v, Tensor? g, PowerOptions options)
    {
        if (options.Degree < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'deg' must be ≥ 1, found {options.Degree}"));
        }
        if (!(options.Eps >= 0))
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'eps' must be ≥ 0, found {options.Eps}"));
        }
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        if (g is not null)
        {
            dims.Bind("g", Dims.RequireFloat("g", g), "B,T,H");
        }
        dims.Set("D", Power.FeatureDimension(dims["K"], options.Degree));
        var slices = Sequences.Slices(dims["B"], dims["T"], options.CuSeqlens);
        dims.Set("N", Sequences.StateCount(slices));
        if (options.InitialState is not null)
        {
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", options.InitialState), "N,H,D,V");
        }
        if (options.InitialNormalizer is not null)
        {
            dims.Bind("initial_normalizer", Dims.RequireFloat("initial_normalizer", options.InitialNormalizer), "N,H,D");
        }
        return new PowerProblem(q, k, v, g, options, dims, slices);
    }

    /// <summary>
    /// Runs <paramref name="head"/> on every (sequence, head) pair with S [D][V] and z [D] at their initial values; it
    /// returns o's rows and leaves S and z final. One task per pair, so results do not depend on the thread count.
    /// </summary>
    public PowerResult Run(Func<PowerHead, double[][], double[], double[][]> head)
    {
        int H = _heads, D = _terms.Length, V = _valueDim;
        var o = Tensor.Zeros(_batch, _time, H, V);
        var finalState = Tensor.Zeros(_slices.Count, H, D, V);
        var finalNormalizer = Tensor.Zeros(_slices.Count, H, D);
        System.Threading.Tasks.Parallel.For(0, _slices.Count * H, pair =>
        {
            SequenceSlice slice = _slices[pair / H];
            int h = pair % H, n = slice.StateIndex;
            double[][] S = PerHead.InitialState(_options.InitialState, n, h, D, V);
            double[] z = _options.InitialNormalizer is null ? new double[D] : _options.InitialNormalizer.Data.AsSpan((n * H + h) * D, D).ToArray();
            double[] gate = _g is null ? new double[slice.Length] : PerHead.Scalars(_g, slice, h);
            var rows = new PowerHead(PerHead.Rows(_q, slice, h), PerHead.Rows(_k, slice, h), PerHead.Rows(_v, slice, h), gate, V,
                _options.Degree, _scale, _options.Normalize, _options.Eps, _terms);
            PerHead.WriteRows(o, head(rows, S, z), slice, h);
            PerHead.WriteState(finalState, S, n, h);
            z.CopyTo(finalNormalizer.Data.AsSpan((n * H + h) * D, D));
        });
        return new PowerResult(o, finalState, finalNormalizer);
    }
}
