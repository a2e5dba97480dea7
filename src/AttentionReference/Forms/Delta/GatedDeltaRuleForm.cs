using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>The command-line and golden wiring of <see cref="GatedDeltaRule"/>: names, shapes, parameters.</summary>
internal sealed class GatedDeltaRuleForm : IForm
{
    public string Name => "gated_delta_rule";
    public string Family => "delta rule";
    public string SourceFile => "GatedDeltaRule.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        DeltaFormSpecs.Q, DeltaFormSpecs.K, DeltaFormSpecs.V,
        new("g", "B,T,HV", "log-space decay per head and step (g ≤ 0)"),
        DeltaFormSpecs.Beta(perValue: true),
        DeltaFormSpecs.InitialState, DeltaFormSpecs.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs => DeltaFormSpecs.Outputs;

    public IReadOnlyList<ParameterSpec> Parameters => DeltaFormSpecs.Parameters;

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var (q, k, v, g, beta) = (inputs["q"], inputs["k"], inputs["v"], inputs["g"], inputs["beta"]);
        DeltaOptions options = DeltaFormSpecs.Options(inputs, parameters);
        DeltaResult result = variant switch
        {
            "recurrent" => GatedDeltaRule.Recurrent(q, k, v, g, beta, options),
            "chunked" => GatedDeltaRule.Chunked(q, k, v, g, beta, DeltaFormSpecs.ChunkSize(parameters), options),
            _ => throw DeltaFormSpecs.UnknownVariant(Name, variant),
        };
        return DeltaFormSpecs.Results(result);
    }
}
