using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Linear;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// Based (Arora et al. 2024, "Simple linear attention language models balance the recall-throughput tradeoff",
/// arXiv 2402.18668): Taylor linear attention plus exact sliding-window softmax on the same q, k, v, summed. In double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]
///   initial_state [N,H,F,V]   initial_normalizer [N,H,F]   (optional, the linear branch's; F = 1 + K + K²)
///   cu_seqlens [N+1] optional (B = 1)
///   →   o [B,T,H,V]   final_state [N,H,F,V]   final_normalizer [N,H,F]
///
/// Per sequence and head:
///   φ = taylor2: φ(x) = [1, x̃, vec(x̃ x̃ᵀ)/√2], x̃ = x / K^(1/4),  so φ(q)·φ(k) = 1 + q·k/√K + (q·k)²/(2K)
///   S_t = S_{t−1} + φ(k_t) v_tᵀ,   z_t = z_{t−1} + φ(k_t)                 (linear's recurrence)
///   o_lin_t = a · S_tᵀ φ(q_t) / (a · φ(q_t)·z_t + eps)                      a = linear_scale (1), eps (1e-12)
///   o_win_t = Σ_{j ∈ W_t} exp(s q_t·k_j − m_t) v_j / Σ_{j ∈ W_t} exp(s q_t·k_j − m_t)
///             W_t = { j : t − window &lt; j ≤ t } (window keys including t itself), s = scale (K^(-1/2))
///   o_t = o_lin_t + o_win_t
///   final_state = S_{T−1}, final_normalizer = z_{T−1}.
///
/// Variants:
///   recurrent  token by token: the state S, z and the last `window` keys and values (the definition).
///   parallel   linear's parallel form (taylor2, normalised, scale a, eps) + softmax's naive form, causal, with
///              window_left = window − 1; each form through its contract.
///   chunked    linear's chunked form with chunks of C + softmax's tiled form with C x C blocks, likewise.
/// </code>
/// Sources and choices:
/// - The two branches are Based's two mixers (HazyResearch/based, based/models/mixers/linear_attention.py: the
///   TaylorExp feature map, causal sums normalised with eps = 1e-12 and no extra scale; slide_attention.py: exact
///   softmax over a sliding window, window 64 in the paper's models). In Based they are separate layers of the stack
///   (with gated convolutions), each with its own projections; a single layer that sums them, as FORMS.md asks, is
///   our reading. The sum is unweighted and each branch is normalised on its own (no joint softmax normaliser).
/// - Based's feature map works on a projected feature dimension (16 in the paper) rather than the head dimension;
///   here K is whatever q and k carry. The taylor2 map and its layout are linear's (Linear/FeatureMaps.cs).
/// - The window branch keeps no state across calls (it would need the last window − 1 keys, a KV cache):
///   initial_state and initial_normalizer seed the linear branch only.
/// </summary>
public sealed partial class Based : Form
{
    /// <summary>window: the keys of the softmax window.</summary>
    public static Parameter<int> Window { get; } = ParameterSpec.WholeNumber("window", 64,
        "keys of the softmax window, the query's own step included", min: 1);

    /// <summary>scale: the window branch's score scale s.</summary>
    public static Parameter<double?> Scale { get; } = ParameterSpec.OptionalReal("scale", "K^-0.5", "the window branch's score scale");

    /// <summary>linear_scale: the linear branch's scale a.</summary>
    public static Parameter<double> LinearScale { get; } = ParameterSpec.Real("linear_scale", 1, "the linear branch's scale a");

