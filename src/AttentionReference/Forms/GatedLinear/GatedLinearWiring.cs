using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>The tensors, parameters and option reading that the gated linear forms' wirings share.</summary>
internal static class GatedLinearWiring
{
    public static IReadOnlyList<string> Variants { get; } = ["recurrent", "parallel", "chunked"];

    public static TensorSpec InitialState { get; } = new("initial_state", "N,H,K,V", "state before the first step (zeros if absent)", Optional: true);

    public static TensorSpec CuSeqlens { get; } = new("cu_seqlens", "N+1", "varlen sequence boundaries along T (B = 1)", Optional: true, HoldsIndices: true);

    public static IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output"),
        new("final_state", "N,H,K,V", "state after each sequence's last step"),
    ];

    public static IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "o_t = scale · S_tᵀ q_t"),
        new("chunk_size", "64", "chunk length C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    /// <summary>The chunk size of the chunked variant.</summary>
    public static int ChunkSize(FormParameters parameters) => parameters.GetInt("chunk_size", 64);

    /// <summary>Fills the shared options from the inputs and parameters.</summary>
    public static T Options<T>(T options, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
        where T : GatedLinearOptions => options with
        {
            Scale = parameters.GetOptionalDouble("scale"),
            InitialState = inputs.GetValueOrDefault("initial_state"),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };

    /// <summary>The outputs by name.</summary>
    public static IReadOnlyDictionary<string, Tensor> Named(StateResult result) =>
        new Dictionary<string, Tensor> { ["o"] = result.O, ["final_state"] = result.FinalState };

    /// <summary>The error for a variant the form does not have.</summary>
    public static InputException UnknownVariant(string form, string variant) =>
        new(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of {form}"));
}
