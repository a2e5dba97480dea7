using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// One independent attention problem inside a call: batch entry <see cref="Batch"/>, queries
/// [<see cref="QueryStart"/>, <see cref="QueryStart"/> + <see cref="Tq"/>) of q's time axis, and <see cref="Tk"/> keys,
/// key j living at row <see cref="KeyRows"/>[j] of the key tensor seen as [rows, Hkv, K] (contiguous, packed varlen or
/// paged: the variants never need to know which). <see cref="KeyStart"/> is key 0's column in the mask.
/// </summary>
internal sealed record SoftmaxSequence(int Batch, int QueryStart, int Tq, int KeyStart, int Tk, int[] KeyRows, int DiagonalOffset);

/// <summary>One query row of the output: query i (local to its sequence) of head h; <see cref="Index"/> is its (b, t, h) offset in lse.</summary>
internal readonly record struct QueryRow(SoftmaxSequence Sequence, int I, int H, int Index);

/// <summary>
/// The validated inputs of one softmax call and the pieces every variant shares: which keys a query may see and the
/// (capped, biased, masked) score of one query–key pair. Variants differ only in the order they combine scores.
/// </summary>
internal sealed class SoftmaxProblem
{
    private readonly double[] _q, _k, _v;
    private readonly double[]? _slopes;
    private readonly bool _slopesPerBatch;
    private readonly int _groupSize, _windowLeft, _windowRight;
    private readonly double _scale, _softcap;
    private readonly SoftmaxMask? _mask;
    private readonly SoftmaxSequence[] _sequenceOfQuery; // indexed by b·Tq + t

    private SoftmaxProblem(Tensor q, Tensor k, Tensor v, Dims dims, SoftmaxOptions options, IReadOnlyList<SoftmaxSequence> sequences, SoftmaxMask? mask)
    {
        (_q, _k, _v) = (q.Data, k.Data, v.Data);
        (Batch, Tq, Hq, Hkv, Dk, Dv) = (dims["B"], dims["Tq"], dims["Hq"], dims["Hkv"], dims["K"], dims["V"]);
        _groupSize = Hq / Hkv;
        _scale = options.Scale ?? 1 / Math.Sqrt(Dk);
        _softcap = options.Softcap;
        _windowLeft = options.WindowLeft;
        _windowRight = options.Causal ? 0 : options.WindowRight;
        if (options.AlibiSlopes is { } slopes)
        {
            _slopes = slopes.Data;
            _slopesPerBatch = slopes.Rank == 2;
        }
        _mask = mask;
        Sequences = sequences;
        _sequenceOfQuery = new SoftmaxSequence[Batch * Tq];
        foreach (SoftmaxSequence sequence in sequences)
        {
            for (int i = 0; i < sequence.Tq; i++)
            {
                _sequenceOfQuery[sequence.Batch * Tq + sequence.QueryStart + i] = sequence;
            }
        }
    }

    /// <summary>B of q (1 with cu_seqlens).</summary>
    public int Batch { get; }

    /// <summary>q's time extent (the packed total with cu_seqlens).</summary>
    public int Tq { get; }

    public int Hq { get; }
    public int Hkv { get; }
    public int Dk { get; }
    public int Dv { get; }

    /// <summary>The independent sequences: the B batch entries, or the N packed sequences of cu_seqlens.</summary>
    public IReadOnlyList<SoftmaxSequence> Sequences { get; }

    /// <summary>Number of query rows, B·Tq·Hq; row r's o is o.Data[r·V ..] and its lse is lse.Data[r].</summary>
    public int RowCount => Batch * Tq * Hq;

    /// <summary>The query row with offset <paramref name="index"/> in lse [B,Tq,Hq].</summary>
    public QueryRow Row(int index)
    {
        int h = index % Hq, t = index / Hq % Tq, b = index / Hq / Tq;
        SoftmaxSequence sequence = _sequenceOfQuery[b * Tq + t];
        return new QueryRow(sequence, t - sequence.QueryStart, h, index);
    }

    /// <summary>The query row i of head h in <paramref name="sequence"/>.</summary>
    public QueryRow Row(SoftmaxSequence sequence, int i, int h) =>
        new(sequence, i, h, (sequence.Batch * Tq + sequence.QueryStart + i) * Hq + h);

