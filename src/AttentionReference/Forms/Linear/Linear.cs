using System.Globalization;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Linear;

/// <summary>
/// Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"), exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   proj [M,K] (performer only)
///   initial_state [N,H,F,V]   initial_normalizer [N,H,F]   (optional; N = B, or sequences with cu_seqlens)
///   →   o [B,T,H,V]   final_state [N,H,F,V]   final_normalizer [N,H,F]
///   F, the feature dimension: K (identity, elu1, relu), 1 + K + K² (taylor2), M (performer).
///
/// Per sequence and head:
///   S_t = S_{t−1} + φ(k_t) v_tᵀ                 S_{−1} = initial_state (0 if absent)
///   z_t = z_{t−1} + φ(k_t)                      z_{−1} = initial_normalizer (0 if absent)
///   o_t = scale · S_tᵀ φ(q_t)                                          normalize = false (default)
///   o_t = scale · S_tᵀ φ(q_t) / (scale · φ(q_t)·z_t + eps)             normalize = true
///   causal = false: every o_t reads S and z after the last step (S_{T−1}, z_{T−1}) instead of S_t, z_t.
///   final_state = S_{T−1}, final_normalizer = z_{T−1}, always written.
///
/// Feature maps φ (feature_map):
///   identity   φ(x) = x
///   elu1       φ(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise        (Katharopoulos et al.)
///   relu       φ(x) = max(x, 0)
///   taylor2    x̃ = x / K^(1/4);  φ(x) = [1, x̃, vec(x̃ x̃ᵀ)/√2], F = 1 + K + K² (vec row-major: entry K·a + b = x̃_a x̃_b)
///              so that φ(q)·φ(k) = 1 + q·k/√K + (q·k)²/(2K), the 2nd-order Taylor expansion of exp(q·k/√K)
///   performer  x̃ = x / K^(1/4);  φ(x)_r = exp(ω_r·x̃ − |x̃|²/2) / √M, ω_r row r of proj [M,K]    (FAVOR+)
///              so that E_ω[φ(q)·φ(k)] = exp(q·k/√K) for ω ~ N(0, I)
///
/// Variants:
///   recurrent  the recurrence above, token by token (the definition); when causal, S is updated and read in one
///              pass per step (Numerics/StateStep.cs).
///   parallel   A_ij = φ(q_i)·φ(k_j) for j ≤ i (every j when not causal);
///              o_i = scale · (S0ᵀ φ(q_i) + Σ_j A_ij v_j), normaliser φ(q_i)·z0 + Σ_j A_ij.
///   chunked    chunks of C steps (any C ≥ 1): the state entering the chunk plus the masked quadratic part inside
///              the chunk, then S and z advance by the chunk's keys. Not causal: S and z over all chunks first, then
///              every chunk reads them.
/// </code>
/// Sources and choices:
/// - scale multiplies φ(q), as fla's fla/ops/linear_attn/naive.py applies scale to the (already feature-mapped) q
///   its kernel receives; the default scale is therefore F^(-1/2), fla's q.shape[-1]^-0.5 of that q.
/// - normalize: fla's fla/ops/linear_attn/utils.py divides the scaled output by scale·φ(q_t)·z_t + 1e-10, with z_t
///   the running sum of keys plus an initial z state (z_init); we do the same, eps defaulting to 1e-10 (Based's
///   layer uses 1e-12 and scale 1: set eps and scale to match it). The normaliser state is its own tensor,
///   initial_normalizer / final_normalizer, so state passing works in both modes.
/// - taylor2 is Based's TaylorExp (HazyResearch/based: [1, x/K^(1/4), vec(x xᵀ)/(√2·√K)]), full vec with
///   F = 1 + K + K². fla's TaylorFeatureMap (fla/modules/feature_map.py) keeps only the upper triangle (diagonal
///   /√2, off-diagonal ×1), F = 1 + K + K(K+1)/2, with the same φ(q)·φ(k): at equal scale o is identical and only
///   the state layout differs (the default scale F^(-1/2) does differ with F: give scale when comparing).
/// - performer follows Choromanski et al. 2021 (Lemma 1, positive random features h(x) = exp(−|x|²/2), 1/√M) with
///   the input scaling K^(-1/4) of the reference code (google-research performer fast_attention and
///   performer-pytorch's softmax_kernel, data_normalizer). Those codes also subtract a running max and add an
///   eps (1e-6, 1e-4) inside φ for float32 stability; we do neither: φ is computed exactly, and overflows only when
///   ω_r·x̃ exceeds ~709.
/// - hedgehog (learned map) is not provided.
/// - Not causal: fla has no non-causal kernel here (flash-bidirectional-linear-attention does); the definition is
///   Katharopoulos et al.'s Eq. 5 with every key, plus the initial state.
/// </summary>
public static class Linear
{
    /// <summary>The recurrence, token by token: the definition.</summary>
    public static LinearResult Recurrent(Tensor q, Tensor k, Tensor v, LinearOptions? options = null) =>
        LinearProblem.Bind(q, k, v, options ?? new LinearOptions()).Run((head, S, z) =>
        {
            var o = new double[head.T][];
            if (head.Causal)
            {
                var ones = new double[head.F]; // no decay: α = 1
                Array.Fill(ones, 1.0);
                for (int t = 0; t < head.T; t++)
                {
                    // S_t = S_{t−1} + φ(k_t) v_tᵀ and its read-out S_tᵀ φ(q_t), in one pass over S; z_t = z_{t−1} + φ(k_t)
                    var numerator = new double[head.V];
                    StateStep.DecayWriteAndRead(new JaggedRows(S, head.V), ones, head.PhiK[t], head.Value[t], head.PhiQ[t], numerator);
                    VectorKernels.AddTo(head.PhiK[t], z);
                    o[t] = head.Finish(numerator, Dot(head.PhiQ[t], z));
                }
            }
            else
            {
                // Every o_t reads the state after the last step.
                for (int t = 0; t < head.T; t++)
                {
                    Accumulate(head, t, S, z);
                }
                for (int t = 0; t < head.T; t++)
                {
                    o[t] = head.Output(head.PhiQ[t], S, z);
                }
            }
            return o;
        });

