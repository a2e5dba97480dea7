using AttentionReference.Forms.Common;
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
/// Feature maps φ (feature_map; FeatureMaps.cs defines each):
///   identity   φ(x) = x
///   elu1       φ(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise        (Katharopoulos et al.)
///   relu       φ(x) = max(x, 0)
///   taylor2    x̃ = x / K^(1/4);  φ(x) = [1, x̃, vec(x̃ x̃ᵀ)/√2], F = 1 + K + K² (vec row-major: entry K·a + b = x̃_a x̃_b)
///              so that φ(q)·φ(k) = 1 + q·k/√K + (q·k)²/(2K), the 2nd-order Taylor expansion of exp(q·k/√K)
///   performer  x̃ = x / K^(1/4);  φ(x)_r = exp(ω_r·x̃ − |x̃|²/2) / √M, ω_r row r of proj [M,K]    (FAVOR+)
///              so that E_ω[φ(q)·φ(k)] = exp(q·k/√K) for ω ~ N(0, I)
///
/// Variants:
///   recurrent  the recurrence above, token by token (the definition).
///   parallel   A_ij = φ(q_i)·φ(k_j) for j ≤ i (every j when not causal);
///              o_i = scale · (S0ᵀ φ(q_i) + Σ_j A_ij v_j), normaliser φ(q_i)·z0 + Σ_j A_ij.
///   chunked    chunks of C steps (any C ≥ 1):
///                1. inter-chunk part: the state entering the chunk, read by all its queries at once: Φq S, Φq z
///                2. intra-chunk part: Σ_{s≤j≤t} A_tj v_j and Σ_{s≤j≤t} A_tj for each query t of the chunk
///                3. S += Φkᵀ V, z += Φkᵀ 1 over the chunk's keys, handed to the next chunk
///              Not causal: S and z over all chunks first, then every step reads them.
///
/// Arithmetic of parallel and chunked: rows of scores and Σ_j A_ij v_j, the chunk's read-out Φq S and update S += Φᵀ V
/// are products through Numerics/DenseMatrix.cs; each denominator is computed as its numerator is, with a column of
/// ones for the values. taylor2's scores use its identity φ(q)·φ(k) = 1 + s + s²/2, s = q·k/√K: O(K) per pair instead
/// of the O(K²) dot of its features (the state, which needs the features, still uses them).
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
public sealed partial class Linear : Form
{
    /// <summary>normalize: divide by scale·φ(q_t)·z_t + eps.</summary>
    public static Parameter<bool> Normalize { get; } = ParameterSpec.Flag("normalize", false, "divide by scale·φ(q_t)·z_t + eps");

    /// <summary>eps: added to the normaliser.</summary>
    public static Parameter<double> Eps { get; } = ParameterSpec.Real("eps", 1e-10, "added to the normaliser (fla's value)", min: 0);

    /// <summary>causal: o_t reads S_t, or (false) the state after the last step.</summary>
    public static Parameter<bool> Causal { get; } = ParameterSpec.Flag("causal", true, "false: every o_t reads the state after the last step");

    /// <summary>scale, F^-0.5 unless given.</summary>
    public static Parameter<double?> Scale { get; } = ParameterSpec.OptionalReal("scale", "F^-0.5", "o_t = scale · S_tᵀ φ(q_t), F the feature dimension");

    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("linear", "linear", "Linear.cs")
    {
        Variants = ["recurrent", "parallel", "chunked"],
        Inputs =
        [
            new("q", "B,T,H,K", "queries (before the feature map)"),
            new("k", "B,T,H,K", "keys (before the feature map)"),
            Specs.V,
            new("proj", "M,K", "performer's random projection ω (feature_map=performer only)", Optional: true),
            new("initial_state", "N,H,F,V", "S before the first step, F the feature dimension (zeros if absent)", Optional: true),
            new("initial_normalizer", "N,H,F", "z before the first step (zeros if absent)", Optional: true),
            Specs.CuSeqlens,
        ],
        Outputs =
        [
            Specs.O,
            new("final_state", "N,H,F,V", "S after each sequence's last step"),
            new("final_normalizer", "N,H,F", "z after each sequence's last step"),
        ],
        Parameters = [FeatureMaps.Parameter, Normalize, Eps, Causal, Scale, Specs.ChunkSize],
        Derived = [new("F", FeatureMaps.FeatureSize)],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        LinearOptions options = LinearOptions.Read(problem);
        return variant switch
        {
            "recurrent" => Heads.Run(problem, head => Recurrent(head, options)),
            "parallel" => Heads.Run(problem, head => Parallel(head, options)),
            "chunked" => Heads.Run(problem, head => Chunked(head, options)),
            _ => throw UnknownVariant(variant),
        };
    }

