using AttentionReference.Tensors;

namespace AttentionReference.Forms.GatedLinear;

/// <summary>The command-line and golden wiring of <see cref="Mlstm"/>: names, shapes, parameters.</summary>
internal sealed class MlstmForm : IForm
{
    public string Name => "mlstm";
    public string Family => "gated linear";
    public string SourceFile => "Mlstm.cs";
    public IReadOnlyList<string> Variants { get; } = ["recurrent", "parallel", "chunked"];

    public IReadOnlyList<TensorSpec> Inputs { get; } =
    [
        new("q", "B,T,H,K", "queries"),
        new("k", "B,T,H,K", "keys"),
        new("v", "B,T,H,V", "values"),
        new("i", "B,T,H", "input gate pre-activation (gate exp(i))"),
        new("f", "B,T,H", "forget gate pre-activation (gate sigmoid(f), or exp(f) with forget_gate=exp)"),
        new("initial_state", "N,H,K,V", "stabilised memory C̃ before the first step (zeros if absent)", Optional: true, Aliases: ["c_initial"]),
        new("initial_normalizer", "N,H,K", "stabilised normaliser ñ before the first step (zeros if absent)", Optional: true, Aliases: ["n_initial"]),
        new("initial_max", "N,H", "stabiliser m before the first step (zero if absent)", Optional: true, Aliases: ["m_initial"]),
        new("cu_seqlens", "N+1", "packed sequence boundaries (B = 1)", Optional: true, HoldsIndices: true),
    ];

    public IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,H,V", "output (h in xLSTM)"),
        new("final_state", "N,H,K,V", "stabilised memory C̃ = C·exp(−m) after the last step"),
        new("final_normalizer", "N,H,K", "stabilised normaliser ñ = n·exp(−m) after the last step"),
        new("final_max", "N,H", "stabiliser m after the last step"),
    ];

    public IReadOnlyList<ParameterSpec> Parameters { get; } =
    [
        new("scale", "K^-0.5", "query scale"),
        new("eps", "0", "added to the stabilised denominator (mlstm_kernels: 1e-6); 0 = the paper's definition"),
        new("forget_gate", "sigmoid", "sigmoid (log f = logsigmoid(f)) or exp (log f = f)"),
        new("chunk_size", "16", "chunk length C ≥ 1 of the chunked variant (need not divide T)"),
    ];

    public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        var options = new MlstmOptions
        {
            Scale = parameters.GetOptionalDouble("scale"),
            Eps = parameters.GetDouble("eps", 0),
            ForgetGate = parameters.GetChoice("forget_gate", "sigmoid", "sigmoid", "exp") == "exp"
                ? MlstmForgetGate.Exponential
                : MlstmForgetGate.Sigmoid,
            InitialState = inputs.GetValueOrDefault("initial_state"),
            InitialNormalizer = inputs.GetValueOrDefault("initial_normalizer"),
            InitialMax = inputs.GetValueOrDefault("initial_max"),
            CuSeqlens = inputs.GetValueOrDefault("cu_seqlens"),
        };
        var (q, k, v, i, f) = (inputs["q"], inputs["k"], inputs["v"], inputs["i"], inputs["f"]);
        MlstmResult result = variant switch
        {
            "recurrent" => Mlstm.Recurrent(q, k, v, i, f, options),
            "parallel" => Mlstm.Parallel(q, k, v, i, f, options),
            "chunked" => Mlstm.Chunked(q, k, v, i, f, parameters.GetInt("chunk_size", 16), options),
            _ => throw new InputException($"unknown variant '{variant}' of mlstm"),
        };
        return new Dictionary<string, Tensor>
        {
            ["o"] = result.O,
            ["final_state"] = result.FinalState,
            ["final_normalizer"] = result.FinalNormalizer,
            ["final_max"] = result.FinalMax,
        };
    }
}
