using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// The options shared by <see cref="DeltaRule"/>, <see cref="GatedDeltaRule"/> and <see cref="Kda"/>, named as in fla's
/// public functions (<c>chunk_delta_rule</c>, <c>chunk_gated_delta_rule</c>, <c>chunk_kda</c>).
/// </summary>
public sealed record DeltaOptions
{
    /// <summary>Output scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>
    /// fla's <c>use_qk_l2norm_in_kernel</c>: q and k are divided by √(Σx² + ε), ε = <see cref="DeltaProblem.L2NormEpsilon"/>,
    /// before anything else (before the scale).
    /// </summary>
    public bool UseQkL2Norm { get; init; }

    /// <summary>The state each sequence starts from, [N,HV,K,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>Varlen offsets [N+1] (B = 1); null means each batch entry is one sequence.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of a delta-rule form: o [B,T,HV,V] and final_state [N,HV,K,V].</summary>
public sealed record DeltaResult(Tensor O, Tensor FinalState);

/// <summary>
/// The inputs of one (sequence, value head) pair, gathered into row-major arrays: everything a variant needs to run that
/// head from start to end on its own. q and k are already L2-normalised when asked (not scaled).
/// </summary>
internal sealed record DeltaHead(
    int Length,
    int Dk,
    int Dv,
    double Scale,
    double[] Q,
    double[] K,
    double[] V,
    double[] Beta,
    bool BetaPerValue,
    double[]? G,
    double[]? Gk,
    double[] InitialState)
{
    /// <summary>β of step t for value column c (headwise β ignores c).</summary>
    public double BetaAt(int t, int c) => BetaPerValue ? Beta[t * Dv + c] : Beta[t];

    /// <summary>Row t of a [L, width] array.</summary>
    public static Span<double> Row(double[] x, int t, int width) => x.AsSpan(t * width, width);
}

/// <summary>
/// Validation and per-head plumbing shared by the delta-rule forms, so the form files hold only the math.
/// <code>
///   q, k [B,T,H,K]   v [B,T,HV,V]   beta [B,T,HV] or [B,T,HV,V]   g [B,T,HV]   gk [B,T,HV,K]
///   initial_state, final_state [N,HV,K,V]      HV a multiple of H (GVA: value head hv reads q/k head hv / (HV/H))
/// </code>
/// </summary>
internal sealed class DeltaProblem
{
    /// <summary>
    /// fla's L2-norm epsilon: <c>fla/modules/l2norm.py</c> (<c>l2norm_fwd(x, eps=1e-6)</c>: y = x · rsqrt(Σx² + eps)) and
    /// the same 1e-6 written inline in <c>fla/ops/gated_delta_rule/fused_recurrent.py</c>.
    /// </summary>
    public const double L2NormEpsilon = 1e-6;

    private readonly Tensor _q, _k, _v, _beta;
    private readonly Tensor? _g, _gk, _initialState;
    private readonly bool _l2Norm;

    private DeltaProblem(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? gk, Dims dims, DeltaOptions options,
        IReadOnlyList<SequenceSlice> slices)
    {
        (_q, _k, _v, _beta, _g, _gk) = (q, k, v, beta, g, gk);
        (Batch, Time, H, HV, Dk, Dv) = (dims["B"], dims["T"], dims["H"], dims["HV"], dims["K"], dims["V"]);
        Slices = slices;
        Scale = options.Scale ?? 1 / Math.Sqrt(Dk);
        BetaPerValue = beta.Rank == 4;
        _initialState = options.InitialState;
        _l2Norm = options.UseQkL2Norm;
    }

    public int Batch { get; }
    public int Time { get; }
    public int H { get; }
    public int HV { get; }
    public int Dk { get; }
    public int Dv { get; }
    public double Scale { get; }
    public bool BetaPerValue { get; }
    public IReadOnlyList<SequenceSlice> Slices { get; }

