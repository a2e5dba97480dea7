namespace AttentionReference.Forms.Common;

/// <summary>
/// The tensors and parameters that many forms share, each written once: q, k, v, o, the state in and out, cu_seqlens,
/// scale and chunk_size.
/// </summary>
public static class Specs
{
    /// <summary>q [B,T,H,K].</summary>
    public static TensorSpec Q { get; } = new("q", "B,T,H,K", "queries");

    /// <summary>k [B,T,H,K].</summary>
    public static TensorSpec K { get; } = new("k", "B,T,H,K", "keys");

    /// <summary>v [B,T,H,V].</summary>
    public static TensorSpec V { get; } = new("v", "B,T,H,V", "values");

    /// <summary>o [B,T,H,V].</summary>
    public static TensorSpec O { get; } = new("o", "B,T,H,V", "output");

    /// <summary>initial_state [N,H,K,V].</summary>
    public static TensorSpec InitialState { get; } = new("initial_state", "N,H,K,V", "state before each sequence's first step (zeros if absent)", Optional: true);

    /// <summary>final_state [N,H,K,V].</summary>
    public static TensorSpec FinalState { get; } = new("final_state", "N,H,K,V", "state after each sequence's last step");

    /// <summary>cu_seqlens [N+1]: sequence n is steps [cu[n], cu[n+1]) of T, with B = 1.</summary>
    public static TensorSpec CuSeqlens { get; } = new("cu_seqlens", "N+1", "varlen sequence boundaries along T (B = 1)",
        Optional: true, HoldsIndices: true, Varlen: "T");

    /// <summary>o and final_state: the outputs of a form with a K x V state per head.</summary>
    public static IReadOnlyList<TensorSpec> StateOutputs { get; } = [O, FinalState];

    /// <summary>scale, K^-0.5 unless given.</summary>
    public static Parameter<double?> Scale { get; } = ParameterSpec.OptionalReal("scale", "K^-0.5", "o_t = scale · S_tᵀ q_t");

    /// <summary>chunk_size, 64 unless given.</summary>
    public static Parameter<int> ChunkSize { get; } = ChunkSizeOf(64);

    /// <summary>chunk_size with another default (a form's engine default, e.g. 16).</summary>
    public static Parameter<int> ChunkSizeOf(int defaultValue) => ParameterSpec.WholeNumber("chunk_size", defaultValue,
        "chunk length C ≥ 1 of the chunked variant (need not divide T; a chunk longer than the sequence is the whole sequence)", min: 1);

    /// <summary>The scale of a call: the given one, or <paramref name="symbol"/>^(-1/2).</summary>
    public static double ScaleOf(Problem problem, string symbol = "K")
    {
        ArgumentNullException.ThrowIfNull(problem);
        return problem.Get(Scale) ?? 1 / Math.Sqrt(problem[symbol]);
    }
}

/// <summary>The options of a form whose only parameters are its scale and chunk size, read once from a bound call.</summary>
public sealed record ScaleAndChunk(double Scale, int ChunkSize)
{
    /// <summary>The options of <paramref name="problem"/>: scale (K^-0.5 unless given) and chunk_size.</summary>
    public static ScaleAndChunk Read(Problem problem) => new(Specs.ScaleOf(problem), problem.Get(Specs.ChunkSize));
}
