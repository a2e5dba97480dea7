using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>The command-line and golden wiring of <see cref="DeltaRule"/>: names, shapes, parameters.</summary>
internal sealed class DeltaRuleForm : IForm
{
    public string Name => "delta_rule";
    public string Family => "delta rule";
    public string SourceFile => "DeltaRule.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "chunked", "parallel"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        DeltaFormSpecs.Q, DeltaFormSpecs.K, DeltaFormSpecs.V,
        DeltaFormSpecs.Beta(perValue: true),
        DeltaFormSpecs.InitialState, DeltaFormSpecs.CuSeqlens,
    ];

    public IReadOnlyList<TensorSpec> Outputs => DeltaFormSpecs.Outputs;

    public IReadOnlyList<ParameterSpec> Parameters => DeltaFormSpecs.Parameters;

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var (q, k, v, beta) = (inputs["q"], inputs["k"], inputs["v"], inputs["beta"]);
        DeltaOptions options = DeltaFormSpecs.Options(inputs, parameters);
        DeltaResult result = variant switch
        {
            "recurrent" => DeltaRule.Recurrent(q, k, v, beta, options),
            "chunked" => DeltaRule.Chunked(q, k, v, beta, DeltaFormSpecs.ChunkSize(parameters), options),
            "parallel" => DeltaRule.Parallel(q, k, v, beta, options),
            _ => throw DeltaFormSpecs.UnknownVariant(Name, variant),
        };
        return DeltaFormSpecs.Results(result);
    }
}

/// <summary>The tensor and parameter specs the delta-rule forms share.</summary>
internal static class DeltaFormSpecs
{
    public static TensorSpec Q { get; } = new("q", "B,T,H,K", "queries");
    public static TensorSpec K { get; } = new("k", "B,T,H,K", "keys");
    public static TensorSpec V { get; } = new("v", "B,T,HV,V", "values (HV a multiple of H: GVA)");

    public static TensorSpec Beta(bool perValue) => new("beta", "B,T,HV",
        perValue ? "write strength β, headwise [B,T,HV] or per value [B,T,HV,V]" : "write strength β, headwise [B,T,HV]");

    public static TensorSpec InitialState { get; } =
        new("initial_state", "N,HV,K,V", "state each sequence starts from (zeros if absent)", Optional: true);

    public static TensorSpec CuSeqlens { get; } =
        new("cu_seqlens", "N+1", "varlen sequence offsets (B = 1)", Optional: true, HoldsIndices: true);

    public static IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,HV,V", "output"),
        new("final_state", "N,HV,K,V", "state after each sequence's last step"),
    ];

    public static IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "output scale"),
        new("use_qk_l2norm_in_kernel", "false", "L2-normalise q and k (x / sqrt(sum x^2 + 1e-6)) before use, as fla"),
        new("chunk_size", "64", "chunk size C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public static DeltaOptions Options(IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) => new()
    {
        Scale = parameters.GetOptionalDouble("scale"),
        UseQkL2Norm = parameters.GetBool("use_qk_l2norm_in_kernel", false),
        InitialState = inputs.GetValueOrDefault("initial_state"),
        CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
    };

    public static int ChunkSize(FormParameters parameters) => parameters.GetInt("chunk_size", 64);

    public static InputException UnknownVariant(string form, string variant) =>
        new(string.Create(CultureInfo.InvariantCulture, $"unknown variant '{variant}' of {form}"));

    public static Dictionary<string, Tensor> Results(DeltaResult result) =>
        new() { ["o"] = result.O, ["final_state"] = result.FinalState };
}
