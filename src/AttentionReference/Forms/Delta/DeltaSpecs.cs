using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.Delta;

/// <summary>
/// The tensors and parameters that <see cref="DeltaRule"/>, <see cref="GatedDeltaRule"/> and <see cref="Kda"/> share,
/// named as in fla's public functions (<c>chunk_delta_rule</c>, <c>chunk_gated_delta_rule</c>, <c>chunk_kda</c>):
/// <code>
///   q, k [B,T,H,K]   v [B,T,HV,V]   beta [B,T,HV] (or [B,T,HV,V] where a form allows it)
///   initial_state, final_state [N,HV,K,V]   o [B,T,HV,V]
///   HV a multiple of H (GVA): value head hv reads q/k head hv / (HV/H).
/// </code>
/// </summary>
public static class DeltaSpecs
{
    /// <summary>v [B,T,HV,V].</summary>
    public static TensorSpec V { get; } = new("v", "B,T,HV,V", "values (HV a multiple of H: GVA)");

    /// <summary>beta [B,T,HV], or also [B,T,HV,V] where <paramref name="perValue"/>.</summary>
    public static TensorSpec Beta(bool perValue) => perValue
        ? new("beta", "B,T,HV | B,T,HV,V", "write strength β, headwise [B,T,HV] or per value [B,T,HV,V]")
        : new("beta", "B,T,HV", "write strength β, headwise [B,T,HV] only (as fla's chunk_kda)");

    /// <summary>initial_state [N,HV,K,V].</summary>
    public static TensorSpec InitialState { get; } =
        new("initial_state", "N,HV,K,V", "state each sequence starts from (zeros if absent)", Optional: true);

    /// <summary>o [B,T,HV,V] and final_state [N,HV,K,V].</summary>
    public static IReadOnlyList<TensorSpec> Outputs { get; } =
    [
        new("o", "B,T,HV,V", "output"),
        new("final_state", "N,HV,K,V", "state after each sequence's last step"),
    ];

    /// <summary>Value heads read q/k heads in groups: HV a multiple of H.</summary>
    public static HeadGroup Gva { get; } = new("HV", "H", "GVA");

    /// <summary>use_qk_l2norm_in_kernel, false unless given.</summary>
    public static Parameter<bool> UseQkL2Norm { get; } = ParameterSpec.Flag("use_qk_l2norm_in_kernel", false,
        "L2-normalise q and k (x / √(Σx² + 1e-6)) before use, as fla");

    /// <summary>scale, use_qk_l2norm_in_kernel, chunk_size.</summary>
    public static IReadOnlyList<ParameterSpec> Parameters { get; } = [Specs.Scale, UseQkL2Norm, Specs.ChunkSize];

    /// <summary>
    /// The contract of a form on the delta rule's step: q, k, v, the form's log decay <paramref name="decay"/> (none for
    /// delta_rule), beta (per value too where <paramref name="perValueBeta"/>), initial_state, cu_seqlens → o,
    /// final_state; value heads read q/k heads in groups (GVA).
    /// </summary>
    public static FormContract Contract(string name, string sourceFile, IReadOnlyList<string> variants, TensorSpec? decay, bool perValueBeta) =>
        new(name, "delta rule", sourceFile)
        {
            Variants = variants,
            Inputs = [Specs.Q, Specs.K, V, .. decay is null ? Array.Empty<TensorSpec>() : [decay], Beta(perValueBeta), InitialState, Specs.CuSeqlens],
            Outputs = Outputs,
            Parameters = Parameters,
            Groups = [Gva],
        };
}

/// <summary>
/// The per-head runner of the forms on the delta rule's step: <see cref="Heads.Run"/> over the value heads HV, with the
/// call's options read once and q, k L2-normalised first where asked.
/// </summary>
public static class DeltaHeads
{
    /// <summary>Runs <paramref name="body"/> on every (sequence, value head) pair and returns the outputs.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run(Problem problem, Action<Head, DeltaOptions> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var options = DeltaOptions.Read(problem);
        return Heads.Run(options.Prepare(problem), head => body(head, options), "HV");
    }

    /// <summary>
    /// The backward pass: runs <paramref name="body"/> on every pair over the gradients (dq and dk of q and k as the forms
    /// read them, normalised where asked), then takes dq and dk back through the L2 norm (<see cref="QkL2Norm.Backward"/>).
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> Backward(Problem problem, Action<Head, DeltaOptions> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var options = DeltaOptions.Read(problem);
        var gradients = Heads.Backward(options.Prepare(problem), head => body(head, options), "HV");
        if (options.UseQkL2Norm)
        {
            QkL2Norm.Backward(problem, gradients);
        }
        return gradients;
    }

    /// <summary>
    /// The backward pass of the recurrent or chunked variant of a form on the delta rule's step with a log decay
    /// (gated_delta_rule, kda): <paramref name="decay"/> and <paramref name="decayGradient"/> give each pair's γ_t and
    /// where dγ_t goes. Null for another variant.
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor>? DecayedBackward(string variant, Problem problem, Func<Head, LogDecay> decay,
        Func<Head, LogDecayGradient> decayGradient)
    {
        ArgumentNullException.ThrowIfNull(decay);
        ArgumentNullException.ThrowIfNull(decayGradient);
        return variant switch
        {
            "recurrent" => Backward(problem, (head, options) => DeltaRule.RecurrentBackward(head, options.Scale, decay(head), decayGradient(head))),
            "chunked" => Backward(problem, (head, options) => WyChunkwise.ChunkedBackward(head, options, decay(head), decayGradient(head))),
            _ => null,
        };
    }
}

