using AttentionReference.Forms.Common;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// Power attention (symmetric power transformers; Buckman, Gelada, Zhang, Manifest AI 2024, "Symmetric Power
/// Transformers", and the power-attention library), exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   g [B,T,H] (optional log gates ≤ 0; also named log_G)
///   initial_state [N,H,D,V]   initial_normalizer [N,H,D]   (optional; N = B, or sequences with cu_seqlens)
///   →   o [B,T,H,V]   final_state [N,H,D,V]   final_normalizer [N,H,D]
///   p = deg ≥ 1, D = C(K+p−1, p) the symmetric power dimension (D·p ≤ 2^22, see SymmetricPower).
///
/// Per sequence and head, with s = scale (K^(-1/2) unless given) and the decay between steps j ≤ i
///   γ(i, j) = exp(g_{j+1} + … + g_i)   (1 without g; γ(i, i) = 1):
///   w_ij = (s · q_i·k_j)^p · γ(i, j)                                for j ≤ i
///   n_i  = γ(i, −1) · φ(s q_i)ᵀ S0 + Σ_{j≤i} w_ij v_j                 S0 = initial_state (0 if absent)
///   d_i  = γ(i, −1) · φ(s q_i)·z0  + Σ_{j≤i} w_ij                     z0 = initial_normalizer (0 if absent)
///   o_i  = n_i / (d_i + eps)        normalize = true (default)
///   o_i  = n_i                      normalize = false
///   (γ(i, −1) = exp(g_0 + … + g_i): the initial state decays by every gate of the sequence, as the recurrence says.)
///
/// Symmetric power feature map (φ(x)·φ(y) = (x·y)^p exactly, by the multinomial theorem):
///   one entry per multi-index a_1 ≤ a_2 ≤ … ≤ a_p over [0, K), in lexicographic order; with α_c the number of
///   times channel c occurs,  φ(x)_α = √(p! / Π_c α_c!) · Π_r x_{a_r}.
///
/// Variants:
///   quadratic  the weights above, masked j ≤ i; the decay of each pair is summed over (j, i].
///   recurrent  S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ,  z_t = exp(g_t) z_{t−1} + φ(k_t);
///              o_t = φ(s q_t)ᵀ S_t / (φ(s q_t)·z_t + eps)  (numerator alone when not normalised).  (the definition)
///   chunked    chunks of C steps (any C ≥ 1), b_t = g_s + … + g_t the log decay from the chunk's start s:
///                1. inter-chunk part: the state entering the chunk, read by all its queries at once (Φq S, Φq z),
///                   each row decayed by exp(b_t)
///                2. intra-chunk part: w_tj = (s q_t·k_j)^p exp(b_t − b_j) for s ≤ j ≤ t
///                3. S, z advance over the chunk: S ← exp(b_last) S + Σ_j exp(b_last − b_j) φ(k_j) v_jᵀ, z alike
///   final_state = S_{T−1}, final_normalizer = z_{T−1}, always written (by quadratic through the chunked form's
///   step 3, chunk after chunk of 64 steps).
///
/// Arithmetic: the scores q_t·k_j of a row of keys, the sums Σ_j w_j v_j and the state products (Φq S for a chunk's
/// queries, S += Φᵀ Ṽ for its keys) go through Numerics/DenseMatrix.cs. The power x^p is p − 1 products. Each
/// denominator is computed as its numerator is, with a column of ones for the values (z is S's column of ones, as in
/// power-attention's D x (V + 1) state): with odd p the weights can cancel, and only the same arithmetic keeps n/d
/// equal to the normalised output to rounding.
/// </code>
/// Sources and choices:
/// - The weights and the normaliser are power-attention's (m-a-n-i-f-e-s-t/power-attention; the copy searched was
///   power_attention/_attention/reference.py and power_full_maker.py): s = matmul(Q, Kᵀ) · scale, then the power
///   deg · log|s| (sign kept for odd deg), plus the gate difference G_i − G_j of cumulative log gates, and with
///   norm = True the output divided by the row sum. power_full's default scale is 1/√d (d the head dimension), and
///   the doc string's RNN form Y_i = S_i φ(Q_i) / (Z_i φ(Q_i)) is our recurrent variant. The gate of step j does not
///   decay key j itself (G_i − G_j), as in gated linear attention.
/// - Stabilisation: the reference computes exp(deg·log(|s| + 1e-7) − rowmax) and adds 1e-6 to the row sum after the
///   row-max shift (so its eps is relative to the largest weight); chunked kernels gate keys by exp(ΔG/deg) before
///   the feature map. We compute the weights exactly, and the normaliser eps is absolute and defaults to 0, so that
///   all three variants are the same function; set eps to compare with a stabilised kernel on tiny weights.
/// - deg: the library asserts deg even (even p makes every weight ≥ 0, so the normaliser is positive); we accept
///   any p ≥ 1 so that p = 1 reduces to linear attention (normalize = false: linear with φ = identity; with g:
///   simple_gla). With odd p and normalize = true the row sum can vanish: the output is then ±∞ or NaN, not hidden.
/// - The library keeps only the state S (its normaliser is the extra column of a D(d+1) state); we keep S and z as
///   two tensors, as our linear form does, so state passing works in both modes. Its initial_state is not gated
///   (a TODO there); ours decays by the gates like every other state.
/// - The library also offers an output layer norm ("Norm" in its doc string) and GQA; neither is part of this form.
/// </summary>
public sealed partial class Power : Form
{
    /// <summary>deg: the power p.</summary>
    public static Parameter<int> Degree { get; } = ParameterSpec.WholeNumber("deg", 2,
        "the power p ≥ 1 of (scale · q·k)^p (power-attention uses even p)", min: 1);

