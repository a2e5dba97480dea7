using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Ssd.cl: binds the call through the CPU form's contract and reads the same options
/// (<see cref="SsdOptions"/>), uploads, launches, downloads. All three variants:
/// recurrent (one work-item per (sequence, head, head-dim column), its state row in private memory), chunked (any
/// Q ≥ 1: ssd_minimal.py's four steps, parallel over chunks except the state passing, sequential over the chunks of
/// each (sequence, head)) and quadratic (the segment-sum form over whole sequences, with its own kernels: its segment
/// sums grow with t, not from l down as the chunked ones, so the chunked kernels with one chunk would not be it term
/// for term; its weight buffer is quadratic in T, as the form is). Every option of the form is implemented: dt_bias,
/// dt_softplus, D per head or per channel, z, groups, initial_state, cu_seqlens.
/// </summary>
internal static class SsdKernels
{
    private static readonly HashSet<string> s_parameters = new(["dt_softplus", "chunk_size"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("ssd", variant, ["chunked", "quadratic", "recurrent"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        var options = SsdOptions.Read(problem);
        int chunkSize = variant == "chunked" ? options.ChunkSize : int.MaxValue;
        Tensor x = problem.Input("x"), dt = problem.Input("dt"), a = problem.Input("A"), bIn = problem.Input("B"), cIn = problem.Input("C");
        Tensor? skipIn = problem.Optional("D"), z = problem.Optional("z");
        var (B, T, H, P, G, N) = (problem["B"], problem["T"], problem["H"], problem["P"], problem["G"], problem["N"]);
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        int S = slices.Count;
        // Q capped at the longest sequence cuts every sequence the same way and keeps the score buffer no longer than needed.
        int Q = GatedLinearKernels.ChunkLength("chunked", chunkSize, slices);
        var (seqTable, chunkTable) = MambaKernels.Blocks(slices, Q);
        int nChunks = chunkTable.Length / 3;
        int[] rowChunk = RowChunks(slices, chunkTable, B, T);
        for (int c = 0; c < nChunks; c++)
        {
            // (sequence, first step, length) → (batch, first row, length): the kernels address rows b·T + t.
            SequenceSlice slice = slices[chunkTable[3 * c]];
            (chunkTable[3 * c], chunkTable[3 * c + 1]) = (slice.Batch, slice.Start + chunkTable[3 * c + 1]);
        }

        using DeviceBuffer seqs = context.UploadInts(seqTable), chunks = context.UploadInts(chunkTable), rows = context.UploadInts(rowChunk),
            xb = context.Upload(x.Data, precision), dtIn = context.Upload(dt.Data, precision), ab = context.Upload(a.Data, precision),
            bias = context.UploadOrZeros(problem.Optional("dt_bias")?.Data, H, precision),
            Δ = context.Allocate(B * T * H, precision), log = context.Allocate(B * T * H, precision),
            bb = context.Upload(bIn.Data, precision), cb = context.Upload(cIn.Data, precision),
            skip = context.UploadOrZeros(skipIn?.Data, H, precision), zb = context.Upload(z?.Data ?? [], precision),
            state = context.UploadOrZeros(problem.Optional("initial_state")?.Data, S * H * P * N, precision),
            o = context.Zeros(B * T * H * P, precision);
        using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_delta", precision))
        {
            kernel.Arg(0, dtIn).Arg(1, bias).Arg(2, ab).Arg(3, Δ).Arg(4, log).Arg(5, options.DtSoftplus ? 1 : 0).Arg(6, B).Arg(7, T).Arg(8, H);
            context.Run(kernel, (long)B * T * H, local: 64);
        }
        if (variant == "recurrent")
        {
            using OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_recurrent", precision);
            kernel.Arg(0, xb).Arg(1, Δ).Arg(2, log).Arg(3, bb).Arg(4, cb).Arg(5, state).Arg(6, o).Arg(7, seqs)
                .Arg(8, S).Arg(9, T).Arg(10, H).Arg(11, P).Arg(12, G).Arg(13, N);
            context.Run(kernel, (long)S * H * P, local: 64);
        }
        else if (variant == "quadratic")
        {
            int M = Q; // the longest sequence (one chunk per sequence)
            using DeviceBuffer W = context.Allocate(GatedLinearKernels.ScoreBufferLength("ssd", variant, B, T, H, M), precision),
                E = context.Allocate(B * T * H, precision), wFinal = context.Allocate(B * T * H, precision),
                wFinal0 = context.Allocate(S * H, precision), rowSeq = context.UploadInts(GatedLinearKernels.RowSlices(slices, B, T));
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_quadratic_weights", precision))
            {
                kernel.Arg(0, Δ).Arg(1, log).Arg(2, bb).Arg(3, cb).Arg(4, W).Arg(5, E).Arg(6, wFinal).Arg(7, wFinal0).Arg(8, seqs)
                    .Arg(9, S).Arg(10, T).Arg(11, H).Arg(12, G).Arg(13, N).Arg(14, M);
                context.Run(kernel, (long)S * H * (M + 1), local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_quadratic_output", precision))
            {
                kernel.Arg(0, xb).Arg(1, cb).Arg(2, W).Arg(3, E).Arg(4, state).Arg(5, o).Arg(6, seqs).Arg(7, rowSeq)
                    .Arg(8, B).Arg(9, T).Arg(10, H).Arg(11, P).Arg(12, G).Arg(13, N).Arg(14, M);
                context.Run(kernel, (long)B * T * H * P, local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_quadratic_state", precision))
            {
                kernel.Arg(0, xb).Arg(1, bb).Arg(2, wFinal).Arg(3, wFinal0).Arg(4, state).Arg(5, seqs)
                    .Arg(6, S).Arg(7, T).Arg(8, H).Arg(9, P).Arg(10, G).Arg(11, N);
                context.Run(kernel, (long)S * H * P * N, local: 64);
            }
        }
        else
        {
            using DeviceBuffer chunkState = context.Allocate(ChunkStateLength(nChunks, H, P, N), precision),
                chunkDecay = context.Allocate(nChunks * H, precision), wEnd = context.Allocate(B * T * H, precision),
                W = context.Allocate(GatedLinearKernels.ScoreBufferLength("ssd", variant, B, T, H, Q), precision);
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_chunk_weights", precision))
            {
                kernel.Arg(0, Δ).Arg(1, log).Arg(2, wEnd).Arg(3, chunkDecay).Arg(4, chunks).Arg(5, nChunks).Arg(6, T).Arg(7, H);
                context.Run(kernel, (long)nChunks * H, local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_chunk_state", precision))
            {
                kernel.Arg(0, xb).Arg(1, wEnd).Arg(2, bb).Arg(3, chunkState).Arg(4, chunks)
                    .Arg(5, nChunks).Arg(6, T).Arg(7, H).Arg(8, P).Arg(9, G).Arg(10, N);
                context.Run(kernel, (long)nChunks * H * P * N, local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_state_pass", precision))
            {
                kernel.Arg(0, chunkState).Arg(1, chunkDecay).Arg(2, state).Arg(3, seqs).Arg(4, S).Arg(5, H).Arg(6, P).Arg(7, N);
                context.Run(kernel, (long)S * H * P * N, local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_chunk_scores", precision))
            {
                kernel.Arg(0, Δ).Arg(1, log).Arg(2, bb).Arg(3, cb).Arg(4, W).Arg(5, chunks).Arg(6, rows)
                    .Arg(7, B).Arg(8, T).Arg(9, H).Arg(10, G).Arg(11, N).Arg(12, Q);
                context.Run(kernel, (long)B * T * H * Q, local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_chunk_output", precision))
            {
                kernel.Arg(0, xb).Arg(1, log).Arg(2, cb).Arg(3, W).Arg(4, chunkState).Arg(5, o).Arg(6, chunks).Arg(7, rows)
                    .Arg(8, B).Arg(9, T).Arg(10, H).Arg(11, P).Arg(12, G).Arg(13, N).Arg(14, Q);
                context.Run(kernel, (long)B * T * H * P, local: 64);
            }
        }
        using (OpenClKernel kernel = context.Kernel("Ssd.cl", "ssd_output", precision))
        {
            kernel.Arg(0, xb).Arg(1, skip).Arg(2, skipIn is { Rank: 2 } ? 1 : 0).Arg(3, zb).Arg(4, z is null ? 0 : 1).Arg(5, o)
                .Arg(6, B).Arg(7, T).Arg(8, H).Arg(9, P);
            context.Run(kernel, (long)B * T * H * P, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, P], context.Download(o)),
            ["final_state"] = new Tensor([S, H, P, N], context.Download(state)),
        };
    }

    /// <summary>The chunk of each row b·T + t (every row is in one: sequences tile the rows), −1 for none.</summary>
    private static int[] RowChunks(IReadOnlyList<SequenceSlice> slices, int[] chunkTable, int batch, int time)
    {
        var rows = new int[batch * time];
        Array.Fill(rows, -1);
        for (int c = 0; c < chunkTable.Length / 3; c++)
        {
            SequenceSlice slice = slices[chunkTable[3 * c]];
            for (int l = 0; l < chunkTable[3 * c + 2]; l++)
            {
                rows[(slice.Batch * time) + slice.Start + chunkTable[3 * c + 1] + l] = c;
            }
        }
        return rows;
    }

    /// <summary>Chunks·H·P·N, the length of the chunk-state buffer, refused where it exceeds one buffer.</summary>
    private static int ChunkStateLength(int chunks, int heads, int p, int n)
    {
        long length = (long)chunks * heads * p * n;
        return length <= int.MaxValue
            ? (int)length
            : throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: ssd chunked needs chunk states of chunks·H·P·N = {length} elements, more than one buffer holds; use a larger chunk_size"));
    }
}
