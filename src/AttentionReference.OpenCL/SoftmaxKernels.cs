using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Softmax.cl on a call bound to softmax's contract, with the options the CPU form reads
/// (<see cref="SoftmaxOptions"/>): the same errors, the same sequences (batch entries, varlen sequences, contiguous or
/// paged caches through <see cref="KvCache"/>), which the host flattens into the kernels' sequence and key-row tables;
/// then upload, launch, download.
/// </summary>
internal static class SoftmaxKernels
{
    // Softmax.cl's softmax_tiled: blocks of BR = 64 query rows, 256 work-items per group, and its local memory in
    // reals (P: BR × (BC + 2); the stage: 2 × BR × (DK + 2)), as the kernel declares them.
    private const int TileRows = 64, TiledGroup = 256, TiledLocalReals = 64 * 66 + 2 * 64 * 10;

    // Decode splits each cache into parts of at most this many keys (at least num_splits parts), so that a few query
    // rows still occupy many work-items; the split count changes only the summation order.
    private const int DecodeKeysPerPart = 256;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        if (!form.Variants.Contains(variant))
        {
            throw new InputException($"--backend opencl: unknown variant '{variant}' of softmax; variants on opencl: {string.Join(", ", form.Variants)}");
        }
        Problem problem = form.Contract.Bind(inputs, parameters);
        KvCache.RequireKeysOf(variant, problem);
        var options = SoftmaxOptions.Read(problem);
        bool decode = variant == "decode";
        KeySequence[] sequences = decode ? CacheSequences(problem, options) : KeySequences(problem, options);
        int maxTk = sequences.Select(s => s.Tk).DefaultIfEmpty(0).Max();
        int parts = variant switch
        {
            "split" => options.NumSplits,
            "decode" => Math.Max(options.NumSplits, (int)(((long)maxTk + DecodeKeysPerPart - 1) / DecodeKeysPerPart)),
            _ => 1,
        };
        var (o, lse) = AttendSequences(context, precision, problem, sequences, ScoreArgs.Of(problem, options),
            problem.Input(decode ? "k_cache" : "k"), problem.Input(decode ? "v_cache" : "v"), parts, tiled: variant is "tiled" or "split");
        return new Dictionary<string, Tensor> { ["o"] = o, ["lse"] = lse };
    }

    /// <summary>
    /// Softmax attention of a call bound to softmax's contract, with k and v (no cache), on the device: <paramref name="parts"/>
    /// key partitions (1 = no split) by the tiled kernel where asked and where it fits, else the row kernel, then the
    /// log-sum-exp merge.
    /// </summary>
    internal static (Tensor O, Tensor Lse) Attend(OpenClContext context, Precision precision, Problem problem, int parts, bool tiled)
    {
        var options = SoftmaxOptions.Read(problem);
        return AttendSequences(context, precision, problem, KeySequences(problem, options), ScoreArgs.Of(problem, options),
            problem.Input("k"), problem.Input("v"), parts, tiled);
    }

    private static (Tensor O, Tensor Lse) AttendSequences(OpenClContext context, Precision precision, Problem problem, KeySequence[] sequences,
        ScoreArgs scores, Tensor k, Tensor v, int parts, bool tiled)
    {
        var (batch, tq, hq, dv) = (problem["B"], problem["Tq"], problem["Hq"], problem["V"]);
        int rows = checked(batch * tq * hq);
        var geometry = new Geometry(batch, tq, hq, problem["Hkv"], problem["K"], dv, Tables(sequences, batch, tq, TileRows));
        using DeviceBuffer qBuffer = context.Upload(problem.Input("q").Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision),
            oBuffer = context.Allocate(checked(rows * dv), precision), lseBuffer = context.Allocate(rows, precision);
        Launch(context, precision, geometry, qBuffer, kBuffer, vBuffer, oBuffer, lseBuffer, scores, parts, tiled);
        return (new Tensor([batch, tq, hq, dv], context.Download(oBuffer)), new Tensor([batch, tq, hq], context.Download(lseBuffer)));
    }

    /// <summary>
    /// Plain softmax attention of inputs a form has built on the device (MLA's concatenated q, k and v): q
    /// [B,Tq,Hq,Dk], k [B,Tk,Hkv,Dk], v [B,Tk,Hkv,Dv] (Hq a multiple of Hkv), each batch entry one sequence, causal
    /// aligned bottom-right, no window, mask, softcap or ALiBi; writes o [B,Tq,Hq,Dv] and lse [B,Tq,Hq]. The same
    /// kernels as <see cref="Attend"/> with one part: softmax_tiled where
    /// its local memory fits, else softmax_rows.
    /// </summary>
    internal static void AttendDense(OpenClContext context, Precision precision, DenseAttention a,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse)
    {
        Window window = a.Causal ? Window.Causal(a.Tq, a.Tk) : Window.Full;
        var sequences = Enumerable.Range(0, a.Batch)
            .Select(b => new KeySequence(b, 0, a.Tq, 0, a.Tk, window, Enumerable.Range(b * a.Tk, a.Tk).ToArray()))
            .ToArray();
        var geometry = new Geometry(a.Batch, a.Tq, a.Hq, a.Hkv, a.Dk, a.Dv, Tables(sequences, a.Batch, a.Tq, TileRows));
        Launch(context, precision, geometry, q, k, v, o, lse, new ScoreArgs(a.Scale, 0, null, -1, a.Causal ? 0 : -1, null), parts: 1, tiled: true);
    }

    /// <summary>
    /// Launches softmax_tiled (where asked and where its local memory fits) or softmax_rows over q, k, v on the
    /// device, then softmax_merge if <paramref name="parts"/> &gt; 1; o and lse are written in place.
    /// </summary>
    private static void Launch(OpenClContext context, Precision precision, Geometry g, DeviceBuffer qBuffer, DeviceBuffer kBuffer,
        DeviceBuffer vBuffer, DeviceBuffer oBuffer, DeviceBuffer lseBuffer, ScoreArgs scores, int parts, bool tiled)
    {
        int rows = checked(g.Batch * g.Tq * g.Hq), dv = g.Dv;
        var (sequences, keyRows, rowSequence, blocks) = g.Tables;
        int passes = Math.Max(1, (dv + 127) / 128); // the tiled kernel's passes of 128 value columns
        var (bias, strides) = MaskBias(scores.Mask);

        using DeviceBuffer biasBuffer = context.Upload(bias, precision),
            slopeBuffer = context.Upload(scores.Slopes?.Data ?? [], precision),
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
            .Arg(next++, scores.Scale, precision).Arg(next++, scores.Softcap, precision)
            .Arg(next++, scores.Slopes is null ? 0 : 1).Arg(next++, scores.Slopes?.Rank == 2 ? 1 : 0)
            .Arg(next++, scores.WindowLeft).Arg(next++, scores.WindowRight)
            .Arg(next++, scores.Mask is null ? 0 : 1)
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
    private static (int[] Sequences, int[] KeyRows, int[] RowSequence, int[] Blocks) Tables(IReadOnlyList<KeySequence> all,
        int batch, int tq, int blockRows)
    {
        var sequences = new List<int>();
        var keyRows = new List<int>();
        var blocks = new List<(int Sequence, int I0, int Keys)>();
        var rowSequence = Enumerable.Repeat(-1, batch * tq).ToArray();
        for (int n = 0; n < all.Count; n++)
        {
            KeySequence s = all[n];
            sequences.AddRange([s.Batch, s.QueryStart, s.Tq, s.KeyStart, s.Tk, s.Window.Offset, keyRows.Count]);
            keyRows.AddRange(s.KeyRows);
            for (int i = 0; i < s.Tq; i++)
            {
                rowSequence[s.Batch * tq + s.QueryStart + i] = n;
            }
            for (int i0 = 0; i0 < s.Tq; i0 += blockRows)
            {
                var windows = Enumerable.Range(i0, Math.Min(blockRows, s.Tq - i0))
                    .Select(i => s.Window.Keys(i, s.Tk)).Where(w => w.First < w.End).ToArray();
                int keys = windows.Length == 0 ? 0 : windows.Max(w => w.End) - windows.Min(w => w.First);
                blocks.Add((n, i0, keys));
            }
        }
        int[] blockTable = blocks.OrderByDescending(x => x.Keys).SelectMany(x => new[] { x.Sequence, x.I0 }).ToArray();
        return (sequences.ToArray(), keyRows.ToArray(), rowSequence, blockTable);
    }

    /// <summary>
    /// The mask as the additive bias the kernels add (a bool mask becomes 0 / −∞, as the reference reads it) with its
    /// element strides over (b, h, t, u), 0 on a broadcast axis, as <see cref="SoftmaxMask"/> read them.
    /// </summary>
    private static (double[] Bias, int[] Strides) MaskBias(SoftmaxMask? mask) =>
        mask is null ? ([], new int[4])
        : (mask.IsBool ? mask.Data.Select(x => x != 0 ? 0 : double.NegativeInfinity).ToArray() : mask.Data, mask.Strides);

    /// <summary>The sequences of a call with k and v: key j of sequence n is row b·Tk + its start + j of k seen as [rows, Hkv, K].</summary>
    private static KeySequence[] KeySequences(Problem problem, SoftmaxOptions options) => problem.Sequences.Select(s =>
    {
        StepRange queries = s.Steps("Tq"), keys = s.Steps("Tk");
        return new KeySequence(s.Batch, queries.Start, queries.Length, keys.Start, keys.Length, options.WindowOf(queries.Length, keys.Length),
            Enumerable.Range(s.Batch * problem["Tk"] + keys.Start, keys.Length).ToArray());
    }).ToArray();

    /// <summary>The batch entries of a decode call: key j of entry b is its cache row (<see cref="KvCache.Rows"/>).</summary>
    private static KeySequence[] CacheSequences(Problem problem, SoftmaxOptions options)
    {
        KvCache cache = KvCache.Read(problem);
        int tq = problem["Tq"];
        return Enumerable.Range(0, problem["B"]).Select(b =>
        {
            IReadOnlyList<int> rows = cache.Rows(b);
            return new KeySequence(b, 0, tq, 0, rows.Count, options.WindowOf(tq, rows.Count), rows.ToArray());
        }).ToArray();
    }

    /// <summary>
    /// One independent problem of a call as the kernels see it: queries [QueryStart, QueryStart + Tq) of batch entry
    /// Batch, Tk keys with key j at row KeyRows[j] of k (or of the cache) seen as [rows, Hkv, K], KeyStart its column in
    /// the mask, and the window of its rows.
    /// </summary>
    private sealed record KeySequence(int Batch, int QueryStart, int Tq, int KeyStart, int Tk, Window Window, int[] KeyRows);

    /// <summary>What the kernels compute a score from: <see cref="Scores"/>'s parts, window_right already 0 when causal.</summary>
    private sealed record ScoreArgs(double Scale, double Softcap, Tensor? Slopes, int WindowLeft, int WindowRight, SoftmaxMask? Mask)
    {
        public static ScoreArgs Of(Problem problem, SoftmaxOptions options) => new(options.Scale, options.Softcap,
            problem.Optional("alibi_slopes"), options.WindowLeft, options.Causal ? 0 : options.WindowRight, options.Mask);
    }

    /// <summary>The extents the kernels take and the tables of <see cref="Tables"/>.</summary>
    private sealed record Geometry(int Batch, int Tq, int Hq, int Hkv, int Dk, int Dv,
        (int[] Sequences, int[] KeyRows, int[] RowSequence, int[] Blocks) Tables);
}

/// <summary>
/// The shape and options of <see cref="SoftmaxKernels.AttendDense"/>: q [B,Tq,Hq,Dk], k [B,Tk,Hkv,Dk], v
/// [B,Tk,Hkv,Dv]; scores scaled by Scale, causal aligned bottom-right (key j allowed iff j ≤ i + Tk − Tq).
/// </summary>
internal readonly record struct DenseAttention(int Batch, int Tq, int Tk, int Hq, int Hkv, int Dk, int Dv, double Scale, bool Causal);
