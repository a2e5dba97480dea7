using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Rwkv6.cl: binds the call through the form's contract (the CPU form's checks and options), uploads,
/// launches, downloads. recurrent and chunked (any C ≥ 1). parallel is refused: the reference's parallel form
/// accumulates each pair's log decay backwards from t − 1, which is not the chunked computation with C = T term for term.
/// </summary>
internal static class Rwkv6Kernels
{
    private static readonly HashSet<string> s_parameters = new(["scale", "chunk_size"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("rwkv6", variant, ["recurrent", "chunked"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        int N = slices.Count;
        int C = GatedLinearKernels.ChunkLength(variant, chunkSize, slices);
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v"), w = problem.Input("w"), u = problem.Input("u");

        using DeviceBuffer seqs = context.UploadInts(GatedLinearKernels.SequenceTable(slices)),
            rowSlice = context.UploadInts(GatedLinearKernels.RowSlices(slices, B, T)),
            qb = context.Upload(q.Data, precision), kb = context.Upload(k.Data, precision), vb = context.Upload(v.Data, precision),
            wb = context.Upload(w.Data, precision), ub = context.Upload(u.Data, precision),
            S = context.UploadOrZeros(problem.Optional("initial_state")?.Data, N * H * K * V, precision),
            o = context.Zeros(B * T * H * V, precision);
        if (variant == "recurrent")
        {
            using OpenClKernel kernel = context.Kernel("Rwkv6.cl", "rwkv6_recurrent", precision);
            kernel.Arg(0, qb).Arg(1, kb).Arg(2, vb).Arg(3, wb).Arg(4, ub).Arg(5, S).Arg(6, o).Arg(7, seqs)
                .Arg(8, N).Arg(9, T).Arg(10, H).Arg(11, K).Arg(12, V).Arg(13, scale, precision);
            context.Run(kernel, (long)N * H * V, local: 64);
        }
        else
        {
            using DeviceBuffer bCum = context.Allocate(B * T * H * K, precision), A = context.Allocate(GatedLinearKernels.ScoreBufferLength("rwkv6", variant, B, T, H, C), precision);
            using (OpenClKernel cumsum = context.Kernel("Rwkv6.cl", "rwkv6_cumsum", precision))
            {
                cumsum.Arg(0, wb).Arg(1, bCum).Arg(2, seqs).Arg(3, N).Arg(4, T).Arg(5, H).Arg(6, K).Arg(7, C);
                context.Run(cumsum, (long)N * H * K, local: 64);
            }
            using (OpenClKernel state = context.Kernel("Rwkv6.cl", "rwkv6_chunk_state", precision))
            {
                state.Arg(0, qb).Arg(1, kb).Arg(2, vb).Arg(3, bCum).Arg(4, S).Arg(5, o).Arg(6, seqs)
                    .Arg(7, N).Arg(8, T).Arg(9, H).Arg(10, K).Arg(11, V).Arg(12, C).Arg(13, scale, precision);
                context.Run(state, (long)N * H * V, local: 64);
            }
            using (OpenClKernel scores = context.Kernel("Rwkv6.cl", "rwkv6_scores", precision))
            {
                scores.Arg(0, qb).Arg(1, kb).Arg(2, ub).Arg(3, bCum).Arg(4, A).Arg(5, seqs).Arg(6, rowSlice)
                    .Arg(7, B).Arg(8, T).Arg(9, H).Arg(10, K).Arg(11, C);
                context.Run(scores, (long)B * T * H * C, local: 64);
            }
            using OpenClKernel intra = context.Kernel("Rwkv6.cl", "rwkv6_intra", precision);
            intra.Arg(0, vb).Arg(1, A).Arg(2, o).Arg(3, seqs).Arg(4, rowSlice)
                .Arg(5, B).Arg(6, T).Arg(7, H).Arg(8, V).Arg(9, C).Arg(10, scale, precision);
            context.Run(intra, (long)B * T * H * V, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, V], context.Download(o)),
            ["final_state"] = new Tensor([N, H, K, V], context.Download(S)),
        };
    }
}
