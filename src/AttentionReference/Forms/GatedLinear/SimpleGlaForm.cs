using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>The command-line and golden wiring of <see cref="SimpleGla"/>.</summary>
internal sealed class SimpleGlaForm : IForm
{
    public string Name => "simple_gla";
    public string Family => "gated linear";
    public string SourceFile => "SimpleGla.cs";
    public IReadOnlyList<string> Variants => GatedLinearWiring.Variants;

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("g", "B,T,H", "per-head log gate (≤ 0)"),
        GatedLinearWiring.InitialState,
        GatedLinearWiring.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs => GatedLinearWiring.Outputs;
    public IReadOnlyList<ParameterSpec> Parameters => GatedLinearWiring.Parameters;

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = GatedLinearWiring.Options(new GatedLinearOptions(), inputs, parameters);
        var (q, k, v, g) = (inputs["q"], inputs["k"], inputs["v"], inputs["g"]);
        return GatedLinearWiring.Named(variant switch
        {
            "recurrent" => SimpleGla.Recurrent(q, k, v, g, options),
            "parallel" => SimpleGla.Parallel(q, k, v, g, options),
            "chunked" => SimpleGla.Chunked(q, k, v, g, GatedLinearWiring.ChunkSize(parameters), options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        });
    }
}
