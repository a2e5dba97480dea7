using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Linear;

/// <summary>The command-line and golden wiring of <see cref="Linear"/>.</summary>
internal sealed class LinearForm : IForm
{
    public string Name => "linear";
    public string Family => "linear";
    public string SourceFile => "Linear.cs";
    public IReadOnlyList<string> Variants => GatedLinearWiring.Variants;

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries (before the feature map)"),
        new("k", "B,T,H,K", "keys (before the feature map)"),
        new("v", "B,T,H,V", "values"),
        new("proj", "M,K", "performer's random projection ω (feature_map=performer only)", Optional: true),
        new("initial_state", "N,H,F,V", "S before the first step, F the feature dimension (zeros if absent)", Optional: true),
        new("initial_normalizer", "N,H,F", "z before the first step (zeros if absent)", Optional: true),
        GatedLinearWiring.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output"),
        new("final_state", "N,H,F,V", "S after each sequence's last step"),
        new("final_normalizer", "N,H,F", "z after each sequence's last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("feature_map", "identity", "φ: identity, elu1, relu, taylor2 (Based) or performer (FAVOR+, needs proj)"),
        new("normalize", "false", "divide by scale·φ(q_t)·z_t + eps"),
        new("eps", "1e-10", "added to the normaliser (fla's value)"),
        new("causal", "true", "false: every o_t reads the state after the last step"),
        new("scale", "F^-0.5", "o_t = scale · S_tᵀ φ(q_t), F the feature dimension"),
        new("chunk_size", "64", "chunk length C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new LinearOptions
        {
            FeatureMap = parameters.GetChoice("feature_map", "identity", "identity", "elu1", "relu", "taylor2", "performer") switch
            {
                "elu1" => LinearFeatureMap.EluPlusOne,
                "relu" => LinearFeatureMap.Relu,
                "taylor2" => LinearFeatureMap.Taylor2,
                "performer" => LinearFeatureMap.Performer,
                _ => LinearFeatureMap.Identity,
            },
            Proj = inputs.GetValueOrDefault("proj"),
            Normalize = parameters.GetBool("normalize", false),
            Eps = parameters.GetDouble("eps", 1e-10),
            Causal = parameters.GetBool("causal", true),
            Scale = parameters.GetOptionalDouble("scale"),
            InitialState = inputs.GetValueOrDefault("initial_state"),
            InitialNormalizer = inputs.GetValueOrDefault("initial_normalizer"),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };
        var (q, k, v) = (inputs["q"], inputs["k"], inputs["v"]);
        LinearResult result = variant switch
        {
            "recurrent" => Linear.Recurrent(q, k, v, options),
            "parallel" => Linear.Parallel(q, k, v, options),
            "chunked" => Linear.Chunked(q, k, v, GatedLinearWiring.ChunkSize(parameters), options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        };
        return new Dictionary<string, Tensor>
        {
            ["o"] = result.O,
            ["final_state"] = result.FinalState,
            ["final_normalizer"] = result.FinalNormalizer,
        };
    }
}