    /// <summary>The quadratic form: scores φ(q_i)·φ(k_j), masked to j ≤ i when causal.</summary>
    public static LinearResult Parallel(Tensor q, Tensor k, Tensor v, LinearOptions? options = null) =>
        LinearProblem.Bind(q, k, v, options ?? new LinearOptions()).Run((head, S0, z0) =>
        {
            var o = new double[head.T][];
            for (int i = 0; i < head.T; i++)
            {
                // The initial state's part, then Σ_j A_ij v_j over the allowed keys.
                double[] numerator = Transposed(S0, head.PhiQ[i], head.V);
                double denominator = Dot(head.PhiQ[i], z0);
                int last = head.Causal ? i : head.T - 1;
                for (int j = 0; j <= last; j++)
                {
                    double A = Dot(head.PhiQ[i], head.PhiK[j]);
                    for (int c = 0; c < head.V; c++)
                    {
                        numerator[c] += A * head.Value[j][c];
                    }
                    denominator += A;
                }
                o[i] = head.Finish(numerator, denominator);
            }
            for (int j = 0; j < head.T; j++)
            {
                Accumulate(head, j, S0, z0); // final_state and final_normalizer
            }
            return o;
        });

    /// <summary>Chunks of <paramref name="chunkSize"/> steps (any C ≥ 1).</summary>
    public static LinearResult Chunked(Tensor q, Tensor k, Tensor v, int chunkSize, LinearOptions? options = null)
    {
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
        return LinearProblem.Bind(q, k, v, options ?? new LinearOptions()).Run((head, S, z) =>
        {
            var o = new double[head.T][];
            if (!head.Causal)
            {
                // Not causal: S and z over every chunk first, then each chunk reads the final S and z.
                for (int s = 0; s < head.T; s += chunkSize)
                {
                    AdvanceOverChunk(head, s, Math.Min(s + chunkSize, head.T), S, z);
                }
                for (int t = 0; t < head.T; t++)
                {
                    o[t] = head.Output(head.PhiQ[t], S, z);
                }
                return o;
            }
            for (int s = 0; s < head.T; s += chunkSize)
            {
                int e = Math.Min(s + chunkSize, head.T);
                for (int t = s; t < e; t++)
                {
                    // 1. inter-chunk part: the state entering the chunk.
                    double[] numerator = Transposed(S, head.PhiQ[t], head.V);
                    double denominator = Dot(head.PhiQ[t], z);
                    // 2. intra-chunk part: the chunk's keys up to t.
                    for (int j = s; j <= t; j++)
                    {
                        double A = Dot(head.PhiQ[t], head.PhiK[j]);
                        for (int c = 0; c < head.V; c++)
                        {
                            numerator[c] += A * head.Value[j][c];
                        }
                        denominator += A;
                    }
                    o[t] = head.Finish(numerator, denominator);
                }
                // 3. the state handed to the next chunk.
                AdvanceOverChunk(head, s, e, S, z);
            }
            return o;
        });
    }

