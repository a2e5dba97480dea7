using System.Globalization;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Hybrid;

/// <summary>
/// Power attention (symmetric power transformers; Buckman, Gelada, Zhang, Manifest AI 2024, "Symmetric Power
/// Transformers", and the power-attention library), exact, in double.
/// <code>
/// Shapes (layout [B,T,H,D], as fla):
///   q [B,T,H,K]   k [B,T,H,K]   v [B,T,H,V]   g [B,T,H] (optional log gates ≤ 0)
///   initial_state [N,H,D,V]   initial_normalizer [N,H,D]   (optional; N = B, or sequences with cu_seqlens)
///   →   o [B,T,H,V]   final_state [N,H,D,V]   final_normalizer [N,H,D]
///   p = deg ≥ 1, D = C(K+p−1, p) the symmetric power dimension.
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
///   quadratic  the weights above, masked j ≤ i (the definition); the decay of each pair is summed over (j, i].
///   recurrent  S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ,  z_t = exp(g_t) z_{t−1} + φ(k_t);
///              o_t = φ(s q_t)ᵀ S_t / (φ(s q_t)·z_t + eps)  (numerator alone when not normalised).
///   chunked    chunks of C steps (any C ≥ 1): the state entering the chunk, decayed to t relative to the chunk's
///              start, plus the quadratic weights inside the chunk; then S, z advance over the chunk.
///   final_state = S_{T−1}, final_normalizer = z_{T−1}, always written (by quadratic through the chunked form's
///   state update, chunk after chunk of 64 steps).
///
/// Arithmetic (PowerProblem.cs holds the per-head plumbing): the scores q_t·k_j of a row of keys, the sums Σ_j w_j v_j
/// and the state products (Φq S for a chunk's queries, S += Φᵀ Ṽ for its keys) go through Numerics/DenseMatrix.cs; the
/// recurrence decays, writes and reads S in one pass (Numerics/StateStep.cs). The power x^p is p − 1 products. Each
/// denominator is computed as its numerator is, through the same call with a column of ones for the values (z is S's
/// column of ones, as in power-attention's D x (V + 1) state): with odd p the weights can cancel, and only the same
/// arithmetic keeps n/d equal to the normalised output to rounding.
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
public static class Power
{
    /// <summary>The quadratic form: weights (s q_i·k_j)^p γ(i, j) for j ≤ i; the definition.</summary>
    public static PowerResult Quadratic(Tensor q, Tensor k, Tensor v, Tensor? g = null, PowerOptions? options = null) =>
        PowerProblem.Bind(q, k, v, g, options ?? new PowerOptions()).Run((head, S0, z0, o) =>
        {
            var logDecay = new double[head.T]; // log γ(i, j), j ≤ i
            var w = new double[head.T];
            var φq = new double[head.D];
            var fromState = new double[head.V];
            Span<double> sums = stackalloc double[2]; // Σ_j w_ij, and φ(s q_i)·z0
            for (int i = 0; i < head.T; i++)
            {
                // Keys j = i, i−1, …, 0: the log decay log γ(i, j) grows by g_{j+1} at each step back.
                logDecay[i] = 0;
                for (int j = i - 1; j >= 0; j--)
                {
                    logDecay[j] = logDecay[j + 1] + head.Gate[j + 1];
                }
                Span<double> wi = w.AsSpan(0, i + 1), numerator = o[i];
                head.Weights(i, 0, logDecay.AsSpan(0, i + 1), wi);
                DenseMatrix.AddWeightedRows(wi, head.Values(0, i + 1), numerator); // Σ_j w_ij v_j
                sums.Clear();
                DenseMatrix.AddWeightedRows(wi, head.Ones[..(i + 1)], sums[..1]);   // Σ_j w_ij
                double denominator = sums[0];
                if (head.HasInitialState)
                {
                    // The initial state, decayed by every gate up to i: γ(i, −1) (φ(s q_i)ᵀ S0, φ(s q_i)·z0).
                    double γ0 = Math.Exp(logDecay[0] + head.Gate[0]);
                    head.PhiQ(i, φq);
                    Array.Clear(fromState);
                    DenseMatrix.AddWeightedRows(φq, S0, fromState);
                    DenseMatrix.AddWeightedRows(φq, z0, sums[1..]);
                    VectorKernels.Axpy(γ0, fromState, numerator);
                    denominator += γ0 * sums[1];
                }
                head.Finish(numerator, denominator, numerator);
            }
            // final_state and final_normalizer: the chunked form's state update, one chunk after another.
            for (int s = 0; s < head.T; s += StateChunk)
            {
                int e = Math.Min(s + StateChunk, head.T);
                AdvanceState(head, S0, z0, s, e, ChunkLogDecay(head, s, e));
            }
        });

