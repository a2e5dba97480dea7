using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>The command-line and golden wiring of <see cref="Based"/>.</summary>
internal sealed class BasedForm : IForm
{
    public string Name => "based";
    public string Family => "hybrid";
    public string SourceFile => "Based.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "parallel", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("initial_state", "N,H,F,V", "the linear branch's S, F = 1 + K + K² (zeros if absent)", Optional: true),
        new("initial_normalizer", "N,H,F", "the linear branch's z (zeros if absent)", Optional: true),
        GatedLinearWiring.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output: linear branch + window branch"),
        new("final_state", "N,H,F,V", "the linear branch's S after each sequence's last step"),
        new("final_normalizer", "N,H,F", "the linear branch's z after each sequence's last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("window", "64", "keys of the softmax window, the query's own step included"),
        new("scale", "K^-0.5", "the window branch's score scale"),
        new("linear_scale", "1", "the linear branch's scale a"),
        new("eps", "1e-12", "the linear branch's normaliser eps"),
        new("chunk_size", "64", "chunk length C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        BasedOptions options = Options(inputs, parameters);
        var (q, k, v) = (inputs["q"], inputs["k"], inputs["v"]);
        LinearResult result = variant switch
        {
            "recurrent" => Based.Recurrent(q, k, v, options),
            "parallel" => Based.Parallel(q, k, v, options),
            "chunked" => Based.Chunked(q, k, v, GatedLinearWiring.ChunkSize(parameters), options),
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
    internal static BasedOptions Options(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) => new()
    {
        Window = parameters.GetInt("window", 64),
        Scale = parameters.GetOptionalDouble("scale"),
        LinearScale = parameters.GetDouble("linear_scale", 1),
        Eps = parameters.GetDouble("eps", 1e-12),
        InitialState = inputs.GetValueOrDefault("initial_state"),
        InitialNormalizer = inputs.GetValueOrDefault("initial_normalizer"),
        CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
    };
}
