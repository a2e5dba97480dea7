using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>
/// The KV cache of softmax's decode variant, as flash_attn_with_kvcache takes it, and the one place in the family where
/// key j is not simply row j of k: batch b's key j is row j of its cache [B,Tcache,Hkv,·], or slot j mod page_size of
/// page block_table[b, j / page_size] of a paged cache [num_blocks,page_size,Hkv,·]; cache_seqlens[b] of them are valid
/// (default: all). Both caches are bound to one symbolic shape, [Blocks,Tcache,Hkv,·], where an unpaged cache has
/// Blocks = B. Entries of block_table past a batch entry's valid keys are never read, so they may hold anything.
/// </summary>
internal sealed class KvCache
{
    private readonly RowBlock[] _k, _v; // every cache row of each key/value head
    private readonly int[][] _rows;     // the cache rows of each batch entry's valid keys
    private readonly int _groupSize;

    private KvCache(RowBlock[] k, RowBlock[] v, int[][] rows, int groupSize) => (_k, _v, _rows, _groupSize) = (k, v, rows, groupSize);

    /// <summary>The decode variant's tensors.</summary>
    public static IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("k_cache", "Blocks,Tcache,Hkv,K", "decode: key cache [B,Tcache,Hkv,K], or paged [num_blocks,page_size,Hkv,K] with block_table", Optional: true),
        new("v_cache", "Blocks,Tcache,Hkv,V", "decode: value cache [B,Tcache,Hkv,V], or paged [num_blocks,page_size,Hkv,V] with block_table", Optional: true),
        new("cache_seqlens", "B", "decode: valid keys per batch entry (default: the whole cache)", Optional: true, HoldsIndices: true),
        new("block_table", "B,MaxBlocks", "decode: pages of each batch entry's cache (paged KV cache)", Optional: true, HoldsIndices: true),
    ];

    /// <summary>
    /// The keys a variant reads, where the contract leaves them optional: naive, tiled and split read k and v and no
    /// cache; decode reads the cache and none of k, v, mask, cu_seqlens (flash_attn_with_kvcache takes none of them).
    /// </summary>
    public static void RequireKeysOf(string variant, Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (variant != "decode")
        {
            if (Inputs.FirstOrDefault(s => problem.Has(s.Name)) is { } cache)
            {
                throw new InputException($"only the decode variant reads a KV cache, found it with variant '{variant}'", tensor: cache.Name);
            }
            Require(problem, variant, "k", "v");
            return;
        }
        if (problem.Has("k") || problem.Has("v"))
        {
            throw new InputException("the decode variant reads k_cache and v_cache; appending new keys is not supported (write them into the cache and raise cache_seqlens)",
                tensor: problem.Has("k") ? "k" : "v");
        }
        if (problem.Has("mask"))
        {
            throw new InputException("the decode variant takes no mask (flash_attn_with_kvcache has none); use naive, tiled or split", tensor: "mask");
        }
        if (problem.Has("cu_seqlens_q") || problem.Has("cu_seqlens_k"))
        {
            throw new InputException("the decode variant takes cache_seqlens, not cu_seqlens_q/cu_seqlens_k",
                tensor: problem.Has("cu_seqlens_q") ? "cu_seqlens_q" : "cu_seqlens_k");
        }
        Require(problem, variant, "k_cache", "v_cache");
    }

    /// <summary>The cache of a bound decode call, checked: the cache's batch size, cache_seqlens, and the pages read.</summary>
    public static KvCache Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        Tensor k = problem.Input("k_cache"), v = problem.Input("v_cache");
        Tensor? table = problem.Optional("block_table"), lengths = problem.Optional("cache_seqlens");
        int batch = problem["B"], blocks = problem["Blocks"], slots = problem["Tcache"], hkv = problem["Hkv"];
        if (table is null && blocks != batch)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"an unpaged cache holds one row per batch entry: expected shape [B,Tcache,Hkv,K] with B = {batch}, found {k.ShapeString}"), tensor: "k_cache");
        }
        int capacity = table is null ? slots : problem["MaxBlocks"] * slots;
        var rows = new int[batch][];
        for (int b = 0; b < batch; b++)
        {
            double length = lengths?.Data[b] ?? capacity;
            if (length < 0 || length > capacity)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"entry {b} is {length}, outside [0, {capacity}] (the cache's {(table is null ? "Tcache" : "max_blocks·page_size")})"), tensor: "cache_seqlens");
            }
            rows[b] = new int[(int)length];
            for (int j = 0; j < rows[b].Length; j++)
            {
                rows[b][j] = table is null ? b * slots + j : PagedRow(table, blocks, slots, b, j);
            }
        }
        return new KvCache(HeadRows(k, problem["K"]), HeadRows(v, problem["V"]), rows, hkv == 0 ? 1 : problem["Hq"] / hkv);
    }

    /// <summary>
    /// decode's backward: adds each (batch entry, query head) pair's dk and dv of its keys (<paramref name="pairs"/>, pair
    /// b·Hq + h, key j at row j) to the cache rows those keys came from, pair by pair in order, into
    /// <paramref name="dkCache"/> and <paramref name="dvCache"/> (shaped as k_cache and v_cache).
    /// </summary>
    public void AddGradients(Tensor dkCache, Tensor dvCache, IReadOnlyList<KeyValues> pairs, int queryHeads)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        RowBlock[] dk = HeadRows(dkCache, _k.Length == 0 ? 0 : _k[0].Width), dv = HeadRows(dvCache, _v.Length == 0 ? 0 : _v[0].Width);
        for (int pair = 0; pair < pairs.Count; pair++)
        {
            int[] rows = _rows[pair / queryHeads];
            int kvHead = pair % queryHeads / _groupSize;
            for (int j = 0; j < rows.Length; j++)
            {
                VectorKernels.AddTo(pairs[pair].Key(j), dk[kvHead][rows[j]]);
                VectorKernels.AddTo(pairs[pair].Value(j), dv[kvHead][rows[j]]);
            }
        }
    }

    /// <summary>Every cache row of each key/value head of <paramref name="cache"/> [Blocks,Tcache,Hkv,width].</summary>
    private static RowBlock[] HeadRows(Tensor cache, int width)
    {
        int hkv = cache.Dim(2), rows = cache.Dim(0) * cache.Dim(1);
        return Enumerable.Range(0, hkv).Select(h => new RowBlock(cache.Data, h * width, hkv * width, rows, width)).ToArray();
    }

    /// <summary>The cache rows (of k_cache seen as [Blocks·Tcache rows, Hkv, K]) of batch entry b's valid keys, in key order.</summary>
    public IReadOnlyList<int> Rows(int b) => _rows[b];

    /// <summary>The keys and values a (batch entry, query head) pair reads.</summary>
    public KeyValues Keys(Head head)
    {
        ArgumentNullException.ThrowIfNull(head);
        int kvHead = head.Index / _groupSize;
        int[] rows = _rows[head.Sequence.Batch];
        return new KeyValues(_k[kvHead], _v[kvHead], rows.Length, rows);
    }

    /// <summary>Key j of batch b in a paged cache: page block_table[b, j / page_size], slot j mod page_size.</summary>
    private static int PagedRow(Tensor table, int blocks, int page, int b, int j)
    {
        double block = table.Data[b * table.Dim(1) + j / page];
        if (block < 0 || block >= blocks)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"entry [{b},{j / page}] is {block}, outside [0, {blocks}) (the number of cache blocks), and batch {b} reads it"), tensor: "block_table");
        }
        return (int)block * page + j % page;
    }

    private static void Require(Problem problem, string variant, params string[] names)
    {
        foreach (string name in names.Where(n => !problem.Has(n)))
        {
            throw new InputException($"missing: the {variant} variant needs it", tensor: name);
        }
    }
}
