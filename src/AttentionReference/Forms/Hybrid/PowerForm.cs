using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>The command-line and golden wiring of <see cref="Power"/>.</summary>
internal sealed class PowerForm : IForm
{
    public string Name => "power";
    public string Family => "hybrid";
    public string SourceFile => "Power.cs";
    public IReadOnlyList<string> Variants { get; } = ["quadratic", "recurrent", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("g", "B,T,H", "per-head log gate (≤ 0); no decay if absent", Optional: true, Aliases: ["log_G"]),
        new("initial_state", "N,H,D,V", "S before the first step, D = C(K+deg−1, deg) (zeros if absent)", Optional: true),
        new("initial_normalizer", "N,H,D", "z before the first step (zeros if absent)", Optional: true),
        GatedLinearWiring.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output"),
        new("final_state", "N,H,D,V", "S after each sequence's last step"),
        new("final_normalizer", "N,H,D", "z after each sequence's last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("deg", "2", "the power p ≥ 1 of (scale · q·k)^p (power-attention uses even p)"),
        new("normalize", "true", "divide by the sum of the weights plus eps"),
        new("eps", "0", "added to the normaliser"),
        new("scale", "K^-0.5", "weights (scale · q·k)^p"),
        new("chunk_size", "64", "chunk length C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        PowerOptions options = Options(inputs, parameters);
        var (q, k, v, g) = (inputs["q"], inputs["k"], inputs["v"], inputs.GetValueOrDefault("g"));
        PowerResult result = variant switch
        {
            "quadratic" => Power.Quadratic(q, k, v, g, options),
            "recurrent" => Power.Recurrent(q, k, v, g, options),
            "chunked" => Power.Chunked(q, k, v, GatedLinearWiring.ChunkSize(parameters), g, options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        };
        return new Dictionary<string, Tensor>
        {
            ["o"] = result.O,
            ["final_state"] = result.FinalState,
            ["final_normalizer"] = result.FinalNormalizer,
        };
    }

    /// <summary>The options a call's inputs and parameters give (the OpenCL host reads them through this too).</summary>
    internal static PowerOptions Options(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) => new()
    {
        Degree = parameters.GetInt("deg", 2),
        Normalize = parameters.GetBool("normalize", true),
        Eps = parameters.GetDouble("eps", 0),
        Scale = parameters.GetOptionalDouble("scale"),
        InitialState = inputs.GetValueOrDefault("initial_state"),
        InitialNormalizer = inputs.GetValueOrDefault("initial_normalizer"),
        CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
    };
}