    /// <summary>φ(x) for one row x [K]; <paramref name="proj"/> [M,K] is performer's ω.</summary>
    public static double[] FeatureMap(LinearFeatureMap map, ReadOnlySpan<double> x, Tensor? proj = null)
    {
        int K = x.Length;
        switch (map)
        {
            case LinearFeatureMap.Identity:
                return x.ToArray();
            case LinearFeatureMap.EluPlusOne:
                {
                    var φ = new double[K];
                    for (int a = 0; a < K; a++)
                    {
                        φ[a] = x[a] > 0 ? x[a] + 1 : Math.Exp(x[a]); // elu(x) + 1, with elu(x) = exp(x) − 1 for x ≤ 0
                    }
                    return φ;
                }
            case LinearFeatureMap.Relu:
                {
                    var φ = new double[K];
                    for (int a = 0; a < K; a++)
                    {
                        φ[a] = Math.Max(x[a], 0);
                    }
                    return φ;
                }
            case LinearFeatureMap.Taylor2:
                {
                    double[] x̃ = Scaled(x);
                    var φ = new double[1 + K + K * K];
                    φ[0] = 1;
                    x̃.CopyTo(φ, 1);
                    for (int a = 0; a < K; a++)
                    {
                        for (int b = 0; b < K; b++)
                        {
                            φ[1 + K + K * a + b] = x̃[a] * x̃[b] / Math.Sqrt(2);
                        }
                    }
                    return φ;
                }
            case LinearFeatureMap.Performer:
                {
                    ArgumentNullException.ThrowIfNull(proj);
                    double[] x̃ = Scaled(x);
                    int M = proj.Dim(0);
                    double halfNorm = Dot(x̃, x̃) / 2;
                    var φ = new double[M];
                    for (int r = 0; r < M; r++)
                    {
                        double ωx = Dot(proj.Data.AsSpan(r * K, K), x̃);
                        φ[r] = Math.Exp(ωx - halfNorm) / Math.Sqrt(M);
                    }
                    return φ;
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(map), map, "unknown feature map");
        }
    }

    /// <summary>The feature dimension F of <paramref name="map"/> for head dimension K (and M random features).</summary>
    public static int FeatureDimension(LinearFeatureMap map, int keyDim, int randomFeatures) => map switch
    {
        LinearFeatureMap.Taylor2 => 1 + keyDim + keyDim * keyDim,
        LinearFeatureMap.Performer => randomFeatures,
        _ => keyDim,
    };

    /// <summary>S ← S + φ(k_t) v_tᵀ, z ← z + φ(k_t).</summary>
    private static void Accumulate(LinearHead head, int t, double[][] S, double[] z)
    {
        for (int a = 0; a < head.F; a++)
        {
            for (int c = 0; c < head.V; c++)
            {
                S[a][c] += head.PhiK[t][a] * head.Value[t][c];
            }
            z[a] += head.PhiK[t][a];
        }
    }