/// <summary>The options of a delta-rule form, read once from a bound call; the CPU form and the OpenCL host read the same.</summary>
/// <param name="Scale">The output scale (K^-0.5 unless given).</param>
/// <param name="ChunkSize">C of the chunked variant.</param>
/// <param name="UseQkL2Norm">fla's <c>use_qk_l2norm_in_kernel</c>: q and k go through <see cref="QkL2Norm"/> first.</param>
public sealed record DeltaOptions(double Scale, int ChunkSize, bool UseQkL2Norm)
{
    /// <summary>The options of <paramref name="problem"/>.</summary>
    public static DeltaOptions Read(Problem problem) =>
        new(Specs.ScaleOf(problem), problem.Get(Specs.ChunkSize), problem.Get(DeltaSpecs.UseQkL2Norm));

    /// <summary>The call as the forms compute it: with q and k L2-normalised when asked, else as it is.</summary>
    public Problem Prepare(Problem problem) => UseQkL2Norm ? QkL2Norm.Apply(problem) : problem;
}

/// <summary>γ_t, the log decay of step t over the K key channels, written into <paramref name="γ"/>.</summary>
public delegate void LogDecay(int t, Span<double> γ);

/// <summary>
/// Adds dγ_t, the gradient of step t's log decay over the K key channels, to the form's gate gradient (dg_t += Σ_d dγ_t[d]
/// for a gate per head, dgk_t += dγ_t for a gate per key channel).
/// </summary>
public delegate void LogDecayGradient(int t, ReadOnlySpan<double> dγ);

/// <summary>
/// fla's <c>use_qk_l2norm_in_kernel</c>: every row of q and k divided by √(Σx² + ε), before anything else (before the
/// scale).
/// </summary>
public static class QkL2Norm
{
    /// <summary>
    /// fla's L2-norm epsilon: <c>fla/modules/l2norm.py</c> (<c>l2norm_fwd(x, eps=1e-6)</c>: y = x · rsqrt(Σx² + eps)) and
    /// the same 1e-6 written inline in <c>fla/ops/gated_delta_rule/fused_recurrent.py</c>.
    /// </summary>
    public const double Epsilon = 1e-6;

    /// <summary>x ← x / √(Σx² + ε), fla's l2norm.</summary>
    public static void Normalise(Span<double> x)
    {
        double sumOfSquares = 0;
        foreach (double value in x)
        {
            sumOfSquares += value * value;
        }
        double inverseNorm = 1 / Math.Sqrt(sumOfSquares + Epsilon);
        for (int i = 0; i < x.Length; i++)
        {
            x[i] *= inverseNorm;
        }
    }

    /// <summary>The call with q and k replaced by copies whose rows (their last axis, K) are normalised.</summary>
    public static Problem Apply(Problem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return problem.With("q", Normalised(problem.Input("q"), problem["K"]), "B,T,H,K")
            .With("k", Normalised(problem.Input("k"), problem["K"]), "B,T,H,K");
    }

    /// <summary>
    /// The chain rule through the norm, in place on dq and dk of <paramref name="gradients"/> (the gradients of the
    /// normalised rows): with y = x / n, n = √(Σx² + ε),  dx = (dy − y ⟨y, dy⟩) / n, x the call's row.
    /// </summary>
    public static void Backward(Problem problem, IReadOnlyDictionary<string, Tensor> gradients)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(gradients);
        int width = problem["K"];
        foreach (string name in new[] { "q", "k" })
        {
            double[] x = problem.Input(name).Data, dx = gradients["d" + name].Data;
            for (int row = 0; width > 0 && row < x.Length / width; row++)
            {
                Span<double> xRow = x.AsSpan(row * width, width), dRow = dx.AsSpan(row * width, width);
                double sumOfSquares = 0;
                foreach (double value in xRow)
                {
                    sumOfSquares += value * value;
                }
                double inverseNorm = 1 / Math.Sqrt(sumOfSquares + Epsilon), overlap = 0; // overlap = ⟨y, dy⟩
                for (int i = 0; i < width; i++)
                {
                    overlap += xRow[i] * inverseNorm * dRow[i];
                }
                for (int i = 0; i < width; i++)
                {
                    dRow[i] = (dRow[i] - xRow[i] * inverseNorm * overlap) * inverseNorm;
                }
            }
        }
    }

    private static Tensor Normalised(Tensor x, int width)
    {
        Tensor y = x.Clone();
        for (int row = 0; width > 0 && row < y.Length / width; row++)
        {
            Normalise(y.Data.AsSpan(row * width, width));
        }
        return y;
    }
}
