using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>The command-line and golden wiring of <see cref="H3"/>.</summary>
internal sealed class H3Form : IForm
{
    public string Name => "h3";
    public string Family => "state space";
    public string SourceFile => "H3.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "convolution"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,d", "queries"),
        new("k", "B,T,H,d", "keys (input of the shift SSM)"),
        new("v", "B,T,H,d", "values"),
        new("shift_kernel", "H,d,M", "taps of the shift SSM on k (its C)"),
        new("shift_D", "H,d", "skip of the shift SSM (zero if absent)", Optional: true),
        .. DiagonalSsmWiring.Inputs,
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } = [new("o", "B,T,H,d", "output")];

    public IReadOnlyList<ParameterSpec> Parameters { get; } = [DiagonalSsmWiring.RealA];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var ssm = DiagonalSsmWiring.Read(inputs, parameters);
        var shift = new H3Shift(inputs["shift_kernel"], inputs.GetValueOrDefault("shift_D"));
        var (q, k, v) = (inputs["q"], inputs["k"], inputs["v"]);
        return new Dictionary<string, Tensor>
        {
            ["o"] = variant switch
            {
                "recurrent" => H3.Recurrent(q, k, v, shift, ssm),
                "convolution" => H3.Convolution(q, k, v, shift, ssm),
                _ => throw DiagonalSsmWiring.UnknownVariant(Name, variant),
            },
        };
    }
}
