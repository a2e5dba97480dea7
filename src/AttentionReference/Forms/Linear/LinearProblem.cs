using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Linear;

/// <summary>
/// One (sequence, head) pair of linear attention: its rows of q, k, v packed step after step, the feature map, the
/// pair scores and the output rule every variant shares.
/// </summary>
internal sealed class LinearHead
{
    private readonly LinearFeatureMap _map;
    private readonly Tensor? _proj;
    private readonly double[] _query, _key, _value, _ones, _φq;
    private readonly double[]? _keyFeatures;          // φ(k_t) of every key (T x F), for the scores of all maps but taylor2
    private readonly double[]? _scaledQuery, _scaledKey; // x̃ = x / K^(1/4) of every q and k, taylor2's scores need only these

    public LinearHead(LinearFeatureMap map, Tensor? proj, double[] query, double[] key, double[] value, int t, int k, int f, int v,
        double scale, bool normalize, double eps, bool causal, bool hasInitialState)
    {
        (_map, _proj, _query, _key, _value) = (map, proj, query, key, value);
        (T, K, F, V, Scale, Normalize, Eps, Causal, HasInitialState) = (t, k, f, v, scale, normalize, eps, causal, hasInitialState);
        _ones = new double[t];
        Array.Fill(_ones, 1.0);
        _φq = new double[f];
        if (map == LinearFeatureMap.Taylor2)
        {
            (_scaledQuery, _scaledKey) = (new double[t * k], new double[t * k]);
            for (int r = 0; r < t; r++)
            {
                Linear.Scaled(Row(query, r, k)).CopyTo(_scaledQuery, r * k);
                Linear.Scaled(Row(key, r, k)).CopyTo(_scaledKey, r * k);
            }
        }
        else
        {
            _keyFeatures = new double[t * f];
            Features(_key, 0, t, _keyFeatures);
        }
    }

    public int T { get; }
    public int K { get; }
    public int F { get; }
    public int V { get; }
    public double Scale { get; }
    public bool Normalize { get; }
    public double Eps { get; }
    public bool Causal { get; }

    /// <summary>Whether the caller gave initial_state or initial_normalizer (otherwise both start at zero).</summary>
    public bool HasInitialState { get; }

    /// <summary>v_t.</summary>
    public ReadOnlySpan<double> Value(int t) => Row(_value, t, V);

    /// <summary>v_first … v_{first+count−1}, packed row after row.</summary>
    public ReadOnlySpan<double> Values(int first, int count) => _value.AsSpan(first * V, count * V);

    /// <summary>A column of <paramref name="count"/> ones: the "values" whose weighted sums are the denominators.</summary>
    public ReadOnlySpan<double> Ones(int count) => _ones.AsSpan(0, count);

    /// <summary>φ(q_t) for t = first … first + count − 1, row after row, into <paramref name="φ"/> [count x F].</summary>
    public void QueryFeatures(int first, int count, Span<double> φ) => Features(_query, first, count, φ);

    /// <summary>φ(k_t) for t = first … first + count − 1, row after row, into <paramref name="φ"/> [count x F].</summary>
    public void KeyFeatures(int first, int count, Span<double> φ)
    {
        if (_keyFeatures is not null)
        {
            _keyFeatures.AsSpan(first * F, count * F).CopyTo(φ);
        }
        else
        {
            Features(_key, first, count, φ);
        }
    }

    /// <summary>
    /// A_ij = φ(q_i)·φ(k_j) for the keys j = first, first + 1, … (as many as <paramref name="A"/> holds). taylor2 takes
    /// its identity φ(q)·φ(k) = 1 + x + x²/2 with x = q̃·k̃ = q·k/√K (Linear.FeatureMap), O(K) a pair instead of
    /// O(K²): at K = 128 its F = 16 513 features would make every score a 16 513-long dot product.
    /// </summary>
    public void Scores(int i, int first, Span<double> A)
    {
        if (_scaledQuery is not null)
        {
            DenseMatrix.TimesTransposed(Row(_scaledQuery, i, K), _scaledKey.AsSpan(first * K, A.Length * K), A);
            foreach (ref double x in A)
            {
                x = 1 + x + x * x / 2;
            }
            return;
        }
        QueryFeatures(i, 1, _φq);
        DenseMatrix.TimesTransposed(_φq, _keyFeatures.AsSpan(first * F, A.Length * F), A);
    }

