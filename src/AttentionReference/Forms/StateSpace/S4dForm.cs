using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>The command-line and golden wiring of <see cref="S4d"/>.</summary>
internal sealed class S4dForm : IForm
{
    public string Name => "s4d";
    public string Family => "state space";
    public string SourceFile => "S4d.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "convolution", "fft"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("u", "B,T,H", "input sequence, one channel per H"),
        .. DiagonalSsmWiring.Inputs,
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } = [new("o", "B,T,H", "output")];

    public IReadOnlyList<ParameterSpec> Parameters { get; } = [DiagonalSsmWiring.RealA];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var ssm = DiagonalSsmWiring.Read(inputs, parameters);
        var u = inputs["u"];
        return new Dictionary<string, Tensor>
        {
            ["o"] = variant switch
            {
                "recurrent" => S4d.Recurrent(u, ssm),
                "convolution" => S4d.Convolution(u, ssm),
                "fft" => S4d.Fft(u, ssm),
                _ => throw DiagonalSsmWiring.UnknownVariant(Name, variant),
            },
        };
    }
}

/// <summary>The diagonal-SSM tensors and parameter that s4d and h3 share.</summary>
internal static class DiagonalSsmWiring
{
    public static IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("log_dt", "H", "log step size: dt = exp(log_dt)"),
        new("A_real", "H,N", "real part of A (s4d.py's −exp(log_A_real))"),
        new("A_imag", "H,N", "imaginary part of A (absent with real_a)", Optional: true),
        new("C_real", "H,N", "real part of C (B folded in)"),
        new("C_imag", "H,N", "imaginary part of C (absent with real_a)", Optional: true),
        new("D", "H", "skip: + D·u (zero if absent)", Optional: true),
    ];

    public static ParameterSpec RealA { get; } = new("real_a", "false", "real modes (S4D-Real): y = C x instead of 2·Re(C x); A_imag, C_imag absent");

    public static DiagonalSsm Read(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) => new(
        inputs["log_dt"], inputs["A_real"], inputs.GetValueOrDefault("A_imag"), inputs["C_real"], inputs.GetValueOrDefault("C_imag"),
        inputs.GetValueOrDefault("D"), parameters.GetBool("real_a", false));

    public static InputException UnknownVariant(string form, string variant) => new($"unknown variant '{variant}' of {form}");
}
