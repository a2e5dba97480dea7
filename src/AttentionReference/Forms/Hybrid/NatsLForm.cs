using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>The command-line and golden wiring of <see cref="NatsL"/>.</summary>
internal sealed class NatsLForm : IForm
{
    public string Name => "nats_l";
    public string Family => "hybrid";
    public string SourceFile => "NatsL.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("g", "B,T,H", "Gated DeltaNet log decay (≤ 0)"),
        new("beta", "B,T,H", "Gated DeltaNet write strength"),
        new("route", "B,NC,H", "per chunk: 1 = softmax, 0 = Gated DeltaNet; NC = ⌈T/chunk_size⌉ ([B,NC]: every head alike)"),
        new("initial_state", "B,H,K,V", "Gated DeltaNet state before the first step (zeros if absent)", Optional: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o_linear", "B,T,H,V", "Gated DeltaNet branch output (the reference's o_gated_delta)"),
        new("o_softmax", "B,T,H,V", "softmax branch output (the reference's o_attn)"),
        new("final_state", "B,H,K,V", "Gated DeltaNet state after the last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("chunk_size", "64", "routing chunk length C ≥ 1 (the reference's nats_block_size; also the chunked variant's chunk)"),
        new("scale", "K^-0.5", "the scale of both branches"),
        new("decay_for_non_gdn_blocks", "true", "a softmax-routed chunk still decays the Gated DeltaNet state by exp(Σ g)"),
    ];

    /// <summary>The options as both backends read them.</summary>
    internal static NatsLOptions Options(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) => new()
    {
        Scale = parameters.GetOptionalDouble("scale"),
        InitialState = inputs.GetValueOrDefault("initial_state"),
        DecayForNonGdnBlocks = parameters.GetBool("decay_for_non_gdn_blocks", true),
    };

    /// <summary>The named outputs of a result.</summary>
    internal static Dictionary<string, Tensor> Results(NatsLResult result) => new()
    {
        ["o_linear"] = result.OLinear,
        ["o_softmax"] = result.OSoftmax,
        ["final_state"] = result.FinalState,
    };

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = Options(inputs, parameters);
        int chunkSize = GatedLinearWiring.ChunkSize(parameters);
        var (q, k, v, g, beta, route) = (inputs["q"], inputs["k"], inputs["v"], inputs["g"], inputs["beta"], inputs["route"]);
        NatsLResult result = variant switch
        {
            "recurrent" => NatsL.Recurrent(q, k, v, g, beta, route, chunkSize, options),
            "chunked" => NatsL.Chunked(q, k, v, g, beta, route, chunkSize, options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        };
        return Results(result);
    }
}