    /// <summary>Fresh outputs: o [B,Tq,Hq,V] and lse [B,Tq,Hq].</summary>
    public SoftmaxResult NewResult() => new(Tensor.Zeros(Batch, Tq, Hq, Dv), Tensor.Zeros(Batch, Tq, Hq));

    /// <summary>Checks q, k, v and the options of a call without a KV cache; every error names the tensor or option at fault.</summary>
    public static SoftmaxProblem Bind(Tensor q, Tensor k, Tensor v, SoftmaxOptions options)
    {
        var dims = BindQueriesAndOptions(q, options);
        dims.Bind("k", Dims.RequireFloat("k", k), "B,Tk,Hkv,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,Tk,Hkv,V");
        RequireGroups(dims, "k");
        BindSlopes(dims, options);

        int batch = dims["B"], tq = dims["Tq"], tk = dims["Tk"];
        if ((options.CuSeqlensQ is null) != (options.CuSeqlensK is null))
        {
            throw new InputException("varlen needs both cu_seqlens_q and cu_seqlens_k (as flash_attn_varlen_func)",
                tensor: options.CuSeqlensQ is null ? "cu_seqlens_q" : "cu_seqlens_k");
        }
        var queries = Common.Sequences.Slices(batch, tq, options.CuSeqlensQ, "cu_seqlens_q");
        var keys = Common.Sequences.Slices(batch, tk, options.CuSeqlensK, "cu_seqlens_k");
        if (queries.Count != keys.Count)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"must hold as many sequences as cu_seqlens_q: {queries.Count} + 1 entries, found {keys.Count + 1}"), tensor: "cu_seqlens_k");
        }
        var sequences = new SoftmaxSequence[queries.Count];
        for (int n = 0; n < sequences.Length; n++)
        {
            SequenceSlice qs = queries[n], ks = keys[n];
            int[] keyRows = Enumerable.Range(ks.Batch * tk + ks.Start, ks.Length).ToArray();
            sequences[n] = new SoftmaxSequence(qs.Batch, qs.Start, qs.Length, ks.Start, ks.Length, keyRows,
                DiagonalOffset(options, qs.Length, ks.Length));
        }
        SoftmaxMask? mask = options.Mask is null ? null : SoftmaxMask.Bind(options.Mask, options.MaskKind, batch, dims["Hq"], tq, tk);
        return new SoftmaxProblem(q, k, v, dims, options, sequences, mask);
    }

    /// <summary>
    /// Checks q and a KV cache as flash_attn_with_kvcache takes them: contiguous [B,Tcache,Hkv,K] or paged
    /// [num_blocks,page_size,Hkv,K] with block_table [B,max_blocks]; cache_seqlens [B] gives each batch's length.
    /// </summary>
    public static SoftmaxProblem BindDecode(Tensor q, KvCache cache, SoftmaxOptions options)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (options.Mask is not null)
        {
            throw new InputException("the decode variant takes no mask (flash_attn_with_kvcache has none); use naive, tiled or split", tensor: "mask");
        }
        if (options.CuSeqlensQ is not null || options.CuSeqlensK is not null)
        {
            throw new InputException("the decode variant takes cache_seqlens, not cu_seqlens_q/cu_seqlens_k",
                tensor: options.CuSeqlensQ is null ? "cu_seqlens_k" : "cu_seqlens_q");
        }
        var dims = BindQueriesAndOptions(q, options);
        bool paged = cache.BlockTable is not null;
        string cacheShape = paged ? "Blocks,Page,Hkv," : "B,Tcache,Hkv,";
        dims.Bind("k_cache", Dims.RequireFloat("k_cache", cache.K), cacheShape + "K");
        dims.Bind("v_cache", Dims.RequireFloat("v_cache", cache.V), cacheShape + "V");
        RequireGroups(dims, "k_cache");
        BindSlopes(dims, options);

        int batch = dims["B"], capacity;
        double[]? table = null;
        if (cache.BlockTable is { } blockTable)
        {
            dims.Bind("block_table", Dims.RequireInteger("block_table", blockTable), "B,MaxBlocks");
            table = blockTable.Data;
            capacity = dims["MaxBlocks"] * dims["Page"];
        }
        else
        {
            capacity = dims["Tcache"];
        }
        double[] lengths = Enumerable.Repeat((double)capacity, batch).ToArray();
        if (cache.CacheSeqlens is { } cacheSeqlens)
        {
            dims.Bind("cache_seqlens", Dims.RequireInteger("cache_seqlens", cacheSeqlens), "B");
            lengths = cacheSeqlens.Data;
        }

        var sequences = new SoftmaxSequence[batch];
        int tq = dims["Tq"];
        for (int b = 0; b < batch; b++)
        {
            if (lengths[b] < 0 || lengths[b] > capacity)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"entry {b} is {lengths[b]}, outside [0, {capacity}] (the cache's {(paged ? "max_blocks·page_size" : "Tcache")})"), tensor: "cache_seqlens");
            }
            int tk = (int)lengths[b];
            var keyRows = new int[tk];
            for (int j = 0; j < tk; j++)
            {
                keyRows[j] = table is null ? b * capacity + j : PagedRow(table, dims, b, j);
            }
            sequences[b] = new SoftmaxSequence(b, 0, tq, 0, tk, keyRows, DiagonalOffset(options, tq, tk));
        }
        return new SoftmaxProblem(q, cache.K, cache.V, dims, options, sequences, mask: null);
    }

    /// <summary>Key j of batch b in a paged cache: page block_table[b, j / page_size], slot j mod page_size.</summary>
    private static int PagedRow(double[] table, Dims dims, int b, int j)
    {
        int page = dims["Page"], maxBlocks = dims["MaxBlocks"], blocks = dims["Blocks"];
        double block = table[b * maxBlocks + j / page];
        if (block < 0 || block >= blocks)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"entry [{b},{j / page}] is {block}, outside [0, {blocks}) (the number of cache blocks), and batch {b} reads it"), tensor: "block_table");
        }
        return (int)block * page + j % page;
    }

    private static Dims BindQueriesAndOptions(Tensor q, SoftmaxOptions options)
    {
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,Tq,Hq,K");
        if (options.WindowLeft < -1 || options.WindowRight < -1)
        {
            throw new InputException($"window sizes must be ≥ 0 or −1 (unbounded), found ({options.WindowLeft}, {options.WindowRight})");
        }
        if (!(options.Softcap >= 0))
        {
            throw new InputException($"softcap must be ≥ 0 (0 = off), found {options.Softcap}");
        }
        return dims;
    }

    private static void RequireGroups(Dims dims, string keyName)
    {
        if (dims["Hkv"] == 0 ? dims["Hq"] != 0 : dims["Hq"] % dims["Hkv"] != 0)
        {
            throw new InputException(
                $"the number of key/value heads Hkv = {dims["Hkv"]} must divide the number of query heads Hq = {dims["Hq"]} (GQA/MQA)",
                tensor: keyName);
        }
    }

    private static void BindSlopes(Dims dims, SoftmaxOptions options)
    {
        if (options.AlibiSlopes is { } slopes)
        {
            Dims.RequireFloat("alibi_slopes", slopes);
            dims.Bind("alibi_slopes", slopes, slopes.Rank == 2 ? "B,Hq" : "Hq");
        }
    }

    private static int DiagonalOffset(SoftmaxOptions options, int tq, int tk) =>
        options.Alignment == CausalAlignment.BottomRight ? tk - tq : 0;

    /// <summary>
    /// The window of query row r: keys [First, End) between the diagonal's left and right bounds, empty as (0, 0).
    /// A window is always contiguous; a mask may still remove keys inside it (<see cref="IsAllowed"/>).
    /// </summary>
    public (int First, int End) Window(QueryRow r)
    {
        long diagonal = (long)r.I + r.Sequence.DiagonalOffset;
        long first = _windowLeft < 0 ? 0 : Math.Max(0, diagonal - _windowLeft);
        long end = _windowRight < 0 ? r.Sequence.Tk : Math.Min(r.Sequence.Tk, diagonal + _windowRight + 1);
        return first >= end ? (0, 0) : ((int)first, (int)end);
    }

    /// <summary>Whether key j is in A_i: inside the window and not removed by the mask (bool false or additive −∞).</summary>
    public bool IsAllowed(QueryRow r, int j)
    {
        var (first, end) = Window(r);
        return j >= first && j < end && !double.IsNegativeInfinity(MaskBias(r, j));
    }

    /// <summary>A_i in increasing order: the window's keys that the mask keeps.</summary>
    public IEnumerable<int> AllowedKeys(QueryRow r)
    {
        var (first, end) = Window(r);
        for (int j = first; j < end; j++)
        {
            if (!double.IsNegativeInfinity(MaskBias(r, j)))
            {
                yield return j;
            }
        }
    }

    /// <summary>s_ij: the scaled dot product, softcapped, then the ALiBi bias and the additive mask.</summary>
    public double Score(QueryRow r, int j)
    {
        double s = _scale * VectorKernels.Dot(Query(r), KeyRow(r, j));
        if (_softcap > 0)
        {
            s = _softcap * Math.Tanh(s / _softcap);
        }
        if (_slopes is not null)
        {
            double slope = _slopes[_slopesPerBatch ? r.Sequence.Batch * Hq + r.H : r.H];
            s -= slope * Math.Abs((long)r.I + r.Sequence.DiagonalOffset - j);
        }
        return s + MaskBias(r, j);
    }

    private double MaskBias(QueryRow r, int j) =>
        _mask is null ? 0 : _mask.Bias(r.Sequence.Batch, r.H, r.Sequence.QueryStart + r.I, r.Sequence.KeyStart + j);

    /// <summary>q of row r.</summary>
    public ReadOnlySpan<double> Query(QueryRow r) => _q.AsSpan(r.Index * Dk, Dk);

    /// <summary>k_j for row r: key j of r's sequence, in the key head that query head h reads.</summary>
    public ReadOnlySpan<double> KeyRow(QueryRow r, int j) => _k.AsSpan((r.Sequence.KeyRows[j] * Hkv + r.H / _groupSize) * Dk, Dk);

    /// <summary>v_j for row r.</summary>
    public ReadOnlySpan<double> ValueRow(QueryRow r, int j) => _v.AsSpan((r.Sequence.KeyRows[j] * Hkv + r.H / _groupSize) * Dv, Dv);
}

