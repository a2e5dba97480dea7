using AttentionReference.Forms.Delta;
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
        new("route", "B,NC,H", "per chunk: 1 = softmax keys, 0 = Gated DeltaNet state; NC = ⌈T/chunk_size⌉ ([B,NC]: every head alike)"),
        new("initial_state", "B,H,K,V", "Gated DeltaNet state before the first step (zeros if absent)", Optional: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output: Gated DeltaNet branch + softmax branch"),
        new("final_state", "B,H,K,V", "Gated DeltaNet state after the last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("chunk_size", "64", "routing chunk length C ≥ 1 (also the chunked variant's chunk)"),
        new("scale", "K^-0.5", "the scale of both branches"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new NatsLOptions { Scale = parameters.GetOptionalDouble("scale"), InitialState = inputs.GetValueOrDefault("initial_state") };
        int chunkSize = GatedLinearWiring.ChunkSize(parameters);
        var (q, k, v, g, beta, route) = (inputs["q"], inputs["k"], inputs["v"], inputs["g"], inputs["beta"], inputs["route"]);
        DeltaResult result = variant switch
        {
            "recurrent" => NatsL.Recurrent(q, k, v, g, beta, route, chunkSize, options),
            "chunked" => NatsL.Chunked(q, k, v, g, beta, route, chunkSize, options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["final_state"] = result.FinalState };
    }
}
