using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// The validated inputs of one softmax call and the pieces every variant shares: which keys a query may see and the
/// (capped, biased) score of one query–key pair. Variants differ only in how they combine scores.
/// </summary>
internal sealed class SoftmaxProblem
{
    private readonly Tensor _q, _k, _v;
    private readonly double[]? _slopes;
    private readonly bool _slopesPerBatch;
    private readonly int _groupSize, _diagonalOffset, _windowLeft, _windowRight;
    private readonly double _scale, _softcap;

    private SoftmaxProblem(Tensor q, Tensor k, Tensor v, Dims dims, SoftmaxOptions options)
    {
        (_q, _k, _v) = (q, k, v);
        (Batch, Tq, Tk, Hq, Hkv, Dk, Dv) = (dims["B"], dims["Tq"], dims["Tk"], dims["Hq"], dims["Hkv"], dims["K"], dims["V"]);
        _groupSize = Hq / Hkv;
        _scale = options.Scale ?? 1 / Math.Sqrt(Dk);
        _softcap = options.Softcap;
        _diagonalOffset = options.Alignment == CausalAlignment.BottomRight ? Tk - Tq : 0;
        _windowLeft = options.WindowLeft;
        _windowRight = options.Causal ? 0 : options.WindowRight;
        if (options.AlibiSlopes is { } slopes)
        {
            _slopes = slopes.Data;
            _slopesPerBatch = slopes.Rank == 2;
        }
    }

    public int Batch { get; }
    public int Tq { get; }
    public int Tk { get; }
    public int Hq { get; }
    public int Hkv { get; }
    public int Dk { get; }
    public int Dv { get; }

    /// <summary>Checks shapes, dtypes and options; every error names the tensor or option at fault.</summary>
    public static SoftmaxProblem Bind(Tensor q, Tensor k, Tensor v, SoftmaxOptions options)
    {
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,Tq,Hq,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,Tk,Hkv,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,Tk,Hkv,V");
        if (dims["Hkv"] == 0 ? dims["Hq"] != 0 : dims["Hq"] % dims["Hkv"] != 0)
        {
            throw new InputException(
                $"the number of key/value heads Hkv = {dims["Hkv"]} must divide the number of query heads Hq = {dims["Hq"]} (GQA/MQA)",
                tensor: "k");
        }
        if (options.AlibiSlopes is { } slopes)
        {
            Dims.RequireFloat("alibi_slopes", slopes);
            dims.Bind("alibi_slopes", slopes, slopes.Rank == 2 ? "B,Hq" : "Hq");
        }
        if (options.WindowLeft < -1 || options.WindowRight < -1)
        {
            throw new InputException($"window sizes must be ≥ 0 or −1 (unbounded), found ({options.WindowLeft}, {options.WindowRight})");
        }
        if (!(options.Softcap >= 0))
        {
            throw new InputException($"softcap must be ≥ 0 (0 = off), found {options.Softcap}");
        }
        return new SoftmaxProblem(q, k, v, dims, options);
    }

    /// <summary>The allowed keys of query i as a half-open range [first, end) (a window is always contiguous).</summary>
    public (int First, int End) AllowedKeys(int i)
    {
        long diagonal = (long)i + _diagonalOffset;
        long first = _windowLeft < 0 ? 0 : Math.Max(0, diagonal - _windowLeft);
        long end = _windowRight < 0 ? Tk : Math.Min(Tk, diagonal + _windowRight + 1);
        return first >= end ? (0, 0) : ((int)first, (int)end);
    }

    /// <summary>s_ij: the scaled dot product, softcapped, with the ALiBi bias.</summary>
    public double Score(int b, int h, int i, int j)
    {
        double s = _scale * VectorKernels.Dot(QueryRow(b, h, i), KeyRow(b, h, j));
        if (_softcap > 0)
        {
            s = _softcap * Math.Tanh(s / _softcap);
        }
        if (_slopes is not null)
        {
            double slope = _slopes[_slopesPerBatch ? b * Hq + h : h];
            s -= slope * Math.Abs((long)i + _diagonalOffset - j);
        }
        return s;
    }

    /// <summary>q for batch b, query head h, position i.</summary>
    public ReadOnlySpan<double> QueryRow(int b, int h, int i) => _q.Data.AsSpan(((b * Tq + i) * Hq + h) * Dk, Dk);

    /// <summary>k for batch b, the key head that query head h reads, position j.</summary>
    public ReadOnlySpan<double> KeyRow(int b, int h, int j) => _k.Data.AsSpan(((b * Tk + j) * Hkv + h / _groupSize) * Dk, Dk);

    /// <summary>v for batch b, the value head that query head h reads, position j.</summary>
    public ReadOnlySpan<double> ValueRow(int b, int h, int j) => _v.Data.AsSpan(((b * Tk + j) * Hkv + h / _groupSize) * Dv, Dv);
}
