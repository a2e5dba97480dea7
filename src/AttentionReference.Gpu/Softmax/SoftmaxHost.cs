using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The host of softmax (Forms/Softmax/Softmax.cs): reads the call as the CPU form does (KvCache.RequireKeysOf,
/// SoftmaxOptions, KvCache for decode, so the same errors), flattens its sequences into the kernels' table (batch
/// entries, varlen sequences, or a contiguous or paged cache's valid keys of each batch entry), and runs
/// <code>
///   naive    SoftmaxKernels.Rows, one part
///   split    SoftmaxKernels.Rows over num_splits parts of each sequence's keys, then SoftmaxKernels.Merge
///   decode   the same over each batch entry's cache keys (key j at its cache row), in num_splits parts or more:
///            parts of at most 256 keys, so that a few query rows still fill the device (as the OpenCL host; the
///            number of parts changes only the summation order)
///   tiled    FlashAttentionKernels.Forward; block_q and block_k, which change only the summation order, are the
///            accelerator's (TileShape), as flash-attn's kernels choose theirs
/// </code>
/// </summary>
internal static class SoftmaxHost
{
    /// <summary>decode: the most keys of one part (more parts than num_splits where a cache is longer).</summary>
    private const int DecodeKeysPerPart = 256;

    /// <summary>o and lse of <paramref name="variant"/> of a bound softmax call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        KvCache.RequireKeysOf(variant, problem);
        var options = SoftmaxOptions.Read(problem);
        bool decode = variant == "decode";
        int batch = problem["B"], tq = problem["Tq"], hq = problem["Hq"];
        var (sequences, keyRows) = decode ? CacheSequences(problem, options) : KeySequences(problem, options);

        using DeviceBuffers buffers = device.Buffers();
        var x = KeyedAttention.Upload<Real>(buffers, sequences, keyRows, batch, tq, hq, problem["Hkv"], problem["K"], problem["V"],
            problem.Input("q"), problem.Input(decode ? "k_cache" : "k"), problem.Input(decode ? "v_cache" : "v"));
        x.Scores = KeyedAttention.Rules<Real>(buffers, options, problem.Optional("alibi_slopes"), hq);
        switch (variant)
        {
            case "tiled":
                KeyedAttention.Tiled(device, buffers, x, sequences, FlashAttentionKernels.Forward,
                    (seq, first, last) => Reach(x.Scores, seq, first, last));
                break;
            case "naive":
                KeyedAttention.Naive(device, buffers, x, parts: 1);
                break;
            case "split":
                KeyedAttention.Naive(device, buffers, x, options.NumSplits);
                break;
            default:
                int longest = sequences.Select(s => s.Tk).DefaultIfEmpty(0).Max();
                KeyedAttention.Naive(device, buffers, x, Math.Max(options.NumSplits, (longest + DecodeKeysPerPart - 1) / DecodeKeysPerPart));
                break;
        }
        return KeyedAttention.Outputs(device, x, batch);
    }

    /// <summary>The keys a tiled block reaches (for the launch order): its window's extent.</summary>
    private static int Reach<Real>(ScoreRules<Real> rules, KeySequence seq, int first, int last) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (from, end) = rules.Reach(seq, first, last);
        return end - from;
    }

    /// <summary>The sequences of a call with k and v: key j of sequence n is row b·Tk + its start + j of k seen as [rows, Hkv, K].</summary>
    private static (KeySequence[] Sequences, int[] KeyRows) KeySequences(Problem problem, SoftmaxOptions options) =>
        (problem.Sequences.Select(s =>
        {
            var (queries, keys) = (s.Steps("Tq"), s.Steps("Tk"));
            return KeyedAttention.Direct(s.Batch, queries.Start, queries.Length, keys.Start, keys.Length,
                options.WindowOf(queries.Length, keys.Length).Offset, s.Batch * problem["Tk"] + keys.Start);
        }).ToArray(), []);

    /// <summary>The batch entries of a decode call: key j of entry b is its cache row (KvCache.Rows), cache_seqlens[b] of them.</summary>
    private static (KeySequence[] Sequences, int[] KeyRows) CacheSequences(Problem problem, SoftmaxOptions options)
    {
        KvCache cache = KvCache.Read(problem);
        int tq = problem["Tq"];
        var keyRows = new List<int>();
        var sequences = new KeySequence[problem["B"]];
        for (int b = 0; b < sequences.Length; b++)
        {
            IReadOnlyList<int> rows = cache.Rows(b);
            sequences[b] = new KeySequence
            {
                Batch = b, QueryStart = 0, Tq = tq, KeyStart = 0, Tk = rows.Count, Offset = options.WindowOf(tq, rows.Count).Offset,
                KeyRows = keyRows.Count, KeyRow0 = 0,
            };
            keyRows.AddRange(rows);
        }
        return (sequences, keyRows.ToArray());
    }
}
