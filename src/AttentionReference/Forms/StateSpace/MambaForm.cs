using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>The command-line and golden wiring of <see cref="Mamba"/>.</summary>
internal sealed class MambaForm : IForm
{
    public string Name => "mamba";
    public string Family => "state space";
    public string SourceFile => "Mamba.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "scan"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("u", "B,D,L", "input, channel-first as mamba"),
        new("delta", "B,D,L", "step sizes (before delta_bias and softplus)"),
        new("A", "D,N", "state matrix (diagonal per channel)"),
        new("B", "B,N,L", "input projection; also [B,G,N,L] (grouped) or [D,N] (time-invariant)"),
        new("C", "B,N,L", "output projection; also [B,G,N,L] (grouped) or [D,N] (time-invariant)"),
        new("D", "D", "skip: + D·u", Optional: true),
        new("z", "B,D,L", "gate: o = y·silu(z)", Optional: true),
        new("delta_bias", "D", "added to delta", Optional: true),
        new("initial_state", "S,D,N", "state before each sequence's first step (zeros if absent; not in selective_scan_ref)", Optional: true),
        new("cu_seqlens", "S+1", "varlen sequence boundaries along L (B = 1)", Optional: true, HoldsIndices: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,D,L", "output (selective_scan_ref's out)"),
        new("final_state", "S,D,N", "state after each sequence's last step (selective_scan_ref's last_state)"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("delta_softplus", "false", "Δ = softplus(delta + delta_bias)"),
        new("block_size", "16", "block length S ≥ 1 of the scan variant (need not divide L)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = Options(inputs, parameters);
        var (u, delta, a, b, c) = (inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"]);
        var result = variant switch
        {
            "recurrent" => Mamba.Recurrent(u, delta, a, b, c, options),
            "scan" => Mamba.Scan(u, delta, a, b, c, parameters.GetInt("block_size", 16), options),
            _ => throw DiagonalSsmWiring.UnknownVariant(Name, variant),
        };
        return new Dictionary<string, Tensor> { ["o"] = result.O, ["final_state"] = result.FinalState };
    }

    /// <summary>The form's options read from its inputs and parameters (shared with the OpenCL host).</summary>
    internal static MambaOptions Options(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) =>
        new()
        {
            D = inputs.GetValueOrDefault("D"),
            Z = inputs.GetValueOrDefault("z"),
            DeltaBias = inputs.GetValueOrDefault("delta_bias"),
            DeltaSoftplus = parameters.GetBool("delta_softplus", false),
            InitialState = inputs.GetValueOrDefault("initial_state"),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };
}
