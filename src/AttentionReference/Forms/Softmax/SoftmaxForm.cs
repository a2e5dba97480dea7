using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>The command-line and golden wiring of <see cref="Softmax"/>: names, shapes, parameters.</summary>
internal sealed class SoftmaxForm : IForm
{
    public string Name => "softmax";
    public string Family => "softmax";
    public string SourceFile => "Softmax.cs";
    public IReadOnlyList<string> Variants { get; } = ["naive", "tiled", "split", "decode"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,Tq,Hq,K", "queries"),
        new("k", "B,Tk,Hkv,K", "keys (Hkv divides Hq: GQA/MQA); every variant but decode", Optional: true),
        new("v", "B,Tk,Hkv,V", "values; every variant but decode", Optional: true),
        new("alibi_slopes", "Hq", "ALiBi slopes, [Hq] or [B,Hq]", Optional: true),
        new("mask", "B,Hq,Tq,Tk", "additive (float: −inf drops a key) or bool (bool or 0/1 integers: true keeps a key, or float 0/1 with mask_type=bool); any shape broadcastable to [B,Hq,Tq,Tk] as SDPA's attn_mask", Optional: true, AcceptsBool: true),
        new("cu_seqlens_q", "N+1", "varlen query boundaries (B = 1), with cu_seqlens_k", Optional: true, HoldsIndices: true),
        new("cu_seqlens_k", "N+1", "varlen key boundaries (B = 1), with cu_seqlens_q", Optional: true, HoldsIndices: true),
        new("k_cache", "B,Tcache,Hkv,K", "decode: key cache, or paged [num_blocks,page_size,Hkv,K] with block_table", Optional: true),
        new("v_cache", "B,Tcache,Hkv,V", "decode: value cache, or paged [num_blocks,page_size,Hkv,V] with block_table", Optional: true),
        new("cache_seqlens", "B", "decode: valid keys per batch entry (default: the whole cache)", Optional: true, HoldsIndices: true),
        new("block_table", "B,MaxBlocks", "decode: pages of each batch entry's cache (paged KV cache)", Optional: true, HoldsIndices: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,Tq,Hq,V", "attention output"),
        new("lse", "B,Tq,Hq", "natural-log sum-exp of each row's scores (−inf for a row with no allowed key)"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "score scale"),
        new("causal", "false", "causal mask, diagonal per causal_align"),
        new("causal_align", "bottom_right", "bottom_right (flash-attn ≥ 2.1) or top_left (PyTorch SDPA is_causal)"),
        new("window_left", "-1", "keys allowed left of the diagonal; -1 = unbounded"),
        new("window_right", "-1", "keys allowed right of the diagonal; -1 = unbounded"),
        new("softcap", "0", "score ← c·tanh(score/c); 0 = off"),
        new("mask_type", "auto", "auto (integer mask: bool, float: additive), additive, or bool (float 0/1, 1 = keep)"),
        new("block_q", "64", "tiled: query block size Br (any ≥ 1)"),
        new("block_k", "64", "tiled: key block size Bc (any ≥ 1)"),
        new("num_splits", "4", "split, decode: number of key partitions P (any ≥ 1; some may be empty)"),
    ];

    private static readonly string[] s_cacheNames = ["k_cache", "v_cache", "cache_seqlens", "block_table"];

    /// <summary>The options as the command line and the metadata give them (the OpenCL backend reads them the same way).</summary>
    internal static SoftmaxOptions Options(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) => new()
    {
        Scale = parameters.GetOptionalDouble("scale"),
        Causal = parameters.GetBool("causal", false),
        Alignment = parameters.GetChoice("causal_align", "bottom_right", "bottom_right", "top_left") == "top_left"
            ? CausalAlignment.TopLeft
            : CausalAlignment.BottomRight,
        WindowLeft = parameters.GetInt("window_left", -1),
        WindowRight = parameters.GetInt("window_right", -1),
        Softcap = parameters.GetDouble("softcap", 0),
        AlibiSlopes = inputs.GetValueOrDefault("alibi_slopes"),
        Mask = inputs.GetValueOrDefault("mask"),
        MaskKind = parameters.GetChoice("mask_type", "auto", "auto", "additive", "bool") switch
        {
            "additive" => MaskKind.Additive,
            "bool" => MaskKind.Boolean,
            _ => null,
        },
        CuSeqlensQ = inputs.GetValueOrDefault("cu_seqlens_q"),
        CuSeqlensK = inputs.GetValueOrDefault("cu_seqlens_k"),
    };

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        SoftmaxOptions options = Options(inputs, parameters);
        int numSplits = parameters.GetInt("num_splits", 4);
        if (variant != "decode" && s_cacheNames.FirstOrDefault(inputs.ContainsKey) is { } cacheName)
        {
            throw new InputException($"only the decode variant reads a KV cache, found it with variant '{variant}'", tensor: cacheName);
        }
        SoftmaxResult result = variant switch
        {
            "naive" => Softmax.Naive(inputs["q"], Required(inputs, "k", variant), Required(inputs, "v", variant), options),
            "tiled" => Softmax.Tiled(inputs["q"], Required(inputs, "k", variant), Required(inputs, "v", variant), options,
                parameters.GetInt("block_q", 64), parameters.GetInt("block_k", 64)),
            "split" => Softmax.Split(inputs["q"], Required(inputs, "k", variant), Required(inputs, "v", variant), options, numSplits),
            "decode" => Softmax.Decode(inputs["q"], DecodeCache(inputs), options, numSplits),
            _ => throw new InputException(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of softmax")),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["lse"] = result.Lse };
    }

    private static KvCache DecodeCache(IReadOnlyDictionary<string, Tensor> inputs)
    {
        if (inputs.ContainsKey("k") || inputs.ContainsKey("v"))
        {
            throw new InputException("the decode variant reads k_cache and v_cache; appending new keys is not supported (write them into the cache and raise cache_seqlens)",
                tensor: inputs.ContainsKey("k") ? "k" : "v");
        }
        return new KvCache(Required(inputs, "k_cache", "decode"), Required(inputs, "v_cache", "decode"),
            inputs.GetValueOrDefault("cache_seqlens"), inputs.GetValueOrDefault("block_table"));
    }

    private static Tensor Required(IReadOnlyDictionary<string, Tensor> inputs, string name, string variant) =>
        inputs.GetValueOrDefault(name)
        ?? throw new InputException($"missing: the {variant} variant needs it", tensor: name);
}