    /// <summary>o = scale · n, divided by scale · d + eps when normalised (<paramref name="o"/> may be <paramref name="numerator"/>).</summary>
    public void Finish(ReadOnlySpan<double> numerator, double denominator, Span<double> o)
    {
        for (int c = 0; c < V; c++)
        {
            o[c] = Normalize ? Scale * numerator[c] / (Scale * denominator + Eps) : Scale * numerator[c];
        }
    }

    private void Features(double[] x, int first, int count, Span<double> φ)
    {
        for (int t = first; t < first + count; t++)
        {
            Linear.FeatureMap(_map, Row(x, t, K), _proj).CopyTo(φ.Slice((t - first) * F, F));
        }
    }

    private static ReadOnlySpan<double> Row(double[] x, int t, int width) => x.AsSpan(t * width, width);
}

/// <summary>The validated inputs of one linear-attention call and its batch/varlen/head loop.</summary>
internal sealed class LinearProblem
{
    private readonly Tensor _q, _k, _v;
    private readonly LinearOptions _options;
    private readonly IReadOnlyList<SequenceSlice> _slices;
    private readonly int _batch, _time, _heads, _keyDim, _valueDim, _featureDim;
    private readonly double _scale;

    private LinearProblem(Tensor q, Tensor k, Tensor v, LinearOptions options, Dims dims, IReadOnlyList<SequenceSlice> slices)
    {
        (_q, _k, _v, _options, _slices) = (q, k, v, options, slices);
        (_batch, _time, _heads, _keyDim, _valueDim, _featureDim) = (dims["B"], dims["T"], dims["H"], dims["K"], dims["V"], dims["F"]);
        _scale = options.Scale ?? 1 / Math.Sqrt(_featureDim);
    }

    /// <summary>Checks shapes, dtypes and options; every error names the tensor or option at fault.</summary>
    public static LinearProblem Bind(Tensor q, Tensor k, Tensor v, LinearOptions options)
    {
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        bool performer = options.FeatureMap == LinearFeatureMap.Performer;
        if (performer != options.Proj is not null)
        {
            throw new InputException(performer ? "required by feature_map=performer (shape [M,K])" : "given, but only feature_map=performer uses it", tensor: "proj");
        }
        if (options.Proj is not null)
        {
            dims.Bind("proj", Dims.RequireFloat("proj", options.Proj), "M,K");
        }
        dims.Set("F", Linear.FeatureDimension(options.FeatureMap, dims["K"], performer ? dims["M"] : 0));
        var slices = Sequences.BindNormalisedState(dims, "F", options.InitialState, options.InitialNormalizer, options.CuSeqlens);
        if (!(options.Eps >= 0))
        {
            throw new InputException($"parameter 'eps' must be ≥ 0, found {options.Eps}");
        }
        return new LinearProblem(q, k, v, options, dims, slices);
    }

    /// <summary>
    /// Runs <paramref name="head"/> on every (sequence, head) pair (<see cref="SequenceHeads"/>) with S [F x V] (row-major)
    /// and z [F] at their initial values and the pair's rows of o (zeros) to write; it leaves S and z final.
    /// </summary>
    public LinearResult Run(Action<LinearHead, double[], double[], RowBlock> head)
    {
        int F = _featureDim, V = _valueDim;
        bool hasInitialState = _options.InitialState is not null || _options.InitialNormalizer is not null;
        var result = SequenceHeads.Run(_slices, _batch, _time, _heads, V,
            [new StateTensor(_options.InitialState, F, V), new StateTensor(_options.InitialNormalizer, F)], pair =>
            {
                var rows = new LinearHead(_options.FeatureMap, _options.Proj, pair.Gather(_q), pair.Gather(_k), pair.Gather(_v), pair.Length,
                    _keyDim, F, V, _scale, _options.Normalize, _options.Eps, _options.Causal, hasInitialState);
                head(rows, pair.State(0), pair.State(1), pair.OutputRows());
            });
        return new LinearResult(result.O, result.FinalStates[0], result.FinalStates[1]);
    }
}