    /// <summary>The recurrence over the symmetric power state, token by token.</summary>
    public static PowerResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor? g = null, PowerOptions? options = null) =>
        PowerProblem.Bind(q, k, v, g, options ?? new PowerOptions()).Run((head, S, z, o) =>
        {
            double[] decay = new double[head.D], φk = new double[head.D], φq = new double[head.D], denominator = new double[1];
            for (int t = 0; t < head.T; t++)
            {
                // S_t = exp(g_t) S_{t−1} + φ(k_t) v_tᵀ and its read-out S_tᵀ φ(s q_t), in one pass over S
                Array.Fill(decay, Math.Exp(head.Gate[t]));
                head.PhiK(t, φk);
                head.PhiQ(t, φq);
                Span<double> numerator = o[t];
                StateStep.DecayWriteAndRead(new FlatRows(S, head.D, head.V), decay, φk, head.Value(t), φq, numerator);
                // z_t = exp(g_t) z_{t−1} + φ(k_t) and φ(s q_t)·z_t: the same step on z as a state of one column of ones
                denominator[0] = 0;
                StateStep.DecayWriteAndRead(new FlatRows(z, head.D, 1), decay, φk, head.Ones[..1], φq, denominator);
                head.Finish(numerator, denominator[0], numerator);
            }
        });

    /// <summary>Chunks of <paramref name="chunkSize"/> steps (any C ≥ 1).</summary>
    public static PowerResult Chunked(Tensor q, Tensor k, Tensor v, int chunkSize, Tensor? g = null, PowerOptions? options = null)
    {
        if (chunkSize < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"parameter 'chunk_size' must be ≥ 1, found {chunkSize}"));
        }
        return PowerProblem.Bind(q, k, v, g, options ?? new PowerOptions()).Run((head, S, z, o) =>
        {
            var w = new double[chunkSize];
            var Φq = new double[chunkSize * head.D]; // φ(s q_t) of the chunk's queries, one row each
            var numerators = new double[chunkSize * head.V]; // and what they read from the state
            var denominators = new double[chunkSize];
            var sum = new double[1]; // Σ_j w_tj
            for (int s = 0; s < head.T; s += chunkSize)
            {
                int e = Math.Min(s + chunkSize, head.T), n = e - s;
                // b_t = g_s + … + g_t: log decay from the chunk's entry to t (relative to the chunk's start, ≤ 0).
                double[] b = ChunkLogDecay(head, s, e);
                // 1. inter-chunk part: the state entering the chunk, read by every query at once (numerators Φq S and
                //    denominators Φq z, each row then decayed by exp(b_t)).
                for (int t = s; t < e; t++)
                {
                    head.PhiQ(t, Φq.AsSpan((t - s) * head.D, head.D));
                }
                Array.Clear(numerators);
                DenseMatrix.AddProduct(Φq.AsSpan(0, n * head.D), n, S, head.D, numerators.AsSpan(0, n * head.V));
                Array.Clear(denominators);
                DenseMatrix.AddProduct(Φq.AsSpan(0, n * head.D), n, z, head.D, denominators.AsSpan(0, n));
                for (int t = s; t < e; t++)
                {
                    Span<double> numerator = numerators.AsSpan((t - s) * head.V, head.V);
                    double entry = Math.Exp(b[t - s]);
                    VectorKernels.Scale(entry, numerator);
                    double denominator = entry * denominators[t - s];
                    // 2. intra-chunk part: w_tj = (s q_t·k_j)^p exp(b_t − b_j) for s ≤ j ≤ t.
                    Span<double> wt = w.AsSpan(0, t - s + 1);
                    for (int j = s; j <= t; j++)
                    {
                        wt[j - s] = b[t - s] - b[j - s];
                    }
                    head.Weights(t, s, wt, wt);
                    DenseMatrix.AddWeightedRows(wt, head.Values(s, t - s + 1), numerator);
                    sum[0] = 0;
                    DenseMatrix.AddWeightedRows(wt, head.Ones[..(t - s + 1)], sum);
                    head.Finish(numerator, denominator + sum[0], o[t]);
                }
                // 3. the state handed on.
                AdvanceState(head, S, z, s, e, b);
            }
        });
    }

    // The chunk length of the quadratic form's state update: long enough for the key-feature block to feed a matrix
    // product, short enough to keep it (D x 64) small.
    private const int StateChunk = 64;

    /// <summary>b_t = g_s + … + g_t for t in [s, e), indexed t − s.</summary>
    private static double[] ChunkLogDecay(PowerHead head, int s, int e)
    {
        var b = new double[e - s];
        for (int t = s; t < e; t++)
        {
            b[t - s] = (t > s ? b[t - s - 1] : 0) + head.Gate[t];
        }
        return b;
    }

    /// <summary>
    /// The state handed on over the chunk [s, e): S ← exp(b_last) S + Σ_j exp(b_last − b_j) φ(k_j) v_jᵀ, z likewise;
    /// the sum as one matrix product S += Φᵀ Ṽ, Φ [n x D] the chunk's key features (a row per key) and Ṽ [n x V] its
    /// values decayed to the chunk's end.
    /// </summary>
    private static void AdvanceState(PowerHead head, double[] S, double[] z, int s, int e, double[] b)
    {
        int n = e - s, D = head.D, V = head.V;
        double last = b[n - 1];
        VectorKernels.Scale(Math.Exp(last), S);
        VectorKernels.Scale(Math.Exp(last), z);
        var Φk = new double[n * D];      // φ(k_j), a row per key of the chunk
        var decayed = new double[n * V]; // Ṽ: row j is exp(b_last − b_j) v_j
        var decay = new double[n];
        for (int j = s; j < e; j++)
        {
            head.PhiK(j, Φk.AsSpan((j - s) * D, D));
            decay[j - s] = Math.Exp(last - b[j - s]);
            VectorKernels.Multiply(head.Value(j), decay[j - s], decayed.AsSpan((j - s) * V, V));
        }
        DenseMatrix.AddTransposedProduct(Φk, n, decayed, S);
        DenseMatrix.AddTransposedProduct(Φk, n, decay, z);
    }

    /// <summary>The symmetric power dimension D = C(K+p−1, p).</summary>
    public static int FeatureDimension(int keyDim, int degree)
    {
        long d = 1;
        for (int r = 1; r <= degree; r++)
        {
            d = d * (keyDim + r - 1) / r; // exact: a product of r consecutive integers is divisible by r!
            if (d > int.MaxValue)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"the symmetric power dimension C(K+p−1, p) for K = {keyDim}, deg = {degree} is too large"));
            }
        }
        return (int)d;
    }

    /// <summary>φ(x) of degree <paramref name="degree"/>: one entry per multi-index a_1 ≤ … ≤ a_p, lexicographic.</summary>
    public static double[] FeatureMap(ReadOnlySpan<double> x, int degree)
    {
        var terms = SymmetricTerms(x.Length, degree);
        var φ = new double[terms.Length];
        for (int α = 0; α < terms.Length; α++)
        {
            double product = terms[α].Coefficient;
            foreach (int a in terms[α].Indices)
            {
                product *= x[a];
            }
            φ[α] = product;
        }
        return φ;
    }

    /// <summary>The multi-indices a_1 ≤ … ≤ a_p over [0, K) and their weights √(p!/Π α_c!).</summary>
    internal static (int[] Indices, double Coefficient)[] SymmetricTerms(int keyDim, int degree)
    {
        var terms = new List<(int[], double)>();
        var indices = new int[degree];
        void Fill(int position, int from)
        {
            if (position == degree)
            {
                // p! / Π α_c!, with α_c the run lengths of equal indices.
                double multinomial = Factorial(degree);
                int run = 1;
                for (int r = 1; r <= degree; r++)
                {
                    if (r < degree && indices[r] == indices[r - 1])
                    {
                        run++;
                    }
                    else
                    {
                        multinomial /= Factorial(run);
                        run = 1;
                    }
                }
                terms.Add(((int[])indices.Clone(), Math.Sqrt(multinomial)));
                return;
            }
            for (int a = from; a < keyDim; a++)
            {
                indices[position] = a;
                Fill(position + 1, a);
            }
        }
        Fill(0, 0);
        return [.. terms];
    }

    private static double Factorial(int n)
    {
        double f = 1;
        for (int r = 2; r <= n; r++)
        {
            f *= r;
        }
        return f;
    }
}

/// <summary>The options of <see cref="Power"/>; defaults give normalised power attention of degree 2.</summary>
public sealed record PowerOptions
{
    /// <summary>The power p (power-attention's deg), ≥ 1; the library uses even p.</summary>
    public int Degree { get; init; } = 2;

    /// <summary>Divide by the sum of the weights (plus eps), as power-attention's norm = True.</summary>
    public bool Normalize { get; init; } = true;

    /// <summary>Added to the normaliser; 0 by default (exact).</summary>
    public double Eps { get; init; }

    /// <summary>Weights (scale · q·k)^p; null means K^(-1/2).</summary>
    public double? Scale { get; init; }

    /// <summary>S before the first step, [N,H,D,V]; null means zeros.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>z before the first step, [N,H,D]; null means zeros.</summary>
    public Tensor? InitialNormalizer { get; init; }

    /// <summary>Varlen: int32/int64 [N+1] sequence boundaries along T, with B = 1.</summary>
    public Tensor? CuSeqlens { get; init; }
}

/// <summary>Outputs of power attention: o [B,T,H,V], final_state [N,H,D,V], final_normalizer [N,H,D].</summary>
public sealed record PowerResult(Tensor O, Tensor FinalState, Tensor FinalNormalizer);