    /// <summary>normalize: divide by the sum of the weights plus eps.</summary>
    public static Parameter<bool> Normalize { get; } = ParameterSpec.Flag("normalize", true, "divide by the sum of the weights plus eps");

    /// <summary>eps: added to the normaliser.</summary>
    public static Parameter<double> Eps { get; } = ParameterSpec.Real("eps", 0, "added to the normaliser", min: 0);

    /// <summary>scale: s of the weights (s · q·k)^p, K^-0.5 unless given.</summary>
    public static Parameter<double?> Scale { get; } = ParameterSpec.OptionalReal("scale", "K^-0.5", "weights (scale · q·k)^p");

    /// <inheritdoc/>
    public override FormContract Contract { get; } = new("power", "hybrid", "Power.cs")
    {
        Variants = ["quadratic", "recurrent", "chunked"],
        Inputs =
        [
            Specs.Q,
            Specs.K,
            Specs.V,
            new("g", "B,T,H", "per-head log gate (≤ 0); no decay if absent", Optional: true, Aliases: ["log_G"]),
            new("initial_state", "N,H,D,V", "S before the first step, D = C(K+deg−1, deg) (zeros if absent)", Optional: true),
            new("initial_normalizer", "N,H,D", "z before the first step (zeros if absent)", Optional: true),
            Specs.CuSeqlens,
        ],
        Outputs =
        [
            Specs.O,
            new("final_state", "N,H,D,V", "S after each sequence's last step"),
            new("final_normalizer", "N,H,D", "z after each sequence's last step"),
        ],
        Parameters = [Degree, Normalize, Eps, Scale, Specs.ChunkSize],
        Derived = [new("D", SymmetricPower.FeatureSize)],
    };

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Run(string variant, Problem problem)
    {
        Action<Head, PowerOptions> body = variant switch
        {
            "quadratic" => Quadratic,
            "recurrent" => Recurrent,
            "chunked" => Chunked,
            _ => throw UnknownVariant(variant),
        };
        PowerOptions options = PowerOptions.Read(problem);
        return Heads.Run(problem, head => body(head, options));
    }