    /// <summary>The recurrence, token by token: the definition.</summary>
    public static void Recurrent(Head head, LinearOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o"), S = head.State();
        Span<double> z = head.State("normalizer")[0];
        ReadOnlySpan<double> proj = Proj(head);
        double[] φq = new double[S.Count], φk = new double[S.Count];
        for (int t = 0; t < head.T; t++)
        {
            // S_t = S_{t−1} + φ(k_t) v_tᵀ,   z_t = z_{t−1} + φ(k_t)
            FeatureMaps.Apply(options.Map, k[t], φk, proj);
            for (int a = 0; a < S.Count; a++)
            {
                VectorKernels.Axpy(φk[a], v[t], S[a]);
            }
            VectorKernels.AddTo(φk, z);
            if (options.Causal)
            {
                // o_t = scale · S_tᵀ φ(q_t)   (÷ (scale · φ(q_t)·z_t + eps) when normalised)
                FeatureMaps.Apply(options.Map, q[t], φq, proj);
                ReadOut(φq, S, z, options, o[t]);
            }
        }
        if (options.Causal)
        {
            return;
        }
        for (int t = 0; t < head.T; t++)
        {
            // Not causal: every o_t reads the state after the last step.
            FeatureMaps.Apply(options.Map, q[t], φq, proj);
            ReadOut(φq, S, z, options, o[t]);
        }
    }

    /// <summary>o = scale · Sᵀ φ(q), divided by scale · φ(q)·z + eps when normalised (o holds zeros on entry).</summary>
    private static void ReadOut(ReadOnlySpan<double> φq, RowBlock S, ReadOnlySpan<double> z, LinearOptions options, Span<double> o)
    {
        for (int a = 0; a < S.Count; a++)
        {
            VectorKernels.Axpy(φq[a], S[a], o);
        }
        options.Output(o, VectorKernels.Dot(φq, z), o);
    }

    /// <inheritdoc/>
    public override bool HasGradients => true;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Backward(string variant, Problem problem)
    {
        LinearOptions options = LinearOptions.Read(problem);
        return Heads.Backward(problem, variant switch
        {
            "recurrent" => head => RecurrentBackward(head, options),
            "parallel" => head => ParallelBackward(head, options),
            "chunked" => head => ChunkedBackward(head, options),
            _ => throw UnknownVariant(variant),
        });
    }

