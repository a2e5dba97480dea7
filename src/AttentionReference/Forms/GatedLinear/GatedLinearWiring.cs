using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>What the wirings of the forms not yet bound through their contract share (transitional).</summary>
internal static class GatedLinearWiring
{
    public static IReadOnlyList<string> Variants { get; } = ["recurrent", "parallel", "chunked"];

    public static TensorSpec CuSeqlens { get; } = new("cu_seqlens", "N+1", "varlen sequence boundaries along T (B = 1)", Optional: true, HoldsIndices: true);

    /// <summary>The chunk size of the chunked variant.</summary>
    public static int ChunkSize(FormParameters parameters) => parameters.GetInt("chunk_size", 64);

    /// <summary>The error for a variant the form does not have.</summary>
    public static InputException UnknownVariant(string form, string variant) =>
        new(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of {form}"));
}
