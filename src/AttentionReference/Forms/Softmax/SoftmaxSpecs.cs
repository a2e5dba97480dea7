namespace AttentionReference.Forms.Softmax;

/// <summary>
/// The tensors and parameters that the softmax family's forms share, each written once, named as flash-attn names them:
/// <code>
///   q [B,Tq,Hq,K]   k [B,Tk,Hkv,K]   v [B,Tk,Hkv,V]   →   o [B,Tq,Hq,V]   lse [B,Tq,Hq]
///   Hq a multiple of Hkv (GQA/MQA): query head h reads key/value head h / (Hq/Hkv).
/// </code>
/// </summary>
public static class SoftmaxSpecs
{
    /// <summary>q [B,Tq,Hq,K].</summary>
    public static TensorSpec Q { get; } = new("q", "B,Tq,Hq,K", "queries");

    /// <summary>k [B,Tk,Hkv,K].</summary>
    public static TensorSpec K { get; } = new("k", "B,Tk,Hkv,K", "keys (Hq a multiple of Hkv: GQA/MQA)");

    /// <summary>v [B,Tk,Hkv,V].</summary>
    public static TensorSpec V { get; } = new("v", "B,Tk,Hkv,V", "values");

    /// <summary>o [B,Tq,Hq,V] and lse [B,Tq,Hq].</summary>
    public static IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,Tq,Hq,V", "attention output"),
        new("lse", "B,Tq,Hq", "natural-log sum-exp of each row's scores (−inf for a row with no allowed key)"),
    ];

    /// <summary>Query heads read key/value heads in groups: Hq a multiple of Hkv.</summary>
    public static HeadGroup Gqa { get; } = new("Hq", "Hkv", "GQA");

    /// <summary>scale, K^-0.5 unless given.</summary>
    public static Parameter<double?> Scale { get; } = ParameterSpec.OptionalReal("scale", "K^-0.5", "score scale: s_ij = scale · q_i · k_j");

    /// <summary>mla's scale, (Dn + Dr)^-0.5 unless given.</summary>
    public static Parameter<double?> MlaScale { get; } = ParameterSpec.OptionalReal("scale", "(Dn+Dr)^-0.5", "score scale (DeepSeek's softmax_scale)");

    /// <summary>causal, false unless given.</summary>
    public static Parameter<bool> Causal { get; } = ParameterSpec.Flag("causal", false,
        "causal mask: query i reads keys up to its diagonal key (bottom-right, as flash-attn: the last query sees the last key)");

    /// <summary>block_q of a tiled variant: the query block Br, which changes only the summation order.</summary>
    public static Parameter<int> BlockQ { get; } = ParameterSpec.WholeNumber("block_q", 64, "tiled: query block size Br (any ≥ 1)", min: 1);

    /// <summary>block_k of a tiled variant: the key block Bc, which changes only the summation order.</summary>
    public static Parameter<int> BlockK { get; } = ParameterSpec.WholeNumber("block_k", 64, "tiled: key block size Bc (any ≥ 1)", min: 1);

    /// <summary>causal_align: where the diagonal sits when Tq ≠ Tk.</summary>
    public static Parameter<string> CausalAlign { get; } = ParameterSpec.Choice("causal_align", "bottom_right",
        "bottom_right (flash-attn ≥ 2.1) or top_left (PyTorch SDPA is_causal)", "bottom_right", "top_left");

    /// <summary>window_left, −1 (unbounded) unless given.</summary>
    public static Parameter<int> WindowLeft { get; } = ParameterSpec.WholeNumber("window_left", -1,
        "keys allowed left of the diagonal; -1 = unbounded", min: -1);

    /// <summary>window_right, −1 (unbounded) unless given.</summary>
    public static Parameter<int> WindowRight { get; } = ParameterSpec.WholeNumber("window_right", -1,
        "keys allowed right of the diagonal; -1 = unbounded", min: -1);

    /// <summary>softcap c, 0 (off) unless given.</summary>
    public static Parameter<double> Softcap { get; } = ParameterSpec.Real("softcap", 0, "score ← c·tanh(score/c); 0 = off", min: 0);

    /// <summary>mask_type: how the mask's values are read.</summary>
    public static Parameter<string> MaskType { get; } = ParameterSpec.Choice("mask_type", "auto",
        "auto (integer mask: bool, float: additive), additive, or bool (float 0/1, 1 = keep)", "auto", "additive", "bool");

    /// <summary>num_splits P of split and decode.</summary>
    public static Parameter<int> NumSplits { get; } = ParameterSpec.WholeNumber("num_splits", 4,
        "split, decode: number of key partitions P (any ≥ 1; some may be empty)", min: 1);

    /// <summary>block_q of sparse's layouts: the query block Bq of block_mask.</summary>
    public static Parameter<int> LayoutBlockQ { get; } = ParameterSpec.WholeNumber("block_q", 64, "query block size of block_mask (block, bigbird)", min: 1);

    /// <summary>block_k of sparse's layouts: the key block Bk of block_mask.</summary>
    public static Parameter<int> LayoutBlockK { get; } = ParameterSpec.WholeNumber("block_k", 64, "key block size of block_mask (block, bigbird)", min: 1);

    /// <summary>window of longformer: keys on each side of the diagonal.</summary>
    public static Parameter<int> Window { get; } = ParameterSpec.WholeNumber("window", 256,
        "longformer: keys on each side of the diagonal (Hugging Face attention_window / 2)", min: 0);

    /// <summary>window_blocks of bigbird: neighbouring blocks on each side.</summary>
    public static Parameter<int> WindowBlocks { get; } = ParameterSpec.WholeNumber("window_blocks", 1,
        "bigbird: neighbouring blocks on each side (1 = the paper's 3-block window)", min: 0);

    /// <summary>The scale of a call: the given one, or <paramref name="symbol"/>^(-1/2).</summary>
    public static double ScaleOf(Problem problem, string symbol = "K")
    {
        ArgumentNullException.ThrowIfNull(problem);
        return problem.Get(Scale) ?? 1 / Math.Sqrt(problem[symbol]);
    }
}