    /// <summary>The recurrence over the symmetric power state, token by token: the definition.</summary>
    public static void Recurrent(Head head, PowerOptions options)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(options);
        RowBlock q = head.Rows("q"), k = head.Rows("k"), v = head.Rows("v"), o = head.Rows("o"), S = head.State();
        Span<double> z = head.State("normalizer")[0];
        Series? g = head.OptionalSeries("g");
        double[] φq = new double[S.Count], φk = new double[S.Count];
        for (int t = 0; t < head.T; t++)
        {
            // S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ,   z_t = exp(g_t) z_{t−1} + φ(k_t)
            double decay = Math.Exp(g?[t] ?? 0);
            options.Map.Apply(k[t], 1, φk);
            for (int a = 0; a < S.Count; a++)
            {
                VectorKernels.Scale(decay, S[a]);
                VectorKernels.Axpy(φk[a], v[t], S[a]);
                z[a] = decay * z[a] + φk[a];
            }
            // o_t = φ(s q_t)ᵀ S_t / (φ(s q_t)·z_t + eps)   (the numerator alone when not normalised)
            options.Map.Apply(q[t], options.Scale, φq);
            double denominator = 0;
            for (int a = 0; a < S.Count; a++)
            {
                VectorKernels.Axpy(φq[a], S[a], o[t]);
                denominator += φq[a] * z[a]; // as each numerator column is summed: z is S's column of ones
            }
            options.Output(o[t], denominator, o[t]);
        }
    }

    /// <summary>The quadratic form: weights (s q_i·k_j)^p γ(i, j) for j ≤ i; the final state by the chunked form's step 3.</summary>
    private static void Quadratic(Head head, PowerOptions options)
    {
        var x = new Pair(head, options);
        RowBlock o = head.Rows("o");
        var logDecay = new double[head.T]; // log γ(i, j), j ≤ i
        var w = new double[head.T];
        var φq = new double[x.D];
        var fromState = new double[x.V];
        Span<double> sums = stackalloc double[2]; // Σ_j w_ij, and φ(s q_i)·z0
        for (int i = 0; i < head.T; i++)
        {
            // Keys j = i, i−1, …, 0: the log decay log γ(i, j) grows by g_{j+1} at each step back.
            logDecay[i] = 0;
            for (int j = i - 1; j >= 0; j--)
            {
                logDecay[j] = logDecay[j + 1] + x.Gate[j + 1];
            }
            Span<double> wi = w.AsSpan(0, i + 1), numerator = o[i];
            x.Weights(i, 0, logDecay.AsSpan(0, i + 1), wi);
            DenseMatrix.AddWeightedRows(wi, x.Values(0, i + 1), numerator); // Σ_j w_ij v_j
            sums.Clear();
            DenseMatrix.AddWeightedRows(wi, x.Ones(i + 1), sums[..1]);     // Σ_j w_ij
            double denominator = sums[0];
            if (x.HasInitialState)
            {
                // The initial state, decayed by every gate up to i: γ(i, −1) (φ(s q_i)ᵀ S0, φ(s q_i)·z0).
                double γ0 = Math.Exp(logDecay[0] + x.Gate[0]);
                x.PhiQ(i, φq);
                Array.Clear(fromState);
                DenseMatrix.AddWeightedRows(φq, x.S, fromState);
                DenseMatrix.AddWeightedRows(φq, x.Z, sums[1..]);
                VectorKernels.Axpy(γ0, fromState, numerator);
                denominator += γ0 * sums[1];
            }
            options.Output(numerator, denominator, numerator);
        }
        // final_state and final_normalizer: the chunked form's step 3, one chunk after another.
        foreach (var (s, e) in Chunks.Of(head.T, StateChunk))
        {
            AdvanceState(x, s, e, ChunkLogDecay(x, s, e));
        }
    }

    // The chunk length of the quadratic form's state update: long enough for the key-feature block to feed a matrix
    // product, short enough to keep it (D x 64) small.
    private const int StateChunk = 64;

    /// <summary>Chunks of C steps (any C ≥ 1): steps 1–3 of the class comment per chunk, in order.</summary>
    private static void Chunked(Head head, PowerOptions options)
    {
        var x = new Pair(head, options);
        RowBlock o = head.Rows("o");
        int C = Math.Min(options.ChunkSize, Math.Max(head.T, 1)), D = x.D, V = x.V;
        var w = new double[C];
        var Φq = new double[C * D];        // φ(s q_t) of the chunk's queries, one row each
        var numerators = new double[C * V]; // and what they read from the state
        var denominators = new double[C];
        var sum = new double[1];            // Σ_j w_tj
        foreach (var (s, e) in Chunks.Of(head.T, C))
        {
            int n = e - s;
            // b_t = g_s + … + g_t: log decay from the chunk's entry to t (relative to the chunk's start, ≤ 0).
            double[] b = ChunkLogDecay(x, s, e);
            // 1. inter-chunk part: numerators Φq S and denominators Φq z, each row then decayed by exp(b_t).
            for (int t = s; t < e; t++)
            {
                x.PhiQ(t, Φq.AsSpan((t - s) * D, D));
            }
            Array.Clear(numerators);
            DenseMatrix.AddProduct(Φq.AsSpan(0, n * D), n, x.S, D, numerators.AsSpan(0, n * V));
            Array.Clear(denominators);
            DenseMatrix.AddProduct(Φq.AsSpan(0, n * D), n, x.Z, D, denominators.AsSpan(0, n));
            for (int t = s; t < e; t++)
            {
                Span<double> numerator = numerators.AsSpan((t - s) * V, V);
                double entry = Math.Exp(b[t - s]);
                VectorKernels.Scale(entry, numerator);
                double denominator = entry * denominators[t - s];
                // 2. intra-chunk part: w_tj = (s q_t·k_j)^p exp(b_t − b_j) for s ≤ j ≤ t.
                Span<double> wt = w.AsSpan(0, t - s + 1);
                for (int j = s; j <= t; j++)
                {
                    wt[j - s] = b[t - s] - b[j - s];
                }
                x.Weights(t, s, wt, wt);
                DenseMatrix.AddWeightedRows(wt, x.Values(s, t - s + 1), numerator);
                sum[0] = 0;
                DenseMatrix.AddWeightedRows(wt, x.Ones(t - s + 1), sum);
                options.Output(numerator, denominator + sum[0], o[t]);
            }
            // 3. the state handed on.
            AdvanceState(x, s, e, b);
        }
    }

    /// <summary>b_t = g_s + … + g_t for t in [s, e), indexed t − s.</summary>
    private static double[] ChunkLogDecay(Pair x, int s, int e)
    {
        var b = new double[e - s];
        for (int t = s; t < e; t++)
        {
            b[t - s] = (t > s ? b[t - s - 1] : 0) + x.Gate[t];
        }
        return b;
    }

    /// <summary>
    /// Step 3 over the chunk [s, e): S ← exp(b_last) S + Σ_j exp(b_last − b_j) φ(k_j) v_jᵀ, z likewise; the sum as one
    /// matrix product S += Φᵀ Ṽ, Φ [n x D] the chunk's key features (a row per key) and Ṽ [n x V] its values decayed to
    /// the chunk's end.
    /// </summary>
    private static void AdvanceState(Pair x, int s, int e, double[] b)
    {
        int n = e - s, D = x.D, V = x.V;
        double last = b[n - 1];
        VectorKernels.Scale(Math.Exp(last), x.S);
        VectorKernels.Scale(Math.Exp(last), x.Z);
        var Φk = new double[n * D];      // φ(k_j), a row per key of the chunk
        var decayed = new double[n * V]; // Ṽ: row j is exp(b_last − b_j) v_j
        var decay = new double[n];
        for (int j = s; j < e; j++)
        {
            x.PhiK(j, Φk.AsSpan((j - s) * D, D));
            decay[j - s] = Math.Exp(last - b[j - s]);
            VectorKernels.Multiply(x.Values(j, 1), decay[j - s], decayed.AsSpan((j - s) * V, V));
        }
        DenseMatrix.AddTransposedProduct(Φk, n, decayed, x.S);
        DenseMatrix.AddTransposedProduct(Φk, n, decay, x.Z);
    }

    /// <summary>
    /// One pair as the quadratic and chunked forms read it: q, k, v packed row after row (the matrices of the products),
    /// the gates (zeros without g), a column of ones (the values whose weighted sums are the denominators), S [D x V] and
    /// z [D], packed, and the pair weights.
    /// </summary>
    private sealed class Pair
    {
        private readonly PowerOptions _options;
        private readonly double[] _query, _key, _value, _ones;
        private readonly double[] _decay, _power; // scratch rows of Weights, as long as the longest row of keys
        private readonly RowBlock _S, _z;
        private readonly int _keyDim;

        public Pair(Head head, PowerOptions options)
        {
            _options = options;
            (_query, _key, _value) = (Packed(head.Rows("q")), Packed(head.Rows("k")), Packed(head.Rows("v")));
            (_keyDim, V) = (head["K"], head["V"]);
            Gate = head.OptionalSeries("g")?.ToArray() ?? new double[head.T];
            (_decay, _power, _ones) = (new double[head.T], new double[head.T], new double[head.T]);
            Array.Fill(_ones, 1.0);
            (_S, _z) = (head.State(), head.State("normalizer"));
            HasInitialState = head.Problem.Has("initial_state") || head.Problem.Has("initial_normalizer");
        }

        /// <summary>g_t (0 without g).</summary>
        public double[] Gate { get; }

        public int V { get; }

        public int D => _S.Count;

        /// <summary>Whether the call gave initial_state or initial_normalizer (otherwise both start at zero).</summary>
        public bool HasInitialState { get; }

        public Span<double> S => _S.Contiguous();

        public Span<double> Z => _z.Contiguous();

        /// <summary>v_first … v_{first+count−1}, packed row after row.</summary>
        public ReadOnlySpan<double> Values(int first, int count) => _value.AsSpan(first * V, count * V);

        /// <summary>A column of <paramref name="count"/> ones.</summary>
        public ReadOnlySpan<double> Ones(int count) => _ones.AsSpan(0, count);

        /// <summary>φ(s q_t) into <paramref name="φ"/>.</summary>
        public void PhiQ(int t, Span<double> φ) => _options.Map.Apply(_query.AsSpan(t * _keyDim, _keyDim), _options.Scale, φ);

        /// <summary>φ(k_t) into <paramref name="φ"/>.</summary>
        public void PhiK(int t, Span<double> φ) => _options.Map.Apply(_key.AsSpan(t * _keyDim, _keyDim), 1, φ);

        /// <summary>
        /// w_j = (s q_t·k_j)^p · exp(ℓ_j) for the keys j = first, first + 1, … (as many as <paramref name="w"/> holds), with
        /// ℓ the log decay of each pair; <paramref name="logDecay"/> may be <paramref name="w"/> itself. The power is taken
        /// as p − 1 products (exact for p ≤ 2, a few ulps from x^p above).
        /// </summary>
        public void Weights(int t, int first, ReadOnlySpan<double> logDecay, Span<double> w)
        {
            Span<double> decay = _decay.AsSpan(0, w.Length), power = _power.AsSpan(0, w.Length);
            VectorKernels.Exp(logDecay, decay);
            DenseMatrix.TimesTransposed(_query.AsSpan(t * _keyDim, _keyDim), _key.AsSpan(first * _keyDim, w.Length * _keyDim), w);
            VectorKernels.Scale(_options.Scale, w);
            w.CopyTo(power);
            for (int r = 1; r < _options.Degree; r++)
            {
                VectorKernels.Multiply(power, w, power);
            }
            VectorKernels.Multiply(power, decay, w);
        }

        private static double[] Packed(RowBlock rows)
        {
            var packed = new double[rows.Count * rows.Width];
            for (int t = 0; t < rows.Count; t++)
            {
                rows[t].CopyTo(packed.AsSpan(t * rows.Width, rows.Width));
            }
            return packed;
        }
    }
}

