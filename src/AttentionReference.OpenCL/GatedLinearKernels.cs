using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/DiagonalDecay.cl for gla, simple_gla, retention and hgrn2: reduces each form to the engine's inputs
/// exactly as the CPU form does (same internal reductions and validation), uploads, launches, downloads.
/// Variants: recurrent (one work-item per (sequence, head, value column)), chunked (any C ≥ 1), and parallel, which
/// is the chunked kernels with one chunk per sequence (C = the longest sequence): the reference's parallel form is
/// that computation term for term (cumulative gates from the sequence start, the same pair exponents, the same state
/// update), so the mapping is exact; its score buffer is quadratic in T, as the parallel form is.
/// </summary>
internal static class GatedLinearKernels
{
    private static readonly HashSet<string> s_parameters = new(["scale", "chunk_size"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require(form.Name, variant, ["recurrent", "parallel", "chunked"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        // Each form as the gla engine's inputs: its reduction, the same one its CPU parallel and chunked variants take.
        var (q, v) = (problem.Input("q"), problem.Input("v"));
        var (k, gk, gv) = form.Name switch
        {
            "gla" => (problem.Input("k"), problem.Input("gk"), problem.Optional("gv")),
            "simple_gla" => (problem.Input("k"), OnEveryKey(problem, (b, t, h) => problem.Input("g")[b, t, h]), null),
            "retention" => (problem.Input("k"), RetentionGates(problem), null),
            "hgrn2" => (Map(problem.Input("gk"), gate => 1 - Math.Exp(gate)), problem.Input("gk"), (Tensor?)null),
            _ => throw new InputException($"--backend opencl: {form.Name} has no diagonal-decay kernel"),
        };
        return DiagonalDecay(context, precision, form.Name, problem, new DecayTensors(q, k, v, gk, gv), variant, problem.Get(Specs.ChunkSize));
    }

    private sealed record DecayTensors(Tensor Q, Tensor K, Tensor V, Tensor Gk, Tensor? Gv);

    /// <summary>gk[b,t,h,a] = gate(b, t, h) on every key channel a.</summary>
    private static Tensor OnEveryKey(Problem problem, Func<int, int, int, double> gate)
    {
        var (B, T, H, K) = (problem["B"], problem["T"], problem["H"], problem["K"]);
        var gk = Tensor.Zeros(B, T, H, K);
        for (int b = 0; b < B; b++)
        {
            for (int t = 0; t < T; t++)
            {
                for (int h = 0; h < H; h++)
                {
                    gk.Data.AsSpan(((b * T + t) * H + h) * K, K).Fill(gate(b, t, h));
                }
            }
        }
        return gk;
    }

    /// <summary>Retention's gk[b,t,h,:] = log γ_h.</summary>
    private static Tensor RetentionGates(Problem problem)
    {
        double[] γ = Retention.Gammas(problem);
        return OnEveryKey(problem, (_, _, h) => Math.Log(γ[h]));
    }

    private static Tensor Map(Tensor x, Func<double, double> f) => new(x.ShapeArray(), x.Data.Select(f).ToArray());

    /// <summary>The sequences of a bound call as the kernels' slices of the time axis <paramref name="time"/>.</summary>
    internal static IReadOnlyList<SequenceSlice> Slices(Problem problem, string time = "T") =>
        problem.Sequences.Select(s => new SequenceSlice(s.Batch, s.Steps(time).Start, s.Steps(time).Length, s.Index)).ToArray();

    private static Dictionary<string, Tensor> DiagonalDecay(OpenClContext context, Precision precision, string form, Problem problem,
        DecayTensors x, string variant, int chunkSize)
    {
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        IReadOnlyList<SequenceSlice> slices = Slices(problem);
        int N = slices.Count;
        int C = ChunkLength(variant, chunkSize, slices);
        double scale = Specs.ScaleOf(problem);

        using DeviceBuffer seqs = context.UploadInts(SequenceTable(slices)), rowSlice = context.UploadInts(RowSlices(slices, B, T)),
            q = context.Upload(x.Q.Data, precision), k = context.Upload(x.K.Data, precision), v = context.Upload(x.V.Data, precision),
            gk = context.Upload(x.Gk.Data, precision), gv = context.Upload(x.Gv?.Data ?? [], precision),
            S = context.UploadOrZeros(problem.Optional("initial_state")?.Data, N * H * K * V, precision),
            o = context.Zeros(B * T * H * V, precision);
        if (variant == "recurrent")
        {
            using OpenClKernel kernel = context.Kernel("DiagonalDecay.cl", "decay_recurrent", precision);
            kernel.Arg(0, q).Arg(1, k).Arg(2, v).Arg(3, gk).Arg(4, gv).Arg(5, x.Gv is null ? 0 : 1).Arg(6, S).Arg(7, o).Arg(8, seqs)
                .Arg(9, N).Arg(10, T).Arg(11, H).Arg(12, K).Arg(13, V).Arg(14, scale, precision);
            context.Run(kernel, (long)N * H * V, local: 64);
        }
        else
        {
            // Γ and Ψ (zeros without gv: exp(0) = 1, as the reference's Zeros), then the state pass, scores and intra part.
            using DeviceBuffer Γ = context.Allocate(B * T * H * K, precision), Ψ = context.Zeros(B * T * H * V, precision),
                A = context.Allocate(ScoreBufferLength(form, variant, B, T, H, C), precision);
            using (OpenClKernel cumsum = context.Kernel("DiagonalDecay.cl", "decay_chunk_cumsum", precision))
            {
                cumsum.Arg(0, gk).Arg(1, Γ).Arg(2, seqs).Arg(3, N).Arg(4, T).Arg(5, H).Arg(6, K).Arg(7, C);
                context.Run(cumsum, (long)N * H * K, local: 64);
                if (x.Gv is not null)
                {
                    cumsum.Arg(0, gv).Arg(1, Ψ).Arg(6, V);
                    context.Run(cumsum, (long)N * H * V, local: 64);
                }
            }
            using (OpenClKernel state = context.Kernel("DiagonalDecay.cl", "decay_chunk_state", precision))
            {
                state.Arg(0, q).Arg(1, k).Arg(2, v).Arg(3, Γ).Arg(4, Ψ).Arg(5, S).Arg(6, o).Arg(7, seqs)
                    .Arg(8, N).Arg(9, T).Arg(10, H).Arg(11, K).Arg(12, V).Arg(13, C);
                context.Run(state, (long)N * H * V, local: 64);
            }
            using (OpenClKernel scores = context.Kernel("DiagonalDecay.cl", "decay_chunk_scores", precision))
            {
                scores.Arg(0, q).Arg(1, k).Arg(2, Γ).Arg(3, A).Arg(4, seqs).Arg(5, rowSlice)
                    .Arg(6, B).Arg(7, T).Arg(8, H).Arg(9, K).Arg(10, C);
                context.Run(scores, (long)B * T * H * C, local: 64);
            }
            using (OpenClKernel intra = context.Kernel("DiagonalDecay.cl", "decay_chunk_intra", precision))
            {
                intra.Arg(0, v).Arg(1, Ψ).Arg(2, A).Arg(3, o).Arg(4, seqs).Arg(5, rowSlice)
                    .Arg(6, B).Arg(7, T).Arg(8, H).Arg(9, V).Arg(10, C).Arg(11, scale, precision);
                context.Run(intra, (long)B * T * H * V, local: 64);
            }
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, V], context.Download(o)),
            ["final_state"] = new Tensor([N, H, K, V], context.Download(S)),
        };
    }

    /// <summary>
    /// The chunk length the kernels use: one chunk per sequence for parallel (C = the longest sequence); for chunked
    /// the given C, capped at the longest sequence, which chunks every sequence the same way (a chunk never extends
    /// past its sequence) and keeps the score buffer no longer than needed.
    /// </summary>
    internal static int ChunkLength(string variant, int chunkSize, IReadOnlyList<SequenceSlice> slices)
    {
        int longest = Math.Max(1, slices.Select(s => s.Length).DefaultIfEmpty(0).Max());
        return variant == "parallel" ? longest : Math.Clamp(chunkSize, 1, longest);
    }

    /// <summary>
    /// The length B·T·H·C of a chunked kernel's score buffer (one row of C scores per query row and head), refused as
    /// bad input where it exceeds one buffer (the parallel variant at long T: C = T makes it quadratic).
    /// </summary>
    internal static int ScoreBufferLength(string form, string variant, int batch, int time, int heads, int chunkSize)
    {
        long length = (long)batch * time * heads * chunkSize;
        if (length > int.MaxValue)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: {form} {variant} needs a score buffer of B·T·H·C = {length} elements, more than one buffer holds; use the chunked variant with a smaller chunk_size"));
        }
        return (int)length;
    }

    /// <summary>(batch, start, length, stateIndex) per sequence, the layout the kernels read.</summary>
    internal static int[] SequenceTable(IReadOnlyList<SequenceSlice> slices) =>
        slices.SelectMany(s => new[] { s.Batch, s.Start, s.Length, s.StateIndex }).ToArray();

    /// <summary>The sequence of each row b·T + t, or −1 where none covers it.</summary>
    internal static int[] RowSlices(IReadOnlyList<SequenceSlice> slices, int batch, int time)
    {
        var rows = new int[batch * time];
        Array.Fill(rows, -1);
        for (int n = 0; n < slices.Count; n++)
        {
            for (int t = 0; t < slices[n].Length; t++)
            {
                rows[slices[n].Batch * time + slices[n].Start + t] = n;
            }
        }
        return rows;
    }
}