    /// <summary>S and z advanced over the keys of chunk [s, e).</summary>
    private static void AdvanceOverChunk(LinearHead head, int s, int e, double[][] S, double[] z)
    {
        for (int j = s; j < e; j++)
        {
            Accumulate(head, j, S, z);
        }
    }

    /// <summary>Sᵀ x, a row of V values.</summary>
    internal static double[] Transposed(double[][] S, double[] x, int v)
    {
        var result = new double[v];
        for (int a = 0; a < x.Length; a++)
        {
            for (int c = 0; c < v; c++)
            {
                result[c] += x[a] * S[a][c];
            }
        }
        return result;
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

    /// <summary>x / K^(1/4): the input scaling of taylor2 (Based) and performer (FAVOR+).</summary>
    private static double[] Scaled(ReadOnlySpan<double> x)
    {
        double rootRootK = Math.Sqrt(Math.Sqrt(x.Length));
        var x̃ = new double[x.Length];
        for (int a = 0; a < x.Length; a++)
        {
            x̃[a] = x[a] / rootRootK;
        }
        return x̃;
    }
}

/// <summary>The feature map φ of <see cref="Linear"/>.</summary>
public enum LinearFeatureMap
{
    /// <summary>φ(x) = x.</summary>
    Identity,
    /// <summary>φ(x) = elu(x) + 1.</summary>
    EluPlusOne,
    /// <summary>φ(x) = max(x, 0).</summary>
    Relu,
    /// <summary>Based's second-order Taylor map, F = 1 + K + K².</summary>
    Taylor2,
    /// <summary>FAVOR+ positive random features with ω = proj [M,K], F = M.</summary>
    Performer,
}

/// <summary>The options of <see cref="Linear"/>; defaults give causal, unnormalised linear attention with φ = identity.</summary>
public sealed record LinearOptions
{
    /// <summary>The feature map φ.</summary>
    public LinearFeatureMap FeatureMap { get; init; } = LinearFeatureMap.Identity;

    /// <summary>performer's projection ω [M,K]; required for performer, refused otherwise.</summary>
    public Tensor? Proj { get; init; }

    /// <summary>Divide by scale·φ(q_t)·z_t + eps.</summary>
    public bool Normalize { get; init; }

    /// <summary>The constant added to the normaliser (fla: 1e-10).</summary>
    public double Eps { get; init; } = 1e-10;

    /// <summary>Causal (default): o_t reads S_t; otherwise every o_t reads the state after the last step.</summary>
    public bool Causal { get; init; } = true;

    /// <summary>o_t = scale · S_tᵀ φ(q_t); null means F^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>S before the first step, [N,H,F,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>z before the first step, [N,H,F]; null means zeros.</summary>
    public Tensor? InitialNormalizer { get; init; }

    /// <summary>Varlen: int32/int64 [N+1] sequence boundaries along T, with B = 1.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of linear attention: o [B,T,H,V], final_state [N,H,F,V], final_normalizer [N,H,F].</summary>
public sealed record LinearResult(Tensor O, Tensor FinalState, Tensor FinalNormalizer);

/// <summary>One (sequence, head) pair's feature-mapped rows and the output rule.</summary>
internal sealed record LinearHead(double[][] PhiQ, double[][] PhiK, double[][] Value, int F, double Scale, bool Normalize, double Eps, bool Causal)
{
    public int T => Value.Length;
    public int V { get; init; }

    /// <summary>o = scale · Sᵀ φ(q), divided by scale·φ(q)·z + eps when normalised.</summary>
    public double[] Output(double[] φq, double[][] S, double[] z)
    {
        double denominator = 0;
        for (int a = 0; a < F; a++)
        {
            denominator += φq[a] * z[a];
        }
        return Finish(Linear.Transposed(S, φq, V), denominator);
    }

