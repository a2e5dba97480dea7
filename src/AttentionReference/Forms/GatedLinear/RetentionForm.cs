using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>The command-line and golden wiring of <see cref="Retention"/>.</summary>
internal sealed class RetentionForm : IForm
{
    public string Name => "retention";
    public string Family => "gated linear";
    public string SourceFile => "Retention.cs";
    public IReadOnlyList<string> Variants => GatedLinearWiring.Variants;

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("gamma", "H", "per-head decay in (0, 1] (default 1 − 2^(−5−h))", Optional: true),
        GatedLinearWiring.InitialState,
        GatedLinearWiring.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs => GatedLinearWiring.Outputs;
    public IReadOnlyList<ParameterSpec> Parameters => GatedLinearWiring.Parameters;

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = GatedLinearWiring.Options(new RetentionOptions { Gamma = inputs.GetValueOrDefault("gamma") }, inputs, parameters);
        var (q, k, v) = (inputs["q"], inputs["k"], inputs["v"]);
        return GatedLinearWiring.Named(variant switch
        {
            "recurrent" => Retention.Recurrent(q, k, v, options),
            "parallel" => Retention.Parallel(q, k, v, options),
            "chunked" => Retention.Chunked(q, k, v, GatedLinearWiring.ChunkSize(parameters), options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        });
    }
}