    /// <summary>
    /// The backward pass of the recurrence, in reverse time, from the states S_t, z_t a forward replay stores (the
    /// definition keeps every state; the chunked backward keeps none). With n_t = S_tᵀ φ(q_t) and d_t = φ(q_t)·z_t, the
    /// output is o_t = c_t n_t, c_t = scale / (scale·d_t + eps) when normalised (scale otherwise), and the normaliser's
    /// gradient is δ_t = −c_t ⟨do_t, o_t⟩ (0 when not normalised):
    /// <code>
    ///   dS, dz = dfinal_state, dfinal_normalizer (0 if absent)
    ///   for t = T−1 … 0:
    ///     dS    += φ(q_t) (c_t do_t)ᵀ,   dz += δ_t φ(q_t)      o_t reads S_t, z_t
    ///     dφq_t  = S_t (c_t do_t) + δ_t z_t
    ///     dφk_t  = dS v_t + dz,   dv_t = dSᵀ φ(k_t)             S_t ∋ φ(k_t) v_tᵀ, z_t ∋ φ(k_t)
    ///     (dS and dz pass to S_{t−1}, z_{t−1} unchanged: the state is a plain sum)
    ///   dinitial_state, dinitial_normalizer = dS, dz
    ///   dq_t, dk_t and dproj: the chain rule through φ (FeatureMaps.Backward) of dφq_t and dφk_t
    /// </code>
    /// Not causal: every o_t reads S_{T−1}, z_{T−1}, so all the reads come first (dS += Σ_t φ(q_t) (c_t do_t)ᵀ, dz alike),
    /// then every key takes dφk_t = dS v_t + dz and dv_t = dSᵀ φ(k_t) with the total.
    /// </summary>
    public static void RecurrentBackward(Head head, LinearOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), dq = head.Rows("dq"), dk = head.Rows("dk"), dv = head.Rows("dv");
        RowBlock? dO = head.OptionalRows("do");
        RowBlock dS = head.StateGradient();
        Span<double> dz = head.StateGradient("normalizer")[0];
        ReadOnlySpan<double> proj = Proj(head);
        Span<double> dproj = head.Problem.Has("proj") ? head.Row("dproj") : default;
        var (S, z) = Replay(head, options, proj); // S[t + 1], z[t + 1] = S_t, z_t; S[0], z[0] the initial ones
        for (int t = head.T - 1; t >= 0 && dO is not null && !options.Causal; t--)
        {
            ReadOutBackward(q[t], S[head.T], z[head.T][0], dO[t], options, proj, dS, dz, dq[t], dproj);
        }
        var dφk = new double[dS.Count];
        for (int t = head.T - 1; t >= 0; t--)
        {
            if (dO is not null && options.Causal)
            {
                ReadOutBackward(q[t], S[t + 1], z[t + 1][0], dO[t], options, proj, dS, dz, dq[t], dproj);
            }
            double[] φk = FeatureMaps.Of(options.Map, k[t], proj);
            for (int a = 0; a < dS.Count; a++)
            {
                dφk[a] = VectorKernels.Dot(dS[a], v[t]) + dz[a]; // dφk_t = dS v_t + dz
                VectorKernels.Axpy(φk[a], dS[a], dv[t]);           // dv_t = dSᵀ φ(k_t)
            }
            FeatureMaps.Backward(options.Map, k[t], dφk, dk[t], proj, dproj);
        }
    }

    /// <summary>
    /// The read o = c·Sᵀφ(q) backward: dS += φ(q) (c do)ᵀ, dz += δ φ(q), and dq += φ′ᵀ (S (c do) + δ z) (with dproj).
    /// </summary>
    private static void ReadOutBackward(ReadOnlySpan<double> qt, RowBlock S, ReadOnlySpan<double> z, ReadOnlySpan<double> dOt, LinearOptions options,
        ReadOnlySpan<double> proj, RowBlock dS, Span<double> dz, Span<double> dqt, Span<double> dproj)
    {
        double[] φq = FeatureMaps.Of(options.Map, qt, proj), dφq = new double[S.Count], Sdo = new double[S.Count];
        double doNumerator = 0; // ⟨do, Sᵀ φ(q)⟩ = φ(q)·(S do)
        for (int a = 0; a < S.Count; a++)
        {
            Sdo[a] = VectorKernels.Dot(S[a], dOt);
            doNumerator += φq[a] * Sdo[a];
        }
        var (c, δ) = options.OutputGradients(VectorKernels.Dot(φq, z), doNumerator);
        for (int a = 0; a < S.Count; a++)
        {
            dφq[a] = c * Sdo[a] + δ * z[a];
            VectorKernels.Axpy(c * φq[a], dOt, dS[a]);
        }
        VectorKernels.Axpy(δ, φq, dz);
        FeatureMaps.Backward(options.Map, qt, dφq, dqt, proj, dproj);
    }

    /// <summary>The states S_{−1}, S_0, …, S_{T−1} and z_{−1}, …, z_{T−1} (one row each) of the recurrence, replayed.</summary>
    private static (RowBlock[] S, RowBlock[] Z) Replay(Head head, LinearOptions options, ReadOnlySpan<double> proj)
    {
        RowBlock k = head.Rows("k"), v = head.Rows("v");
        var (S, z) = (new RowBlock[head.T + 1], new RowBlock[head.T + 1]);
        (S[0], z[0]) = (head.InitialState(), head.InitialState("normalizer"));
        for (int t = 0; t < head.T; t++)
        {
            (S[t + 1], z[t + 1]) = (RowBlock.Zeros(S[t].Count, S[t].Width), RowBlock.Zeros(1, S[t].Count));
            double[] φk = FeatureMaps.Of(options.Map, k[t], proj);
            for (int a = 0; a < S[t].Count; a++)
            {
                S[t][a].CopyTo(S[t + 1][a]);
                VectorKernels.Axpy(φk[a], v[t], S[t + 1][a]); // S_t = S_{t−1} + φ(k_t) v_tᵀ
            }
            z[t][0].CopyTo(z[t + 1][0]);
            VectorKernels.AddTo(φk, z[t + 1][0]);              // z_t = z_{t−1} + φ(k_t)
        }
        return (S, z);
    }

    /// <summary>The quadratic form: scores φ(q_i)·φ(k_j), masked to j ≤ i when causal; the final state by the chunked update.</summary>
    private static void Parallel(Head head, LinearOptions options)
    {
        var x = new Pair(head, options);
        RowBlock o = head.Rows("o");
        var A = new double[head.T];
        var φq = new double[x.F];
        var denominator = new double[1];
        for (int i = 0; i < head.T; i++)
        {
            // The initial state's part, then Σ_j A_ij v_j over the allowed keys; the denominator alike, with a column of
            // ones for the values (the same arithmetic as every value column).
            Span<double> numerator = o[i];
            denominator[0] = 0;
            if (x.HasInitialState)
            {
                x.Features.QueryFeatures(i, 1, φq);
                DenseMatrix.AddWeightedRows(φq, x.S, numerator);
                DenseMatrix.AddWeightedRows(φq, x.Z, denominator);
            }
            int keys = options.Causal ? i + 1 : head.T;
            Span<double> Ai = A.AsSpan(0, keys);
            x.Features.Scores(i, 0, Ai);
            DenseMatrix.AddWeightedRows(Ai, x.Values(0, keys), numerator);
            DenseMatrix.AddWeightedRows(Ai, x.Ones(keys), denominator);
            options.Output(numerator, denominator[0], numerator);
        }
        // final_state and final_normalizer: the chunked form's state update, one chunk after another.
        foreach (var (s, e) in Chunks.Of(head.T, StateChunk))
        {
            AdvanceState(x, s, e);
        }
    }

    // The chunk length of the parallel form's state update: long enough for the key-feature block to feed a matrix
    // product, short enough to keep it (F x 64) small.
    private const int StateChunk = 64;

    /// <summary>Chunks of C steps (any C ≥ 1): steps 1–3 per chunk, in order.</summary>
    private static void Chunked(Head head, LinearOptions options)
    {
        var x = new Pair(head, options);
        RowBlock o = head.Rows("o");
        int C = Math.Min(options.ChunkSize, Math.Max(head.T, 1)), F = x.F, V = head["V"];
        var Φq = new double[C * F];        // φ(q_t) of the chunk's queries, one row each
        var numerators = new double[C * V]; // what they read, and the chunk's own keys add
        var denominators = new double[C];
        var A = new double[C];
        if (!options.Causal)
        {
            // Not causal: S and z over every chunk first, then each step reads the final S and z.
            foreach (var (s, e) in Chunks.Of(head.T, C))
            {
                AdvanceState(x, s, e);
            }
            Span<double> φq = Φq.AsSpan(0, F), denominator = denominators.AsSpan(0, 1);
            for (int t = 0; t < head.T; t++)
            {
                x.Features.QueryFeatures(t, 1, φq);
                denominator[0] = 0;
                DenseMatrix.AddWeightedRows(φq, x.S, o[t]);
                DenseMatrix.AddWeightedRows(φq, x.Z, denominator);
                options.Output(o[t], denominator[0], o[t]);
            }
            return;
        }
        foreach (var (s, e) in Chunks.Of(head.T, C))
        {
            int n = e - s;
            // 1. inter-chunk part: numerators Φq S, denominators Φq z.
            x.Features.QueryFeatures(s, n, Φq.AsSpan(0, n * F));
            Array.Clear(numerators);
            Array.Clear(denominators);
            DenseMatrix.AddProduct(Φq.AsSpan(0, n * F), n, x.S, F, numerators.AsSpan(0, n * V));
            DenseMatrix.AddProduct(Φq.AsSpan(0, n * F), n, x.Z, F, denominators.AsSpan(0, n));
            for (int t = s; t < e; t++)
            {
                // 2. intra-chunk part: the chunk's keys up to t.
                Span<double> numerator = numerators.AsSpan((t - s) * V, V), At = A.AsSpan(0, t - s + 1);
                x.Features.Scores(t, s, At);
                DenseMatrix.AddWeightedRows(At, x.Values(s, t - s + 1), numerator);
                DenseMatrix.AddWeightedRows(At, x.Ones(t - s + 1), denominators.AsSpan(t - s, 1));
                options.Output(numerator, denominators[t - s], o[t]);
            }
            // 3. the state handed to the next chunk.
            AdvanceState(x, s, e);
        }
    }

    /// <summary>
    /// S and z advanced over the keys of chunk [s, e): S += Φᵀ V and z += Φᵀ 1 as matrix products, Φ [n x F] the chunk's
    /// key features, one row per key (each S[a, c] still sums its keys in order).
    /// </summary>
    private static void AdvanceState(Pair x, int s, int e)
    {
        int n = e - s;
        var Φk = new double[n * x.F];
        x.Features.KeyFeatures(s, n, Φk);
        DenseMatrix.AddTransposedProduct(Φk, n, x.Values(s, n), x.S);
        DenseMatrix.AddTransposedProduct(Φk, n, x.Ones(n), x.Z);
    }

    /// <summary>performer's ω [M,K] row after row; empty for the other maps.</summary>
    private static ReadOnlySpan<double> Proj(Head head) => head.Problem.Has("proj") ? head.Row("proj") : default;

    /// <summary>
    /// One pair as the parallel and chunked forms read it: its features and scores, v packed row after row and a column
    /// of ones (the matrices of the products: the ones give the denominators), S [F x V] and z [F], packed.
    /// </summary>
    private sealed class Pair
    {
        private readonly double[] _values, _ones;
        private readonly RowBlock _S, _z;

        public Pair(Head head, LinearOptions options)
            : this(head, options, head.State(), head.State("normalizer"))
        {
        }

        /// <summary>The pair with the state S [F x V] and z [1 x F] given (a backward pass replays from copies of the initial ones).</summary>
        public Pair(Head head, LinearOptions options, RowBlock S, RowBlock z)
        {
            (_S, _z) = (S, z);
            RowBlock v = head.Rows("v");
            int V = v.Width;
            _values = new double[v.Count * V];
            for (int t = 0; t < v.Count; t++)
            {
                v[t].CopyTo(_values.AsSpan(t * V, V));
            }
            _ones = new double[v.Count];
            Array.Fill(_ones, 1.0);
            Features = new FeatureRows(options.Map, Proj(head).ToArray(), head.Rows("q"), head.Rows("k"), _S.Count);
            HasInitialState = head.Problem.Has("initial_state") || head.Problem.Has("initial_normalizer");
        }

        public FeatureRows Features { get; }

        public int F => _S.Count;

        /// <summary>Whether the call gave initial_state or initial_normalizer (otherwise both start at zero).</summary>
        public bool HasInitialState { get; }

        public Span<double> S => _S.Contiguous();

        public Span<double> Z => _z.Contiguous();

        /// <summary>v_first … v_{first+count−1}, packed row after row.</summary>
        public ReadOnlySpan<double> Values(int first, int count) => _values.AsSpan(first * _S.Width, count * _S.Width);

        /// <summary>A column of <paramref name="count"/> ones: the "values" whose weighted sums are the denominators.</summary>
        public ReadOnlySpan<double> Ones(int count) => _ones.AsSpan(0, count);
    }
}