    /// <summary>eps: the linear branch's normaliser eps.</summary>
    public static Parameter<double> Eps { get; } = ParameterSpec.Real("eps", 1e-12, "the linear branch's normaliser eps", min: 0);

    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("based", "hybrid", "Based.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs =
        [
            Specs.Q,
            Specs.K,
            Specs.V,
            new("initial_state", "N,H,F,V", "the linear branch's S, F = 1 + K + K² (zeros if absent)", Optional: true),
            new("initial_normalizer", "N,H,F", "the linear branch's z (zeros if absent)", Optional: true),
            Specs.CuSeqlens,
        ],
        Outputs =
        [
            new("o", "B,T,H,V", "output: linear branch + window branch"),
            new("final_state", "N,H,F,V", "the linear branch's S after each sequence's last step"),
            new("final_normalizer", "N,H,F", "the linear branch's z after each sequence's last step"),
        ],
        Parameters = [Window, Scale, LinearScale, Eps, Specs.ChunkSize],
        Derived = [new("F", (dims, _) => FeatureMaps.Dimension(LinearFeatureMap.Taylor2, dims["K"], 0))],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        BasedOptions options = BasedOptions.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, options)),
            "parallel" => Branches(problem, options, "parallel", "naive"),
            "chunked" => Branches(problem, options, "chunked", "tiled"),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>Token by token: the Taylor state and a window of keys; the definition.</summary>
    public static void Recurrent(Head head, BasedOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        var window = new int[Math.Min(options.Window, head.T)]; // the keys j of W_t
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o"), S = head.State();
        Span<double> z = head.State("normalizer")[0];
        double[] φq = new double[S.Count], φk = new double[S.Count];
        for (int t = 0; t < head.T; t++)
        {
            // Linear branch: S_t = S_{t−1} + φ(k_t) v_tᵀ,  z_t = z_{t−1} + φ(k_t),  o_lin_t = a · S_tᵀ φ(q_t) / (a · φ(q_t)·z_t + eps)
            FeatureMaps.Apply(LinearFeatureMap.Taylor2, k[t], φk);
            FeatureMaps.Apply(LinearFeatureMap.Taylor2, q[t], φq);
            for (int a = 0; a < S.Count; a++)
            {
                VectorKernels.Axpy(φk[a], v[t], S[a]);
                VectorKernels.Axpy(φq[a], S[a], o[t]);
            }
            VectorKernels.AddTo(φk, z);
            double denominator = options.LinearScale * VectorKernels.Dot(φq, z) + options.Eps;
            for (int c = 0; c < o.Width; c++)
            {
                o[t][c] = options.LinearScale * o[t][c] / denominator;
            }
            // Window branch, added: softmax over W_t = { j : t − window < j ≤ t }.
            int first = Math.Max(0, t - options.Window + 1);
            for (int j = first; j <= t; j++)
            {
                window[j - first] = j;
            }
            SoftmaxRow.Add(q[t], k, v, options.Scale, window.AsSpan(0, t - first + 1), o[t]);
        }
    }

    /// <summary>linear's <paramref name="linearVariant"/> plus softmax's <paramref name="softmaxVariant"/>, each through its contract.</summary>
    private static Dictionary<string, Tensor> Branches(Problem problem, BasedOptions options, string linearVariant, string softmaxVariant)
    {
        static string Text(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        var qkv = new Dictionary<string, Tensor> { ["q"] = problem.Input("q"), ["k"] = problem.Input("k"), ["v"] = problem.Input("v") };
        string chunk = Math.Min(options.ChunkSize, Math.Max(problem["T"], 1)).ToString(CultureInfo.InvariantCulture);

        var linearInputs = new Dictionary<string, Tensor>(qkv);
        foreach (string name in new[] { "initial_state", "initial_normalizer", "cu_seqlens" })
        {
            if (problem.Optional(name) is { } tensor)
            {
                linearInputs[name] = tensor;
            }
        }
        var linear = FormCatalog.Find("linear").Run(linearVariant, linearInputs, new FormParameters(new Dictionary<string, string>
        {
            ["feature_map"] = "taylor2", ["normalize"] = "true", ["eps"] = Text(options.Eps), ["scale"] = Text(options.LinearScale), ["chunk_size"] = chunk,
        }));

        var windowInputs = new Dictionary<string, Tensor>(qkv);
        if (problem.Optional("cu_seqlens") is { } cu)
        {
            (windowInputs["cu_seqlens_q"], windowInputs["cu_seqlens_k"]) = (cu, cu);
        }
        var windowParameters = new Dictionary<string, string>
        {
            ["causal"] = "true", ["window_left"] = (options.Window - 1).ToString(CultureInfo.InvariantCulture), ["scale"] = Text(options.Scale),
        };
        if (softmaxVariant == "tiled")
        {
            (windowParameters["block_q"], windowParameters["block_k"]) = (chunk, chunk);
        }
        var window = FormCatalog.Find("softmax").Run(softmaxVariant, windowInputs, new FormParameters(windowParameters));

        Tensor o = linear["o"].Clone();
        VectorKernels.AddTo(window["o"].Data, o.Data);
        return new Dictionary<string, Tensor> { ["o"] = o, ["final_state"] = linear["final_state"], ["final_normalizer"] = linear["final_normalizer"] };
    }
}

/// <summary>The options of a based call, read once from the bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Window">Keys of the softmax window, the query's own step included (Based: 64).</param>
/// <param name="Scale">The window branch's score scale s (K^-0.5 unless given).</param>
/// <param name="LinearScale">The linear branch's scale a (Based: 1).</param>
/// <param name="Eps">The linear branch's normaliser eps (Based: 1e-12).</param>
/// <param name="ChunkSize">The chunked variant's C (linear's chunks, softmax's blocks).</param>
public sealed record BasedOptions(int Window, double Scale, double LinearScale, double Eps, int ChunkSize)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static BasedOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(problem.Get(Based.Window), problem.Get(Based.Scale) ?? 1 / Math.Sqrt(problem["K"]), problem.Get(Based.LinearScale),
            problem.Get(Based.Eps), problem.Get(Specs.ChunkSize));
    }
}
