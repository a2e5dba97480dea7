using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>The command-line and golden wiring of <see cref="Forgetting"/>: names and shapes as fla's parallel_forgetting_attn.</summary>
internal sealed class ForgettingForm : IForm
{
    public string Name => "forgetting";
    public string Family => "softmax";
    public string SourceFile => "Forgetting.cs";
    public IReadOnlyList<string> Variants { get; } = ["naive", "tiled"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,Hq,K", "queries"),
        new("k", "B,T,Hkv,K", "keys (Hkv divides Hq: GQA/MQA)"),
        new("v", "B,T,Hkv,V", "values"),
        new("g", "B,T,Hq", "log forget gates log f_t ≤ 0, per query head"),
        new("cu_seqlens", "N+1", "varlen: sequence boundaries along T (B = 1)", Optional: true, HoldsIndices: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,Hq,V", "attention output"),
        new("lse", "B,T,Hq", "natural-log sum-exp of each row's biased scores"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "score scale"),
        new("block_q", "64", "tiled: queries per tile"),
        new("block_k", "64", "tiled: keys per tile"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new ForgettingOptions
        {
            Scale = parameters.GetOptionalDouble("scale"),
            BlockQ = parameters.GetInt("block_q", 64),
            BlockK = parameters.GetInt("block_k", 64),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };
        var (q, k, v, g) = (inputs["q"], inputs["k"], inputs["v"], inputs["g"]);
        ForgettingResult result = variant switch
        {
            "naive" => Forgetting.Naive(q, k, v, g, options),
            "tiled" => Forgetting.Tiled(q, k, v, g, options),
            _ => throw new InputException(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of forgetting")),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["lse"] = result.Lse };
    }
}