/// <summary>The options of a linear call, read once from the bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Map">The feature map φ.</param>
/// <param name="Normalize">Divide by scale·φ(q_t)·z_t + eps.</param>
/// <param name="Eps">Added to the normaliser.</param>
/// <param name="Causal">o_t reads S_t (true) or the state after the last step.</param>
/// <param name="Scale">The given scale, or F^(-1/2).</param>
/// <param name="ChunkSize">The chunked variant's C.</param>
public sealed record LinearOptions(LinearFeatureMap Map, bool Normalize, double Eps, bool Causal, double Scale, int ChunkSize)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static LinearOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new(FeatureMaps.Parse(problem.Get(FeatureMaps.Parameter)), problem.Get(Linear.Normalize), problem.Get(Linear.Eps),
            problem.Get(Linear.Causal), problem.Get(Linear.Scale) ?? 1 / Math.Sqrt(problem["F"]), problem.Get(Specs.ChunkSize));
    }

    /// <summary>
    /// The gradients of o = scale · n (÷ (scale · d + eps) when normalised) at the numerator n and denominator d: dn = c·do
    /// with c = scale / (scale·d + eps) (scale when not normalised), and dd = δ = −c ⟨do, o⟩ = −c² ⟨do, n⟩ (0 when not
    /// normalised), from d and ⟨do, n⟩.
    /// </summary>
    public (double NumeratorScale, double DenominatorGradient) OutputGradients(double denominator, double doNumerator)
    {
        double c = Normalize ? Scale / (Scale * denominator + Eps) : Scale;
        return (c, Normalize ? -c * c * doNumerator : 0);
    }

    /// <summary>o = scale · n, divided by scale · d + eps when normalised (<paramref name="o"/> may be <paramref name="numerator"/>).</summary>
    public void Output(ReadOnlySpan<double> numerator, double denominator, Span<double> o)
    {
        for (int c = 0; c < o.Length; c++)
        {
            o[c] = Normalize ? Scale * numerator[c] / (Scale * denominator + Eps) : Scale * numerator[c];
        }
    }
}
