using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>The command-line and golden wiring of <see cref="Gla"/>.</summary>
internal sealed class GlaForm : IForm
{
    public string Name => "gla";
    public string Family => "gated linear";
    public string SourceFile => "Gla.cs";
    public IReadOnlyList<string> Variants => GatedLinearWiring.Variants;

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("gk", "B,T,H,K", "key-dim log gate (≤ 0)", Aliases: ["g"]),
        new("gv", "B,T,H,V", "value-dim log gate (≤ 0)", Optional: true),
        GatedLinearWiring.InitialState,
        GatedLinearWiring.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs => GatedLinearWiring.Outputs;
    public IReadOnlyList<ParameterSpec> Parameters => GatedLinearWiring.Parameters;

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = GatedLinearWiring.Options(new GlaOptions { Gv = inputs.GetValueOrDefault("gv") }, inputs, parameters);
        var (q, k, v, gk) = (inputs["q"], inputs["k"], inputs["v"], inputs["gk"]);
        return GatedLinearWiring.Named(variant switch
        {
            "recurrent" => Gla.Recurrent(q, k, v, gk, options),
            "parallel" => Gla.Parallel(q, k, v, gk, options),
            "chunked" => Gla.Chunked(q, k, v, gk, GatedLinearWiring.ChunkSize(parameters), options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        });
    }
}
