using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>The command-line and golden wiring of <see cref="Sparse"/>: one variant per pattern.</summary>
internal sealed class SparseForm : IForm
{
    public string Name => "sparse";
    public string Family => "softmax";
    public string SourceFile => "Sparse.cs";
    public IReadOnlyList<string> Variants { get; } = ["block", "longformer", "bigbird"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,Tq,Hq,K", "queries"),
        new("k", "B,Tk,Hkv,K", "keys (Hkv divides Hq: GQA/MQA)"),
        new("v", "B,Tk,Hkv,V", "values"),
        new("block_mask", "Hq,Nq,Nk", "0/1 block layout, [Hq,…] or [1,…] shared by all heads; Nq = ceil(Tq/block_q), Nk = ceil(Tk/block_k); block: the pattern, bigbird: the random blocks",
            Optional: true, HoldsIndices: true, AcceptsBool: true),
        new("global_tokens", "G", "global token indices in [0, Tk) (longformer, bigbird)", Optional: true, HoldsIndices: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,Tq,Hq,V", "attention output"),
        new("lse", "B,Tq,Hq", "natural-log sum-exp of each row's allowed scores (−inf for a row with no allowed key)"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "score scale"),
        new("causal", "false", "causal mask on top of the pattern (bottom-right: j ≤ i + Tk − Tq)"),
        new("block_q", "64", "query block size of block_mask (block, bigbird)"),
        new("block_k", "64", "key block size of block_mask (block, bigbird)"),
        new("window", "256", "longformer: keys on each side of the diagonal (Hugging Face attention_window / 2)"),
        new("window_blocks", "1", "bigbird: neighbouring blocks on each side (1 = the paper's 3-block window)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new SparseOptions
        {
            Scale = parameters.GetOptionalDouble("scale"),
            Causal = parameters.GetBool("causal", false),
            BlockQ = parameters.GetInt("block_q", 64),
            BlockK = parameters.GetInt("block_k", 64),
            Window = parameters.GetInt("window", 256),
            WindowBlocks = parameters.GetInt("window_blocks", 1),
        };
        var (q, k, v) = (inputs["q"], inputs["k"], inputs["v"]);
        SparseResult result = variant switch
        {
            "block" => Sparse.Block(q, k, v, Required(inputs, "block_mask", variant), options),
            "longformer" => Sparse.Longformer(q, k, v, inputs.GetValueOrDefault("global_tokens"), options),
            "bigbird" => Sparse.BigBird(q, k, v, Required(inputs, "block_mask", variant), inputs.GetValueOrDefault("global_tokens"), options),
            _ => throw new InputException(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of sparse")),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["lse"] = result.Lse };
    }

    private static Tensor Required(IReadOnlyDictionary<string, Tensor> inputs, string name, string variant) =>
        inputs.GetValueOrDefault(name)
        ?? throw new InputException($"missing: the {variant} variant needs it (expected shape [Hq,Nq,Nk] or [1,Nq,Nk])", tensor: name);
}
