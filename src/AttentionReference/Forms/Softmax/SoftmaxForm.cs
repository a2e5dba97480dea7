using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>The command-line and golden wiring of <see cref="Softmax"/>: names, shapes, parameters.</summary>
internal sealed class SoftmaxForm : IForm
{
    public string Name => "softmax";
    public string Family => "softmax";
    public string SourceFile => "Softmax.cs";
    public IReadOnlyList<string> Variants { get; } = ["naive"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,Tq,Hq,K", "queries"),
        new("k", "B,Tk,Hkv,K", "keys (Hkv divides Hq: GQA/MQA)"),
        new("v", "B,Tk,Hkv,V", "values"),
        new("alibi_slopes", "Hq", "ALiBi slopes, [Hq] or [B,Hq]", Optional: true),
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
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new SoftmaxOptions
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
        };
        SoftmaxResult result = variant switch
        {
            "naive" => Softmax.Naive(inputs["q"], inputs["k"], inputs["v"], options),
            _ => throw new InputException(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of softmax")),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["lse"] = result.Lse };
    }
}
