using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>The command-line and golden wiring of <see cref="Kda"/>: names, shapes, parameters.</summary>
internal sealed class KdaForm : IForm
{
    public string Name => "kda";
    public string Family => "delta rule";
    public string SourceFile => "Kda.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        DeltaFormSpecs.Q, DeltaFormSpecs.K, DeltaFormSpecs.V,
        new("gk", "B,T,HV,K", "log-space decay per key channel (gk ≤ 0); fla's chunk_kda calls it g", Aliases: ["g"]),
        DeltaFormSpecs.Beta(perValue: false),
        DeltaFormSpecs.InitialState, DeltaFormSpecs.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs => DeltaFormSpecs.Outputs;

    public IReadOnlyList<ParameterSpec> Parameters => DeltaFormSpecs.Parameters;

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var (q, k, v, gk, beta) = (inputs["q"], inputs["k"], inputs["v"], inputs["gk"], inputs["beta"]);
        DeltaOptions options = DeltaFormSpecs.Options(inputs, parameters);
        DeltaResult result = variant switch
        {
            "recurrent" => Kda.Recurrent(q, k, v, gk, beta, options),
            "chunked" => Kda.Chunked(q, k, v, gk, beta, DeltaFormSpecs.ChunkSize(parameters), options),
            _ => throw DeltaFormSpecs.UnknownVariant(Name, variant),
        };
        return DeltaFormSpecs.Results(result);
    }
}
