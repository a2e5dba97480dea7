using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>The command-line and golden wiring of <see cref="Ssd"/>.</summary>
internal sealed class SsdForm : IForm
{
    public string Name => "ssd";
    public string Family => "state space";
    public string SourceFile => "Ssd.cs";
    public IReadOnlyList<string> Variants { get; } = ["chunked", "quadratic", "recurrent"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("x", "B,T,H,P", "input per head"),
        new("dt", "B,T,H", "step sizes (before dt_bias and softplus)"),
        new("A", "H", "log decay rate per head (decay exp(Δ·A))"),
        new("B", "B,T,G,N", "input projection, G groups"),
        new("C", "B,T,G,N", "output projection, G groups"),
        new("D", "H", "skip: + D·x; also [H,P]", Optional: true),
        new("z", "B,T,H,P", "gate: y ← y·silu(z)", Optional: true),
        new("dt_bias", "H", "added to dt", Optional: true),
        new("initial_state", "S,H,P,N", "state before the first step (zeros if absent)", Optional: true, Aliases: ["initial_states"]),
        new("cu_seqlens", "S+1", "varlen sequence boundaries along T (B = 1)", Optional: true, HoldsIndices: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,P", "output y (mamba_chunk_scan_combined's out)"),
        new("final_state", "S,H,P,N", "state after each sequence's last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("dt_softplus", "false", "Δ = softplus(dt + dt_bias)"),
        new("chunk_size", "64", "chunk length Q ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = Options(inputs, parameters);
        var (x, dt, a, b, c) = (inputs["x"], inputs["dt"], inputs["A"], inputs["B"], inputs["C"]);
        var result = variant switch
        {
            "chunked" => Ssd.Chunked(x, dt, a, b, c, parameters.GetInt("chunk_size", 64), options),
            "quadratic" => Ssd.Quadratic(x, dt, a, b, c, options),
            "recurrent" => Ssd.Recurrent(x, dt, a, b, c, options),
            _ => throw DiagonalSsmWiring.UnknownVariant(Name, variant),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["final_state"] = result.FinalState };
    }

    /// <summary>The form's options read from its inputs and parameters (shared with the OpenCL host).</summary>
    internal static SsdOptions Options(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) =>
        new()
        {
            D = inputs.GetValueOrDefault("D"),
            Z = inputs.GetValueOrDefault("z"),
            DtBias = inputs.GetValueOrDefault("dt_bias"),
            DtSoftplus = parameters.GetBool("dt_softplus", false),
            InitialState = inputs.GetValueOrDefault("initial_state"),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };
}