/// <summary>The options of a power call, read once from the bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Degree">The power p.</param>
/// <param name="Normalize">Divide by the sum of the weights plus eps (power-attention's norm = True).</param>
/// <param name="Eps">Added to the normaliser; 0 by default (exact).</param>
/// <param name="Scale">The given scale, or K^(-1/2).</param>
/// <param name="ChunkSize">The chunked variant's C.</param>
/// <param name="Map">The symmetric power feature map of degree p over K channels.</param>
public sealed record PowerOptions(int Degree, bool Normalize, double Eps, double Scale, int ChunkSize, SymmetricPower Map)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static PowerOptions Read(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        int degree = problem.Get(Power.Degree);
        return new(degree, problem.Get(Power.Normalize), problem.Get(Power.Eps), problem.Get(Power.Scale) ?? 1 / Math.Sqrt(problem["K"]),
            problem.Get(Specs.ChunkSize), new SymmetricPower(problem["K"], degree));
    }

    /// <summary>o = n / (d + eps) when normalised, n otherwise (<paramref name="o"/> may be <paramref name="numerator"/>).</summary>
    public void Output(ReadOnlySpan<double> numerator, double denominator, Span<double> o)
    {
        if (Normalize)
        {
            VectorKernels.Divide(numerator, denominator + Eps, o);
        }
        else
        {
            numerator.CopyTo(o);
        }
    }
}