    /// <summary>scale · numerator, over scale · denominator + eps when normalised.</summary>
    public double[] Finish(double[] numerator, double denominator)
    {
        var o = new double[V];
        for (int c = 0; c < V; c++)
        {
            o[c] = Normalize ? Scale * numerator[c] / (Scale * denominator + Eps) : Scale * numerator[c];
        }
        return o;
    }
}

/// <summary>The validated inputs of one linear-attention call and its batch/varlen/head loop.</summary>
internal sealed class LinearProblem
{
    private readonly Tensor _q, _k, _v;
    private readonly LinearOptions _options;
    private readonly IReadOnlyList<SequenceSlice> _slices;
    private readonly int _batch, _time, _heads, _keyDim, _valueDim, _featureDim;
    private readonly double _scale;

    private LinearProblem(Tensor q, Tensor k, Tensor v, LinearOptions options, Dims dims, IReadOnlyList<SequenceSlice> slices)
    {
        (_q, _k, _v, _options, _slices) = (q, k, v, options, slices);
        (_batch, _time, _heads, _keyDim, _valueDim, _featureDim) = (dims["B"], dims["T"], dims["H"], dims["K"], dims["V"], dims["F"]);
        _scale = options.Scale ?? 1 / Math.Sqrt(_featureDim);
    }

    /// <summary>Checks shapes, dtypes and options; every error names the tensor or option at fault.</summary>
    public static LinearProblem Bind(Tensor q, Tensor k, Tensor v, LinearOptions options)
    {
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,V");
        bool performer = options.FeatureMap == LinearFeatureMap.Performer;
        if (performer != options.Proj is not null)
        {
            throw new InputException(performer ? "required by feature_map=performer (shape [M,K])" : "given, but only feature_map=performer uses it", tensor: "proj");
        }
        if (options.Proj is not null)
        {
            dims.Bind("proj", Dims.RequireFloat("proj", options.Proj), "M,K");
        }
        dims.Set("F", Linear.FeatureDimension(options.FeatureMap, dims["K"], performer ? dims["M"] : 0));
        var slices = Sequences.Slices(dims["B"], dims["T"], options.CuSeqlens);
        dims.Set("N", Sequences.StateCount(slices));
        if (options.InitialState is not null)
        {
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", options.InitialState), "N,H,F,V");
        }
        if (options.InitialNormalizer is not null)
        {
            dims.Bind("initial_normalizer", Dims.RequireFloat("initial_normalizer", options.InitialNormalizer), "N,H,F");
        }
        if (!(options.Eps >= 0))
        {
            throw new InputException($"parameter 'eps' must be ≥ 0, found {options.Eps}");
        }
        return new LinearProblem(q, k, v, options, dims, slices);
    }

    /// <summary>
    /// Runs <paramref name="head"/> on every (sequence, head) pair with S [F][V] and z [F] at their initial values; it
    /// returns o's rows and leaves S and z final. One task per pair, so results do not depend on the thread count.
    /// </summary>
    public LinearResult Run(Func<LinearHead, double[][], double[], double[][]> head)
    {
        int F = _featureDim, V = _valueDim;
        var result = SequenceHeads.Run(_slices, _batch, _time, _heads, V,
            [new StateTensor(_options.InitialState, F, V), new StateTensor(_options.InitialNormalizer, F)], pair =>
            {
                double[][] S = pair.StateRows(0, F);
                var rows = new LinearHead(Features(_q, pair), Features(_k, pair), PerHead.Rows(_v, pair.Sequence, pair.H), F, _scale,
                    _options.Normalize, _options.Eps, _options.Causal) { V = V };
                pair.WriteO(head(rows, S, pair.State(1)));
                pair.SetStateRows(0, S);
            });
        return new LinearResult(result.O, result.FinalStates[0], result.FinalStates[1]);
    }

    private double[][] Features(Tensor x, SequenceHead pair) =>
        PerHead.Rows(x, pair.Sequence, pair.H).Select(row => Linear.FeatureMap(_options.FeatureMap, row, _options.Proj)).ToArray();
}