/// <summary>
/// A mask broadcast to [B,Hq,Tq,Tk] as PyTorch SDPA's attn_mask: the tensor's axes align to the right and each is 1
/// (broadcast) or full. A bool mask keeps a key where it is nonzero (True = keep, as SDPA) and gives bias −∞
/// elsewhere; an additive mask is the bias itself.
/// </summary>
internal sealed class SoftmaxMask
{
    private readonly double[] _data;
    private readonly int[] _strides; // element strides over (b, h, t, u); 0 on a broadcast axis
    private readonly bool _isBool;

    private SoftmaxMask(double[] data, int[] strides, bool isBool) => (_data, _strides, _isBool) = (data, strides, isBool);

    /// <summary>The bias of key u for query t (packed positions) in batch b, head h.</summary>
    public double Bias(int b, int h, int t, int u)
    {
        double value = _data[b * _strides[0] + h * _strides[1] + t * _strides[2] + u * _strides[3]];
        return !_isBool ? value : value != 0 ? 0 : double.NegativeInfinity;
    }

    public static SoftmaxMask Bind(Tensor mask, MaskKind? kind, int batch, int hq, int tq, int tk)
    {
        int[] full = [batch, hq, tq, tk];
        int[] shape = mask.ShapeArray();
        bool fits = shape.Length is >= 1 and <= 4;
        var strides = new int[4];
        if (fits)
        {
            int[] own = mask.Strides();
            for (int axis = 0; axis < 4; axis++)
            {
                int mine = axis - (4 - shape.Length); // right-aligned, as broadcasting aligns
                int extent = mine < 0 ? 1 : shape[mine];
                fits &= extent == full[axis] || extent == 1;
                strides[axis] = mine < 0 || extent == 1 ? 0 : own[mine];
            }
        }
        if (!fits)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"expected a shape broadcastable to [B,Hq,Tq,Tk] = {Tensor.FormatShape(full)} (axes aligned right, each 1 or full: [Tq,Tk], [B,1,Tq,Tk], [1,Hq,Tq,Tk], [B,Hq,Tq,Tk], ...), found {mask.ShapeString}"),
                tensor: "mask");
        }
        bool integer = mask.DType is DType.I32 or DType.I64 or DType.Bool;
        bool isBool = kind switch
        {
            null => integer,
            MaskKind.Boolean => true,
            _ when integer => throw new InputException("an integer mask is a bool mask (nonzero = keep); an additive mask must be float", tensor: "mask"),
            _ => false,
        };
        if (isBool && !integer && mask.Data.Any(x => x is not (0 or 1)))
        {
            throw new InputException("a float bool mask must hold only 0 (drop) and 1 (keep); an additive mask is mask_type=additive", tensor: "mask");
        }
        return new SoftmaxMask(mask.Data, strides, isBool);
    }
}
