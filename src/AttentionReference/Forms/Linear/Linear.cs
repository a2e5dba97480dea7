using System.Globalization;
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
///
/// Arithmetic (LinearProblem.cs holds the per-head plumbing): rows of scores and Σ_j A_ij v_j, the chunk's state
/// read-out Φq S and update S += Φᵀ V are products through Numerics/DenseMatrix.cs; each denominator is computed as its
/// numerator is, with a column of ones for the values. taylor2's scores use its identity φ(q)·φ(k) = 1 + x + x²/2,
/// x = q·k/√K: O(K) per pair instead of the O(K²) dot of its features (the state, which needs the features, still
/// uses them).
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
        LinearProblem.Bind(q, k, v, options ?? new LinearOptions()).Run((head, S, z, o) =>
        {
            double[] φq = new double[head.F], φk = new double[head.F];
            if (head.Causal)
            {
                var ones = new double[head.F]; // no decay: α = 1
                Array.Fill(ones, 1.0);
                for (int t = 0; t < head.T; t++)
                {
                    // S_t = S_{t−1} + φ(k_t) v_tᵀ and its read-out S_tᵀ φ(q_t), in one pass over S; z_t = z_{t−1} + φ(k_t)
                    head.KeyFeatures(t, 1, φk);
                    head.QueryFeatures(t, 1, φq);
                    Span<double> numerator = o[t];
                    StateStep.DecayWriteAndRead(new FlatRows(S, head.F, head.V), ones, φk, head.Value(t), φq, numerator);
                    VectorKernels.AddTo(φk, z);
                    head.Finish(numerator, Dot(φq, z), numerator);
                }
                return;
            }
            // Not causal: every o_t reads the state after the last step.
            for (int t = 0; t < head.T; t++)
            {
                head.KeyFeatures(t, 1, φk);
                Accumulate(head, t, φk, S, z);
            }
            for (int t = 0; t < head.T; t++)
            {
                head.QueryFeatures(t, 1, φq);
                Output(head, φq, S, z, o[t]);
            }
        });

    /// <summary>The quadratic form: scores φ(q_i)·φ(k_j), masked to j ≤ i when causal.</summary>
    public static LinearResult Parallel(Tensor q, Tensor k, Tensor v, LinearOptions? options = null) =>
        LinearProblem.Bind(q, k, v, options ?? new LinearOptions()).Run((head, S0, z0, o) =>
        {
            var A = new double[head.T];
            var φq = new double[head.F];
            var denominator = new double[1];
            for (int i = 0; i < head.T; i++)
            {
                // The initial state's part, then Σ_j A_ij v_j over the allowed keys; the denominator alike, with a
                // column of ones for the values (the same arithmetic as every value column).
                Span<double> numerator = o[i];
                denominator[0] = 0;
                if (head.HasInitialState)
                {
                    head.QueryFeatures(i, 1, φq);
                    DenseMatrix.AddWeightedRows(φq, S0, numerator);
                    DenseMatrix.AddWeightedRows(φq, z0, denominator);
                }
                int keys = head.Causal ? i + 1 : head.T;
                Span<double> Ai = A.AsSpan(0, keys);
                head.Scores(i, 0, Ai);
                DenseMatrix.AddWeightedRows(Ai, head.Values(0, keys), numerator);
                DenseMatrix.AddWeightedRows(Ai, head.Ones(keys), denominator);
                head.Finish(numerator, denominator[0], numerator);
            }
            // final_state and final_normalizer: the chunked form's state update, one chunk after another.
            for (int s = 0; s < head.T; s += StateChunk)
            {
                AdvanceState(head, s, Math.Min(s + StateChunk, head.T), S0, z0);
            }
        });

    /// <summary>Chunks of <paramref name="chunkSize"/> steps (any C ≥ 1).</summary>
    public static LinearResult Chunked(Tensor q, Tensor k, Tensor v, int chunkSize, LinearOptions? options = null)
    {
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
        return LinearProblem.Bind(q, k, v, options ?? new LinearOptions()).Run((head, S, z, o) =>
        {
            int C = Math.Min(chunkSize, Math.Max(head.T, 1));
            var Φq = new double[C * head.F];       // φ(q_t) of the chunk's queries, one row each
            var numerators = new double[C * head.V]; // what they read, and the chunk's own keys add
            var denominators = new double[C];
            var A = new double[C];
            if (!head.Causal)
            {
                // Not causal: S and z over every chunk first, then each chunk reads the final S and z.
                for (int s = 0; s < head.T; s += C)
                {
                    AdvanceState(head, s, Math.Min(s + C, head.T), S, z);
                }
                for (int t = 0; t < head.T; t++)
                {
                    head.QueryFeatures(t, 1, Φq.AsSpan(0, head.F));
                    Output(head, Φq.AsSpan(0, head.F), S, z, o[t]);
                }
                return;
            }
            for (int s = 0; s < head.T; s += C)
            {
                int e = Math.Min(s + C, head.T), n = e - s;
                // 1. inter-chunk part: the state entering the chunk, read by all the chunk's queries at once:
                //    numerators Φq S, denominators Φq z.
                head.QueryFeatures(s, n, Φq.AsSpan(0, n * head.F));
                Array.Clear(numerators);
                Array.Clear(denominators);
                DenseMatrix.AddProduct(Φq.AsSpan(0, n * head.F), n, S, head.F, numerators.AsSpan(0, n * head.V));
                DenseMatrix.AddProduct(Φq.AsSpan(0, n * head.F), n, z, head.F, denominators.AsSpan(0, n));
                for (int t = s; t < e; t++)
                {
                    // 2. intra-chunk part: the chunk's keys up to t.
                    Span<double> numerator = numerators.AsSpan((t - s) * head.V, head.V), At = A.AsSpan(0, t - s + 1);
                    head.Scores(t, s, At);
                    DenseMatrix.AddWeightedRows(At, head.Values(s, t - s + 1), numerator);
                    DenseMatrix.AddWeightedRows(At, head.Ones(t - s + 1), denominators.AsSpan(t - s, 1));
                    head.Finish(numerator, denominators[t - s], o[t]);
                }
                // 3. the state handed to the next chunk.
                AdvanceState(head, s, e, S, z);
            }
        });
    }

    // The chunk length of the parallel form's state update: long enough for the key-feature block to feed a matrix
    // product, short enough to keep it (F x 64) small.
    private const int StateChunk = 64;

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

    /// <summary>S ← S + φ(k_t) v_tᵀ, z ← z + φ(k_t), row by row.</summary>
    private static void Accumulate(LinearHead head, int t, ReadOnlySpan<double> φk, double[] S, double[] z)
    {
        for (int a = 0; a < head.F; a++)
        {
            VectorKernels.Axpy(φk[a], head.Value(t), S.AsSpan(a * head.V, head.V));
        }
        VectorKernels.AddTo(φk, z);
    }

    /// <summary>
    /// S and z advanced over the keys of chunk [s, e): S += Φᵀ V and z += Φᵀ 1 as matrix products, Φ [n x F] the
    /// chunk's key features, one row per key (each S[a, c] still sums its keys in order).
    /// </summary>
    private static void AdvanceState(LinearHead head, int s, int e, double[] S, double[] z)
    {
        int n = e - s, F = head.F;
        var Φk = new double[n * F];
        head.KeyFeatures(s, n, Φk);
        DenseMatrix.AddTransposedProduct(Φk, n, head.Values(s, n), S);
        DenseMatrix.AddTransposedProduct(Φk, n, head.Ones(n), z);
    }

    /// <summary>o = scale · Sᵀ φ(q), divided by scale·φ(q)·z + eps when normalised.</summary>
    private static void Output(LinearHead head, ReadOnlySpan<double> φq, double[] S, double[] z, Span<double> o)
    {
        Span<double> numerator = o; // zeros on entry
        Span<double> denominator = stackalloc double[1];
        DenseMatrix.AddWeightedRows(φq, S, numerator);
        DenseMatrix.AddWeightedRows(φq, z, denominator);
        head.Finish(numerator, denominator[0], o);
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
    internal static double[] Scaled(ReadOnlySpan<double> x)
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
