using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>The command-line and golden wiring of <see cref="Rwkv7"/>: fla's dplr names, with chunk_rwkv7's as aliases.</summary>
internal sealed class Rwkv7Form : IForm
{
    public string Name => "rwkv7";
    public string Family => "delta rule";
    public string SourceFile => "Rwkv7.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries (RWKV's receptance r)", Aliases: ["r"]),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("a", "B,T,H,K", "the low-rank vector that reads the state (RWKV-7: −κ̂)"),
        new("b", "B,T,H,K", "the low-rank vector that writes the state (RWKV-7: κ̂·a)"),
        new("gk", "B,T,H,K", "log-space decay per key channel; chunk_rwkv7's w / log_w", Aliases: ["w", "log_w"]),
        new("initial_state", "N,H,K,V", "state each sequence starts from (zeros if absent)", Optional: true),
        DeltaFormSpecs.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output"),
        new("final_state", "N,H,K,V", "state after each sequence's last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "output scale (fla's chunk_rwkv7 defaults to 1)"),
        new("chunk_size", "64", "chunk size C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var (q, k, v, a, b, gk) = (inputs["q"], inputs["k"], inputs["v"], inputs["a"], inputs["b"], inputs["gk"]);
        var options = new Rwkv7Options
        {
            Scale = parameters.GetOptionalDouble("scale"),
            InitialState = inputs.GetValueOrDefault("initial_state"),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };
        DeltaResult result = variant switch
        {
            "recurrent" => Rwkv7.Recurrent(q, k, v, a, b, gk, options),
            "chunked" => Rwkv7.Chunked(q, k, v, a, b, gk, DeltaFormSpecs.ChunkSize(parameters), options),
            _ => throw DeltaFormSpecs.UnknownVariant(Name, variant),
        };
        return DeltaFormSpecs.Results(result);
    }
}
