using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>The command-line and golden wiring of <see cref="Rwkv6"/>: names, shapes, parameters.</summary>
internal sealed class Rwkv6Form : IForm
{
    public string Name => "rwkv6";
    public string Family => "gated linear";
    public string SourceFile => "Rwkv6.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "parallel", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "receptance (queries)", Aliases: ["r"]),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("w", "B,T,H,K", "log decay per step and key channel (≤ 0)"),
        new("u", "H,K", "bonus of the current token"),
        new("initial_state", "N,H,K,V", "state before the first step (zeros if absent)", Optional: true),
        new("cu_seqlens", "N+1", "packed sequence boundaries (B = 1)", Optional: true, HoldsIndices: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output"),
        new("final_state", "N,H,K,V", "state after the last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "query scale"),
        new("chunk_size", "16", "chunk length C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new Rwkv6Options
        {
            Scale = parameters.GetOptionalDouble("scale"),
            InitialState = inputs.GetValueOrDefault("initial_state"),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };
        var (q, k, v, w, u) = (inputs["q"], inputs["k"], inputs["v"], inputs["w"], inputs["u"]);
        Rwkv6Result result = variant switch
        {
            "recurrent" => Rwkv6.Recurrent(q, k, v, w, u, options),
            "parallel" => Rwkv6.Parallel(q, k, v, w, u, options),
            "chunked" => Rwkv6.Chunked(q, k, v, w, u, parameters.GetInt("chunk_size", 16), options),
            _ => throw new InputException($"unknown variant '{variant}' of rwkv6"),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["final_state"] = result.FinalState };
    }
}
