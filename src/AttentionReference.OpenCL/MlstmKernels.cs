using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Mlstm.cl: binds the call through the form's contract and reads the CPU form's options
/// (<see cref="MlstmOptions"/>: log f by the reference's logsigmoid), uploads, launches, downloads. recurrent, chunked
/// (any C ≥ 1), and parallel as the chunked kernels with one chunk per sequence, which is the reference's parallel
/// form (its chunked form with one chunk spanning the sequence).
/// </summary>
internal static class MlstmKernels
{
    private static readonly HashSet<string> s_parameters = new(["scale", "chunk_size", "eps", "forget_gate"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("mlstm", variant, ["recurrent", "parallel", "chunked"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        MlstmOptions options = MlstmOptions.Read(problem);
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        int N = slices.Count;
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v");
        double[] inputGate = problem.Input("i").Data, logF = problem.Input("f").Data.Select(options.LogForget).ToArray();
        bool recurrent = variant == "recurrent";
        int C = GatedLinearKernels.ChunkLength(variant, options.ChunkSize, slices);

        using DeviceBuffer seqs = context.UploadInts(GatedLinearKernels.SequenceTable(slices)),
            rowSlice = context.UploadInts(GatedLinearKernels.RowSlices(slices, B, T)),
            qb = context.Upload(q.Data, precision), kb = context.Upload(k.Data, precision), vb = context.Upload(v.Data, precision),
            fb = context.Upload(logF, precision), ib = context.Upload(inputGate, precision),
            S = context.UploadOrZeros(problem.Optional("initial_state")?.Data, N * H * K * V, precision),
            Nst = context.UploadOrZeros(problem.Optional("initial_normalizer")?.Data, N * H * K, precision),
            Mst = context.UploadOrZeros(problem.Optional("initial_max")?.Data, N * H, precision),
            gate0 = context.Allocate(B * T * H, precision), gate1 = context.Allocate(B * T * H, precision),
            mRow = context.Allocate(B * T * H, precision), bLocal = context.Allocate(B * T * H, precision),
            nrm = context.Allocate(B * T * H, precision), o = context.Zeros(B * T * H * V, precision);
        using (OpenClKernel gates = context.Kernel("Mlstm.cl", "mlstm_gates", precision))
        {
            gates.Arg(0, qb).Arg(1, kb).Arg(2, fb).Arg(3, ib).Arg(4, Nst).Arg(5, Mst).Arg(6, gate0).Arg(7, gate1).Arg(8, mRow)
                .Arg(9, bLocal).Arg(10, nrm).Arg(11, seqs).Arg(12, N).Arg(13, T).Arg(14, H).Arg(15, K).Arg(16, recurrent ? 0 : 1)
                .Arg(17, C).Arg(18, options.Scale, precision).Arg(19, options.Eps, precision);
            context.Run(gates, (long)N * H, local: 64);
        }
        if (recurrent)
        {
            using OpenClKernel state = context.Kernel("Mlstm.cl", "mlstm_recurrent_state", precision);
            state.Arg(0, qb).Arg(1, kb).Arg(2, vb).Arg(3, gate0).Arg(4, gate1).Arg(5, nrm).Arg(6, S).Arg(7, o).Arg(8, seqs)
                .Arg(9, N).Arg(10, T).Arg(11, H).Arg(12, K).Arg(13, V).Arg(14, options.Scale, precision);
            context.Run(state, (long)N * H * V, local: 64);
        }
        else
        {
            using DeviceBuffer A = context.Allocate(GatedLinearKernels.ScoreBufferLength("mlstm", variant, B, T, H, C), precision);
            using (OpenClKernel state = context.Kernel("Mlstm.cl", "mlstm_chunk_state", precision))
            {
                state.Arg(0, qb).Arg(1, kb).Arg(2, vb).Arg(3, ib).Arg(4, bLocal).Arg(5, mRow).Arg(6, gate0).Arg(7, S).Arg(8, o)
                    .Arg(9, seqs).Arg(10, N).Arg(11, T).Arg(12, H).Arg(13, K).Arg(14, V).Arg(15, C).Arg(16, options.Scale, precision);
                context.Run(state, (long)N * H * V, local: 64);
            }
            using (OpenClKernel scores = context.Kernel("Mlstm.cl", "mlstm_chunk_scores", precision))
            {
                scores.Arg(0, qb).Arg(1, kb).Arg(2, ib).Arg(3, bLocal).Arg(4, mRow).Arg(5, A).Arg(6, seqs).Arg(7, rowSlice)
                    .Arg(8, B).Arg(9, T).Arg(10, H).Arg(11, K).Arg(12, C).Arg(13, options.Scale, precision);
                context.Run(scores, (long)B * T * H * C, local: 64);
            }
            using OpenClKernel intra = context.Kernel("Mlstm.cl", "mlstm_chunk_intra", precision);
            intra.Arg(0, vb).Arg(1, A).Arg(2, nrm).Arg(3, mRow).Arg(4, o).Arg(5, seqs).Arg(6, rowSlice)
                .Arg(7, B).Arg(8, T).Arg(9, H).Arg(10, V).Arg(11, C).Arg(12, options.Eps, precision);
            context.Run(intra, (long)B * T * H * V, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, V], context.Download(o)),
            ["final_state"] = new Tensor([N, H, K, V], context.Download(S)),
            ["final_normalizer"] = new Tensor([N, H, K], context.Download(Nst)),
            ["final_max"] = new Tensor([N, H], context.Download(Mst)),
        };
    }
}
