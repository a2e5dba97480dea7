using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.Linear;
using AttentionReference.Numerics;
using AttentionReference.Tensors;
using LinearAttention = AttentionReference.Forms.Linear.Linear;
using SoftmaxAttention = AttentionReference.Forms.Softmax.Softmax;

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
///   parallel   linear's parallel form (taylor2, normalised) + softmax's naive form with window_left = window − 1.
///   chunked    linear's chunked form with chunks of C + softmax's tiled form with C x C blocks.
/// </code>
/// Sources and choices:
/// - The two branches are Based's two mixers (HazyResearch/based, based/models/mixers/linear_attention.py: the
///   TaylorExp feature map, causal sums normalised with eps = 1e-12 and no extra scale; slide_attention.py: exact
///   softmax over a sliding window, window 64 in the paper's models). In Based they are separate layers of the stack
///   (with gated convolutions), each with its own projections; a single layer that sums them, as FORMS.md asks, is
///   our reading. The sum is unweighted and each branch is normalised on its own (no joint softmax normaliser).
/// - Based's feature map works on a projected feature dimension (16 in the paper) rather than the head dimension;
///   here K is whatever q and k carry. The taylor2 map and its layout are linear's (Linear.cs).
/// - The window branch keeps no state across calls (it would need the last window − 1 keys, a KV cache):
///   initial_state and initial_normalizer seed the linear branch only.
/// </summary>
public static class Based
{
    /// <summary>Token by token: the Taylor state and a window of keys; the definition.</summary>
    public static LinearResult Recurrent(Tensor q, Tensor k, Tensor v, BasedOptions? options = null)
    {
        options ??= new BasedOptions();
        var parts = Bind(q, k, v, options);
        var o = Tensor.Zeros(q.Dim(0), q.Dim(1), q.Dim(2), v.Dim(3));
        int H = q.Dim(2), K = q.Dim(3), V = v.Dim(3), F = FeatureMaps.Dimension(LinearFeatureMap.Taylor2, K, 0);
        var finalState = Tensor.Zeros(parts.Count, H, F, V);
        var finalNormalizer = Tensor.Zeros(parts.Count, H, F);
        double s = options.Scale ?? 1 / Math.Sqrt(K);
        System.Threading.Tasks.Parallel.For(0, parts.Count * H, pair =>
        {
            SequenceSlice slice = parts[pair / H];
            int h = pair % H, n = slice.StateIndex;
            double[][] Q = PerHead.Rows(q, slice, h), Kr = PerHead.Rows(k, slice, h), Vr = PerHead.Rows(v, slice, h);
            double[][] S = PerHead.InitialState(options.InitialState, n, h, F, V);
            double[] z = options.InitialNormalizer is null ? new double[F] : options.InitialNormalizer.Data.AsSpan((n * H + h) * F, F).ToArray();
            var rows = new double[slice.Length][];
            var ones = new double[F]; // the linear branch does not decay: α = 1
            Array.Fill(ones, 1.0);
            for (int t = 0; t < slice.Length; t++)
            {
                // Linear branch: S, z advance by φ(k_t); o_lin = a Sᵀφ(q) / (a φ(q)·z + eps).
                double[] φk = FeatureMaps.Of(LinearFeatureMap.Taylor2, Kr[t]);
                double[] φq = FeatureMaps.Of(LinearFeatureMap.Taylor2, Q[t]);
                // S_t = S_{t−1} + φ(k_t) v_tᵀ and Sᵀφ(q_t) in one pass over S (Numerics/StateStep.cs); z_t = z_{t−1} + φ(k_t)
                var o_t = new double[V];
                StateStep.DecayWriteAndRead(new JaggedRows(S, V), ones, φk, Vr[t], φq, o_t);
                VectorKernels.AddTo(φk, z);
                double denominator = options.LinearScale * Dot(φq, z) + options.Eps;
                for (int c = 0; c < V; c++)
                {
                    o_t[c] = options.LinearScale * o_t[c] / denominator;
                }
                // Window branch: exact softmax over keys t − window < j ≤ t, shifted by the row's max.
                int first = Math.Max(0, t - options.Window + 1);
                var score = new double[t - first + 1];
                double m = double.NegativeInfinity;
                for (int j = first; j <= t; j++)
                {
                    score[j - first] = s * Dot(Q[t], Kr[j]);
                    m = Math.Max(m, score[j - first]);
                }
                double l = 0;
                var acc = new double[V];
                for (int j = first; j <= t; j++)
                {
                    double p = Math.Exp(score[j - first] - m);
                    l += p;
                    for (int c = 0; c < V; c++)
                    {
                        acc[c] += p * Vr[j][c];
                    }
                }
                for (int c = 0; c < V; c++)
                {
                    o_t[c] += acc[c] / l;
                }
                rows[t] = o_t;
            }
            PerHead.WriteRows(o, rows, slice, h);
            PerHead.WriteState(finalState, S, n, h);
            z.CopyTo(finalNormalizer.Data.AsSpan((n * H + h) * F, F));
        });
        return new LinearResult(o, finalState, finalNormalizer);
    }

    /// <summary>linear's parallel form plus softmax's naive form.</summary>
    public static LinearResult Parallel(Tensor q, Tensor k, Tensor v, BasedOptions? options = null)
    {
        options ??= new BasedOptions();
        Bind(q, k, v, options);
        return Sum(LinearBranch("parallel", q, k, v, options, 64), WindowPart(q, k, v, options, "naive", 64));
    }