    /// <summary>
    /// Checks shapes and options: <paramref name="g"/> [B,T,HV] and <paramref name="gk"/> [B,T,HV,K] when given;
    /// <paramref name="betaPerValueAllowed"/> says whether beta may be [B,T,HV,V].
    /// </summary>
    public static DeltaProblem Bind(string form, Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? gk,
        DeltaOptions options, bool betaPerValueAllowed)
    {
        ArgumentNullException.ThrowIfNull(options);
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,HV,V");
        if (dims["H"] == 0 ? dims["HV"] != 0 : dims["HV"] % dims["H"] != 0)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"the number of value heads HV = {dims["HV"]} must be a multiple of the number of query/key heads H = {dims["H"]} (GVA)"),
                tensor: "v");
        }
        Dims.RequireFloat("beta", beta);
        if (beta.Rank == 4 && !betaPerValueAllowed)
        {
            throw new InputException($"{form} takes a headwise beta [B,T,HV] only (as fla's), found {beta.ShapeString}", tensor: "beta");
        }
        dims.Bind("beta", beta, beta.Rank == 4 ? "B,T,HV,V" : "B,T,HV");
        if (g is not null)
        {
            dims.Bind("g", Dims.RequireFloat("g", g), "B,T,HV");
        }
        if (gk is not null)
        {
            dims.Bind("gk", Dims.RequireFloat("gk", gk), "B,T,HV,K");
        }
        var slices = Sequences.Slices(dims["B"], dims["T"], options.CuSeqlens);
        dims.Set("N", Sequences.StateCount(slices));
        if (options.InitialState is { } s0)
        {
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", s0), "N,HV,K,V");
        }
        if (options.Scale is { } scale && !double.IsFinite(scale))
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'scale' must be finite, found {scale}"));
        }
        return new DeltaProblem(q, k, v, beta, g, gk, dims, options, slices);
    }

    /// <summary>The inputs of one (sequence, value head) pair, starting from its state row S0 (K x V, row-major).</summary>
    public DeltaHead Head(SequenceHead pair, double[] s0)
    {
        ArgumentNullException.ThrowIfNull(pair);
        int h = pair.H / (HV / H);
        double[] q = pair.Gather(_q, h), k = pair.Gather(_k, h);
        if (_l2Norm)
        {
            for (int t = 0; t < pair.Length; t++)
            {
                L2Normalise(DeltaHead.Row(q, t, Dk));
                L2Normalise(DeltaHead.Row(k, t, Dk));
            }
        }
        return new DeltaHead(pair.Length, Dk, Dv, Scale, q, k, pair.Gather(_v), pair.Gather(_beta), BetaPerValue,
            _g is null ? null : pair.Gather(_g), _gk is null ? null : pair.Gather(_gk), s0);
    }

    /// <summary>Runs <paramref name="perHead"/> on every (sequence, value head) pair; it returns o's rows and the final S.</summary>
    public DeltaResult Run(Func<DeltaHead, (double[] O, double[] S)> perHead)
    {
        var result = SequenceHeads.Run(Slices, Batch, Time, HV, Dv, [new StateTensor(_initialState, Dk, Dv)], pair =>
        {
            var (o, s) = perHead(Head(pair, pair.State()));
            pair.WriteO(o);
            s.CopyTo(pair.State(), 0);
        });
        return new DeltaResult(result.O, result.FinalStates[0]);
    }

    /// <summary>x ← x / √(Σx² + ε), fla's l2norm.</summary>
    public static void L2Normalise(Span<double> x)
    {
        double sumOfSquares = 0;
        foreach (double value in x)
        {
            sumOfSquares += value * value;
        }
        double inverseNorm = 1 / Math.Sqrt(sumOfSquares + L2NormEpsilon);
        for (int i = 0; i < x.Length; i++)
        {
            x[i] *= inverseNorm;
        }
    }

    /// <summary>The chunk size check every chunked variant shares.</summary>
    public static void RequireChunkSize(int chunkSize)
    {
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
    }
}
