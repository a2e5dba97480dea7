using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>The command-line and golden wiring of <see cref="Hgrn2"/>.</summary>
internal sealed class Hgrn2Form : IForm
{
    public string Name => "hgrn2";
    public string Family => "gated linear";
    public string SourceFile => "Hgrn2.cs";
    public IReadOnlyList<string> Variants => GatedLinearWiring.Variants;

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("gk", "B,T,H,K", "key-dim log forget gate (≤ 0); the input gate is k = 1 − exp(gk)", Aliases: ["g"]),
        new("v", "B,T,H,V", "values (HGRN2's input i)"),
        GatedLinearWiring.InitialState,
        GatedLinearWiring.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs => GatedLinearWiring.Outputs;
    public IReadOnlyList<ParameterSpec> Parameters => GatedLinearWiring.Parameters;

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = GatedLinearWiring.Options(new GatedLinearOptions(), inputs, parameters);
        var (q, gk, v) = (inputs["q"], inputs["gk"], inputs["v"]);
        return GatedLinearWiring.Named(variant switch
        {
            "recurrent" => Hgrn2.Recurrent(q, gk, v, options),
            "parallel" => Hgrn2.Parallel(q, gk, v, options),
            "chunked" => Hgrn2.Chunked(q, gk, v, GatedLinearWiring.ChunkSize(parameters), options),
            _ => throw GatedLinearWiring.UnknownVariant(Name, variant),
        });
    }
}