    /// <summary>linear's chunked form plus softmax's tiled form, chunks and blocks of <paramref name="chunkSize"/>.</summary>
    public static LinearResult Chunked(Tensor q, Tensor k, Tensor v, int chunkSize, BasedOptions? options = null)
    {
        options ??= new BasedOptions();
        Bind(q, k, v, options);
        return Sum(LinearBranch("chunked", q, k, v, options, chunkSize), WindowPart(q, k, v, options, "tiled", chunkSize));
    }

    /// <summary>The linear branch: linear's <paramref name="variant"/> through its contract, taylor2, normalised, scale a, eps.</summary>
    private static LinearResult LinearBranch(string variant, Tensor q, Tensor k, Tensor v, BasedOptions options, int chunkSize)
    {
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        foreach (var (name, tensor) in new[] { ("initial_state", options.InitialState), ("initial_normalizer", options.InitialNormalizer), ("cu_seqlens", options.CuSeqlens) })
        {
            if (tensor is not null)
            {
                inputs[name] = tensor;
            }
        }
        var parameters = new FormParameters(new Dictionary<string, string>
        {
            ["feature_map"] = "taylor2",
            ["normalize"] = "true",
            ["eps"] = options.Eps.ToString("R", CultureInfo.InvariantCulture),
            ["scale"] = options.LinearScale.ToString("R", CultureInfo.InvariantCulture),
            ["chunk_size"] = chunkSize.ToString(CultureInfo.InvariantCulture),
        });
        var outputs = new LinearAttention().Run(variant, inputs, parameters);
        return new LinearResult(outputs["o"], outputs["final_state"], outputs["final_normalizer"]);
    }

    /// <summary>
    /// The window branch: causal softmax over the last <c>window</c> keys, as softmax's <paramref name="variant"/> (blocks
    /// of <paramref name="block"/> where tiled), called through softmax's contract.
    /// </summary>
    public static Tensor WindowPart(Tensor q, Tensor k, Tensor v, BasedOptions options, string variant, int block)
    {
        ArgumentNullException.ThrowIfNull(options);
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        if (options.CuSeqlens is { } cu)
        {
            (inputs["cu_seqlens_q"], inputs["cu_seqlens_k"]) = (cu, cu);
        }
        var parameters = new Dictionary<string, string>
        {
            ["causal"] = "true",
            ["window_left"] = (options.Window - 1).ToString(CultureInfo.InvariantCulture),
            ["block_q"] = block.ToString(CultureInfo.InvariantCulture),
            ["block_k"] = block.ToString(CultureInfo.InvariantCulture),
        };
        if (options.Scale is { } scale)
        {
            parameters["scale"] = scale.ToString("R", CultureInfo.InvariantCulture);
        }
        return new SoftmaxAttention().Run(variant, inputs, new FormParameters(parameters))["o"];
    }

    private static LinearResult Sum(LinearResult linear, Tensor window)
    {
        var o = linear.O.Clone();
        for (int i = 0; i < o.Length; i++)
        {
            o.Data[i] += window.Data[i];
        }
        return new LinearResult(o, linear.FinalState, linear.FinalNormalizer);
    }

    /// <summary>Checks shapes, dtypes and options (the OpenCL host checks through this too); the sequences of the call.</summary>
    internal static IReadOnlyList<SequenceSlice> Bind(Tensor q, Tensor k, Tensor v, BasedOptions options)
    {
        if (options.Window < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'window' must be ≥ 1, found {options.Window}"));
        }
        if (!(options.Eps >= 0))
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'eps' must be ≥ 0, found {options.Eps}"));
        }
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        dims.Set("F", FeatureMaps.Dimension(LinearFeatureMap.Taylor2, dims["K"], 0));
        var slices = Sequences.BindNormalisedState(dims, "F", options.InitialState, options.InitialNormalizer, options.CuSeqlens);
        return slices;
    }

    private static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        double sum = 0;
        for (int a = 0; a < x.Length; a++)
        {
            sum += x[a] * y[a];
        }
        return sum;
    }
}

/// <summary>The options of <see cref="Based"/>; defaults are Based's: window 64, linear scale 1, eps 1e-12.</summary>
public sealed record BasedOptions
{
    /// <summary>Keys of the softmax window, the query's own step included (≥ 1).</summary>
    public int Window { get; init; } = 64;

    /// <summary>The window branch's score scale; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>The linear branch's scale a (Based: 1).</summary>
    public double LinearScale { get; init; } = 1;

    /// <summary>The linear branch's normaliser eps (Based: 1e-12).</summary>
    public double Eps { get; init; } = 1e-12;

    /// <summary>The linear branch's S before the first step, [N,H,F,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>The linear branch's z before the first step, [N,H,F]; null means zeros.</summary>
    public Tensor? InitialNormalizer { get; init; }

    /// <summary>Varlen: int32/int64 [N+1] sequence boundaries along T, with B = 1.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of based: o [B,T,H,V] and the linear branch's final_state [N,H,F,V] and final_normalizer [N,H,F].</summary>
public sealed record LinearResult(Tensor O, Tensor FinalState, Tensor FinalNormalizer);
