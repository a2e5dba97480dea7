using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Softmax;

/// <summary>The command-line and golden wiring of <see cref="Mla"/>: names as DeepSeek-V3's MLA, weights split or stacked.</summary>
internal sealed class MlaForm : IForm
{
    public string Name => "mla";
    public string Family => "softmax";
    public string SourceFile => "Mla.cs";
    public IReadOnlyList<string> Variants { get; } = ["naive", "absorbed"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q_nope", "B,Tq,H,Dn", "query, non-RoPE part"),
        new("q_pe", "B,Tq,H,Dr", "query, RoPE part (already rotated)"),
        // The cache length is Sk, not a T symbol: the cache has no head axis, so the layout option leaves it alone.
        new("c_kv", "B,Sk,Dc", "compressed key-value latent (DeepSeek's kv_cache, after kv_norm)", Aliases: ["kv_cache"]),
        new("k_pe", "B,Sk,Dr", "key RoPE part shared by all heads (already rotated; DeepSeek's pe_cache)", Aliases: ["pe_cache"]),
        new("w_uk", "H,Dn,Dc", "key up-projection W_UK (give w_uk and w_uv, or wkv_b)", Optional: true),
        new("w_uv", "H,Dv,Dc", "value up-projection W_UV", Optional: true),
        new("wkv_b", "H,Dnv,Dc", "DeepSeek-V3's wkv_b.weight viewed [H, Dn+Dv, Dc] = [W_UK; W_UV] per head", Optional: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,Tq,H,Dv", "attention output per head (before W_O)"),
        new("lse", "B,Tq,H", "natural-log sum-exp of each row's scores (−inf for a row with no allowed key)"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "(Dn+Dr)^-0.5", "score scale (DeepSeek's softmax_scale)"),
        new("causal", "false", "causal mask, bottom-right: j ≤ i + Sk − Tq"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new MlaOptions
        {
            Scale = parameters.GetOptionalDouble("scale"),
            Causal = parameters.GetBool("causal", false),
        };
        var (qNope, qPe, cKv, kPe) = (inputs["q_nope"], inputs["q_pe"], inputs["c_kv"], inputs["k_pe"]);
        var (wUk, wUv) = Weights(inputs, qNope);
        MlaResult result = variant switch
        {
            "naive" => Mla.Naive(qNope, qPe, cKv, kPe, wUk, wUv, options),
            "absorbed" => Mla.Absorbed(qNope, qPe, cKv, kPe, wUk, wUv, options),
            _ => throw new InputException(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of mla")),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["lse"] = result.Lse };
    }

    /// <summary>w_uk and w_uv as given, or split from wkv_b at Dn; exactly one of the two ways.</summary>
    private static (Tensor WUk, Tensor WUv) Weights(IReadOnlyDictionary<string, Tensor> inputs, Tensor qNope)
    {
        var (wUk, wUv, wkvB) = (inputs.GetValueOrDefault("w_uk"), inputs.GetValueOrDefault("w_uv"), inputs.GetValueOrDefault("wkv_b"));
        if (wkvB is not null)
        {
            return wUk is null && wUv is null
                ? Mla.SplitWkvB(wkvB, qNope.Rank == 4 ? qNope.Dim(3) : 0)
                : throw new InputException("give either wkv_b or w_uk and w_uv, not both", tensor: "wkv_b");
        }
        return (wUk ?? throw new InputException("missing (expected shape [H,Dn,Dc]; or give wkv_b [H,Dn+Dv,Dc])", tensor: "w_uk"),
                wUv ?? throw new InputException("missing (expected shape [H,Dv,Dc]; or give wkv_b [H,Dn+Dv,Dc])", tensor: "w_uv"));
    }
}
