using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// One (sequence, head) pair of power attention: its rows of q, k, v packed step after step, its gates, and the pieces
/// every variant shares (the feature map φ, the pair weights, the output rule).
/// </summary>
internal sealed class PowerHead
{
    private readonly (int[] Indices, double Coefficient)[] _terms;
    private readonly double[] _query, _key, _value;
    private readonly double[] _decay, _power; // scratch rows of Weights, as long as the longest row of keys
    private readonly double[] _ones;
    private readonly int _keyDim;

    public PowerHead(double[] query, double[] key, double[] value, double[] gate, int k, int v, int degree, double scale,
        bool normalize, double eps, bool hasInitialState, (int[] Indices, double Coefficient)[] terms)
    {
        (_query, _key, _value, Gate, _keyDim, V, Degree, Scale, Normalize, Eps, HasInitialState, _terms) =
            (query, key, value, gate, k, v, degree, scale, normalize, eps, hasInitialState, terms);
        (_decay, _power, _ones) = (new double[gate.Length], new double[gate.Length], new double[gate.Length]);
        Array.Fill(_ones, 1.0);
    }

    public double[] Gate { get; }
    public int V { get; }
    public int Degree { get; }
    public double Scale { get; }
    public bool Normalize { get; }
    public double Eps { get; }

    /// <summary>Whether the caller gave initial_state or initial_normalizer (otherwise both start at zero).</summary>
    public bool HasInitialState { get; }

    public int T => Gate.Length;
    public int D => _terms.Length;

    /// <summary>q_t.</summary>
    public ReadOnlySpan<double> Query(int t) => _query.AsSpan(t * _keyDim, _keyDim);

    /// <summary>v_t.</summary>
    public ReadOnlySpan<double> Value(int t) => _value.AsSpan(t * V, V);

    /// <summary>A column of T ones: the "values" whose weighted sums are the denominators (see Power's arithmetic).</summary>
    public ReadOnlySpan<double> Ones => _ones;

    /// <summary>v_first … v_{first+count−1}, packed row after row.</summary>
    public ReadOnlySpan<double> Values(int first, int count) => _value.AsSpan(first * V, count * V);

    /// <summary>φ(s q_t) into <paramref name="φ"/>.</summary>
    public void PhiQ(int t, Span<double> φ) => Map(Query(t), Scale, φ);

    /// <summary>φ(k_t) into <paramref name="φ"/>.</summary>
    public void PhiK(int t, Span<double> φ) => Map(_key.AsSpan(t * _keyDim, _keyDim), 1, φ);

    /// <summary>
    /// w_j = (s q_t·k_j)^p · exp(ℓ_j) for the keys j = first, first + 1, … (as many as <paramref name="w"/> holds), with
    /// ℓ the log decay of each pair; <paramref name="logDecay"/> may be <paramref name="w"/> itself. The power is taken
    /// as p − 1 products (exact for p ≤ 2, a few ulps from x^p above).
    /// </summary>
    public void Weights(int t, int first, ReadOnlySpan<double> logDecay, Span<double> w)
    {
        Span<double> decay = _decay.AsSpan(0, w.Length), power = _power.AsSpan(0, w.Length);
        VectorKernels.Exp(logDecay, decay);
        DenseMatrix.TimesTransposed(Query(t), _key.AsSpan(first * _keyDim, w.Length * _keyDim), w);
        VectorKernels.Scale(Scale, w);
        w.CopyTo(power);
        for (int r = 1; r < Degree; r++)
        {
            VectorKernels.Multiply(power, w, power);
        }
        VectorKernels.Multiply(power, decay, w);
    }

    /// <summary>o = n / (d + eps) when normalised, n otherwise (<paramref name="o"/> may be <paramref name="numerator"/>).</summary>
    public void Finish(ReadOnlySpan<double> numerator, double denominator, Span<double> o)
    {
        if (Normalize)
        {
            VectorKernels.Divide(numerator, denominator + Eps, o);
        }
        else
        {
            numerator.CopyTo(o);
        }
    }

    private void Map(ReadOnlySpan<double> x, double factor, Span<double> φ)
    {
        for (int α = 0; α < _terms.Length; α++)
        {
            double product = _terms[α].Coefficient;
            foreach (int a in _terms[α].Indices)
            {
                product *= factor * x[a];
            }
            φ[α] = product;
        }
    }
}

/// <summary>The validated inputs of one power-attention call and its batch/varlen/head loop.</summary>
internal sealed class PowerProblem
{
    private readonly Tensor _q, _k, _v;
    private readonly Tensor? _g;
    private readonly PowerOptions _options;
    private readonly IReadOnlyList<SequenceSlice> _slices;
    private readonly int _batch, _time, _heads, _keyDim, _valueDim;
    private readonly double _scale;
    private readonly (int[] Indices, double Coefficient)[] _terms;

    private PowerProblem(Tensor q, Tensor k, Tensor v, Tensor? g, PowerOptions options, Dims dims, IReadOnlyList<SequenceSlice> slices)
    {
        (_q, _k, _v, _g, _options, _slices) = (q, k, v, g, options, slices);
        (_batch, _time, _heads, _keyDim, _valueDim) = (dims["B"], dims["T"], dims["H"], dims["K"], dims["V"]);
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
        var slices = Sequences.BindNormalisedState(dims, "D", options.InitialState, options.InitialNormalizer, options.CuSeqlens);
        return new PowerProblem(q, k, v, g, options, dims, slices);
    }

    /// <summary>
    /// Runs <paramref name="head"/> on every (sequence, head) pair (<see cref="SequenceHeads"/>) with S [D x V] (row-major)
    /// and z [D] at their initial values and the pair's rows of o (zeros) to write; it leaves S and z final.
    /// </summary>
    public PowerResult Run(Action<PowerHead, double[], double[], RowBlock> head)
    {
        int D = _terms.Length, V = _valueDim;
        bool hasInitialState = _options.InitialState is not null || _options.InitialNormalizer is not null;
        var result = SequenceHeads.Run(_slices, _batch, _time, _heads, V,
            [new StateTensor(_options.InitialState, D, V), new StateTensor(_options.InitialNormalizer, D)], pair =>
            {
                double[] gate = _g is null ? new double[pair.Length] : pair.Gather(_g);
                var rows = new PowerHead(pair.Gather(_q), pair.Gather(_k), pair.Gather(_v), gate, _keyDim, V, _options.Degree, _scale,
                    _options.Normalize, _options.Eps, hasInitialState, _terms);
                head(rows, pair.State(0), pair.State(1), pair.OutputRows());
            });
        return new PowerResult(result.O, result.FinalStates[0], result.FinalStates[1]);
    }
}
