using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Softmax.cl. The inputs are checked by the CPU form's own <see cref="SoftmaxProblem"/> (same errors,
/// same sequences: batch entries, varlen sequences, contiguous or paged caches), which the host flattens into the
/// kernels' sequence and key-row tables; then upload, launch, download.
/// </summary>
internal static class SoftmaxKernels
{
    // Softmax.cl's softmax_tiled: blocks of BR = 64 query rows, 256 work-items per group, and its local memory in
    // reals (P: BR × (BC + 2); the stage: 2 × BR × (DK + 2)), as the kernel declares them.
    private const int TileRows = 64, TiledGroup = 256, TiledLocalReals = 64 * 66 + 2 * 64 * 10;

    // Decode splits each cache into parts of at most this many keys (at least num_splits parts), so that a few query
    // rows still occupy many work-items; the split count changes only the summation order.
    private const int DecodeKeysPerPart = 256;

    private static readonly string[] s_cacheNames = ["k_cache", "v_cache", "cache_seqlens", "block_table"];

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        SoftmaxOptions options = SoftmaxForm.Options(inputs, parameters);
        if (variant != "decode" && s_cacheNames.FirstOrDefault(inputs.ContainsKey) is { } cacheName)
        {
            throw new InputException($"only the decode variant reads a KV cache, found it with variant '{variant}'", tensor: cacheName);
        }
        Tensor q = inputs["q"];
        (SoftmaxProblem problem, Tensor k, Tensor v) = variant switch
        {
            "naive" or "tiled" or "split" => Bind(q, Required(inputs, "k", variant), Required(inputs, "v", variant), options),
            "decode" => BindDecode(q, inputs, options),
            _ => throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: unknown variant '{variant}' of softmax; variants on opencl: naive, tiled, split, decode")),
        };
        if (variant == "tiled")
        {
            // The CPU tiled variant's block sizes change only its summation order; the kernel's tiles are its own.
            RequirePositive("block_q", parameters.GetInt("block_q", 64));
            RequirePositive("block_k", parameters.GetInt("block_k", 64));
        }
        int numSplits = parameters.GetInt("num_splits", 4);
        if (variant is "split" or "decode")
        {
            RequirePositive("num_splits", numSplits);
        }
        int maxTk = problem.Sequences.Count == 0 ? 0 : problem.Sequences.Max(s => s.Tk);
        int parts = variant switch
        {
            "split" => numSplits,
            "decode" => Math.Max(numSplits, (int)(((long)maxTk + DecodeKeysPerPart - 1) / DecodeKeysPerPart)),
            _ => 1,
        };
        var (o, lse) = Attend(context, precision, problem, q, k, v, options, parts, tiled: variant is "tiled" or "split");
        return new Dictionary<string, Tensor> { ["o"] = o, ["lse"] = lse };
    }

    /// <summary>
    /// Softmax attention of a bound problem on the device: <paramref name="parts"/> key partitions (1 = no split) by
    /// the tiled kernel where asked and where it fits, else the row kernel, then the log-sum-exp merge.
    /// </summary>
    internal static (Tensor O, Tensor Lse) Attend(OpenClContext context, Precision precision, SoftmaxProblem problem,
        Tensor q, Tensor k, Tensor v, SoftmaxOptions options, int parts, bool tiled)
    {
        var geometry = new Geometry(problem.Batch, problem.Tq, problem.Hq, problem.Hkv, problem.Dk, problem.Dv,
            Tables(problem.Sequences, problem.Batch, problem.Tq, (s, i) => problem.Window(problem.Row(s, i, 0)), TileRows));
        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision),
            oBuffer = context.Allocate(checked(problem.RowCount * problem.Dv), precision), lseBuffer = context.Allocate(problem.RowCount, precision);
        Launch(context, precision, geometry, qBuffer, kBuffer, vBuffer, oBuffer, lseBuffer, options, parts, tiled);
        return (new Tensor([problem.Batch, problem.Tq, problem.Hq, problem.Dv], context.Download(oBuffer)),
            new Tensor([problem.Batch, problem.Tq, problem.Hq], context.Download(lseBuffer)));
    }

    /// <summary>
    /// Plain softmax attention of inputs a form has built on the device (MLA's concatenated q, k and v): q
    /// [B,Tq,Hq,Dk], k [B,Tk,Hkv,Dk], v [B,Tk,Hkv,Dv] (Hq a multiple of Hkv), each batch entry one sequence, causal
    /// aligned bottom-right, no window, mask, softcap or ALiBi; writes o [B,Tq,Hq,Dv] and lse [B,Tq,Hq]. The same
    /// kernels as <see cref="Attend"/> with one part: softmax_tiled where its local memory fits, else softmax_rows.
    /// </summary>
    internal static void AttendDense(OpenClContext context, Precision precision, DenseAttention a,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse)
    {
        var sequences = Enumerable.Range(0, a.Batch)
            .Select(b => new SoftmaxSequence(b, 0, a.Tq, 0, a.Tk, Enumerable.Range(b * a.Tk, a.Tk).ToArray(), a.Tk - a.Tq))
            .ToArray();
        // SoftmaxProblem.Window without a sliding window: every key, or those up to the bottom-right diagonal.
        (int, int) Window(SoftmaxSequence s, int i)
        {
            long end = a.Causal ? Math.Min(s.Tk, (long)i + s.DiagonalOffset + 1) : s.Tk;
            return end > 0 ? (0, (int)end) : (0, 0);
        }
        var geometry = new Geometry(a.Batch, a.Tq, a.Hq, a.Hkv, a.Dk, a.Dv, Tables(sequences, a.Batch, a.Tq, Window, TileRows));
        Launch(context, precision, geometry, q, k, v, o, lse, new SoftmaxOptions { Scale = a.Scale, Causal = a.Causal }, parts: 1, tiled: true);
    }

    /// <summary>
    /// Launches softmax_tiled (where asked and where its local memory fits) or softmax_rows over q, k, v on the
    /// device, then softmax_merge if <paramref name="parts"/> &gt; 1; o and lse are written in place.
    /// </summary>
    private static void Launch(OpenClContext context, Precision precision, Geometry g, DeviceBuffer qBuffer, DeviceBuffer kBuffer,
        DeviceBuffer vBuffer, DeviceBuffer oBuffer, DeviceBuffer lseBuffer, SoftmaxOptions options, int parts, bool tiled)
    {
        int rows = checked(g.Batch * g.Tq * g.Hq), dv = g.Dv;
        var (sequences, keyRows, rowSequence, blocks) = g.Tables;
        int passes = Math.Max(1, (dv + 127) / 128); // the tiled kernel's passes of 128 value columns
        var (bias, strides) = MaskBias(options);

        using DeviceBuffer biasBuffer = context.Upload(bias, precision),
            slopeBuffer = context.Upload(options.AlibiSlopes?.Data ?? [], precision),
            sequenceBuffer = context.UploadInts(sequences), keyRowBuffer = context.UploadInts(keyRows),
            oParts = context.Allocate(parts > 1 ? checked(parts * rows * dv) : 0, precision),
            lseParts = context.Allocate(parts > 1 ? checked(parts * rows) : 0, precision);
        DeviceBuffer oOut = parts > 1 ? oParts : oBuffer, lseOut = parts > 1 ? lseParts : lseBuffer;

        // The tiled kernel's local memory is fixed (any K and V); a device with less falls back to the streaming row
        // kernel, which computes the same function.
        long localBytes = (long)OpenClContext.ElementSize(precision) * TiledLocalReals + sizeof(int);
        tiled = tiled && localBytes <= context.Device.LocalMemoryBytes;
        using OpenClKernel kernel = context.Kernel("Softmax.cl", tiled ? "softmax_tiled" : "softmax_rows", precision);
        using DeviceBuffer tableBuffer = context.UploadInts(tiled ? blocks : rowSequence);
        int blockCount = blocks.Length / 2;
        kernel.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, biasBuffer).Arg(4, slopeBuffer).Arg(5, oOut).Arg(6, lseOut)
            .Arg(7, sequenceBuffer).Arg(8, keyRowBuffer).Arg(9, tableBuffer);
        uint next = 10;
        if (tiled)
        {
            kernel.Arg(next++, blockCount);
        }
        kernel.Arg(next++, g.Batch).Arg(next++, g.Tq).Arg(next++, g.Hq).Arg(next++, g.Hkv).Arg(next++, g.Dk).Arg(next++, dv)
            .Arg(next++, options.Scale ?? 1 / Math.Sqrt(g.Dk), precision).Arg(next++, options.Softcap, precision)
            .Arg(next++, options.AlibiSlopes is null ? 0 : 1).Arg(next++, options.AlibiSlopes?.Rank == 2 ? 1 : 0)
            .Arg(next++, options.WindowLeft).Arg(next++, options.Causal ? 0 : options.WindowRight)
            .Arg(next++, options.Mask is null ? 0 : 1)
            .Arg(next++, strides[0]).Arg(next++, strides[1]).Arg(next++, strides[2]).Arg(next++, strides[3])
            .Arg(next++, parts);
        if (tiled)
        {
            context.Run(kernel, (long)blockCount * g.Hq * parts * passes * TiledGroup, local: TiledGroup);
        }
        else
        {
            context.Run(kernel, (long)rows * parts, local: 64);
        }

        if (parts > 1)
        {
            using OpenClKernel merge = context.Kernel("Softmax.cl", "softmax_merge", precision);
            merge.Arg(0, oParts).Arg(1, lseParts).Arg(2, oBuffer).Arg(3, lseBuffer).Arg(4, rows).Arg(5, dv).Arg(6, parts);
            context.Run(merge, rows, local: 64);
        }
    }

    /// <summary>
    /// The kernels' tables: per sequence (batch, query start, Tq, key start, Tk, diagonal offset, offset in the key
    /// rows); the key rows of all sequences one after the other; the sequence of each (b, t) of q (−1: none); and
    /// the (sequence, first query) of each block of <paramref name="blockRows"/> queries, the blocks that reach the
    /// most keys first (a causal block near the end sees all keys before it): launched in that order, the long
    /// blocks start early and the short ones fill the tail.
    /// </summary>
    private static (int[] Sequences, int[] KeyRows, int[] RowSequence, int[] Blocks) Tables(IReadOnlyList<SoftmaxSequence> all,
        int batch, int tq, Func<SoftmaxSequence, int, (int First, int End)> window, int blockRows)
    {
        var sequences = new List<int>();
        var keyRows = new List<int>();
        var blocks = new List<(int Sequence, int I0, int Keys)>();
        var rowSequence = Enumerable.Repeat(-1, batch * tq).ToArray();
        for (int n = 0; n < all.Count; n++)
        {
            SoftmaxSequence s = all[n];
            sequences.AddRange([s.Batch, s.QueryStart, s.Tq, s.KeyStart, s.Tk, s.DiagonalOffset, keyRows.Count]);
            keyRows.AddRange(s.KeyRows);
            for (int i = 0; i < s.Tq; i++)
            {
                rowSequence[s.Batch * tq + s.QueryStart + i] = n;
            }
            for (int i0 = 0; i0 < s.Tq; i0 += blockRows)
            {
                var windows = Enumerable.Range(i0, Math.Min(blockRows, s.Tq - i0))
                    .Select(i => window(s, i)).Where(w => w.First < w.End).ToArray();
                int keys = windows.Length == 0 ? 0 : windows.Max(w => w.End) - windows.Min(w => w.First);
                blocks.Add((n, i0, keys));
            }
        }
        int[] blockTable = blocks.OrderByDescending(x => x.Keys).SelectMany(x => new[] { x.Sequence, x.I0 }).ToArray();
        return (sequences.ToArray(), keyRows.ToArray(), rowSequence, blockTable);
    }

    /// <summary>
    /// The mask as the additive bias the kernels add (a bool mask becomes 0 / −∞, as the reference reads it) with its
    /// element strides over (b, h, t, u), 0 on a broadcast axis. SoftmaxProblem has already checked its shape and kind.
    /// </summary>
    private static (double[] Bias, int[] Strides) MaskBias(SoftmaxOptions options)
    {
        var strides = new int[4];
        if (options.Mask is not { } mask)
        {
            return ([], strides);
        }
        int[] shape = mask.ShapeArray(), own = mask.Strides();
        for (int axis = 0; axis < 4; axis++)
        {
            int mine = axis - (4 - shape.Length); // right-aligned, as broadcasting aligns
            strides[axis] = mine < 0 || shape[mine] == 1 ? 0 : own[mine];
        }
        bool isBool = options.MaskKind == MaskKind.Boolean || (options.MaskKind is null && mask.DType is DType.I32 or DType.I64);
        double[] bias = isBool ? mask.Data.Select(x => x != 0 ? 0 : double.NegativeInfinity).ToArray() : mask.Data;
        return (bias, strides);
    }

    private static (SoftmaxProblem, Tensor, Tensor) Bind(Tensor q, Tensor k, Tensor v, SoftmaxOptions options) =>
        (SoftmaxProblem.Bind(q, k, v, options), k, v);

    private static (SoftmaxProblem, Tensor, Tensor) BindDecode(Tensor q, IReadOnlyDictionary<string, Tensor> inputs, SoftmaxOptions options)
    {
        if (inputs.ContainsKey("k") || inputs.ContainsKey("v"))
        {
            throw new InputException("the decode variant reads k_cache and v_cache; appending new keys is not supported (write them into the cache and raise cache_seqlens)",
                tensor: inputs.ContainsKey("k") ? "k" : "v");
        }
        var cache = new KvCache(Required(inputs, "k_cache", "decode"), Required(inputs, "v_cache", "decode"),
            inputs.GetValueOrDefault("cache_seqlens"), inputs.GetValueOrDefault("block_table"));
        return (SoftmaxProblem.BindDecode(q, cache, options), cache.K, cache.V);
    }

    private static Tensor Required(IReadOnlyDictionary<string, Tensor> inputs, string name, string variant) =>
        inputs.GetValueOrDefault(name)
        ?? throw new InputException($"missing: the {variant} variant needs it", tensor: name);

    /// <summary>The extents the kernels take and the tables of <see cref="Tables"/>.</summary>
    private sealed record Geometry(int Batch, int Tq, int Hq, int Hkv, int Dk, int Dv,
        (int[] Sequences, int[] KeyRows, int[] RowSequence, int[] Blocks) Tables);

    private static void RequirePositive(string name, int value)
    {
        if (value < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter '{name}' must be ≥ 1, found {value}"));
        }
    }
}

/// <summary>
/// The shape and options of <see cref="SoftmaxKernels.AttendDense"/>: q [B,Tq,Hq,Dk], k [B,Tk,Hkv,Dk], v
/// [B,Tk,Hkv,Dv]; scores scaled by Scale, causal aligned bottom-right (key j allowed iff j ≤ i + Tk − Tq).
/// </summary>
internal readonly record struct DenseAttention(int Batch, int Tq, int Tk, int Hq, int Hkv, int Dk, int Dv, double Scale, bool Causal);
