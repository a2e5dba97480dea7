using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Mamba.cl: binds the call through the CPU form's contract and reads the same options
/// (<see cref="MambaOptions"/>), uploads, launches, downloads. Both variants of the form: recurrent (one work-item per
/// (sequence, channel), the states in private memory) and scan (the blocked associative scan with the form's
/// block_size: blocks, carries, fix-up). Every option of the form is implemented: delta_bias, delta_softplus, D, z,
/// time-invariant, shared and grouped B and C, initial_state, cu_seqlens.
/// </summary>
internal static class MambaKernels
{
    private static readonly HashSet<string> s_parameters = new(["delta_softplus", "block_size"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("mamba", variant, ["recurrent", "scan"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        var options = MambaOptions.Read(problem);
        int blockSize = variant == "scan" ? options.BlockSize : int.MaxValue;
        Tensor u = problem.Input("u"), delta = problem.Input("delta"), a = problem.Input("A"), bIn = problem.Input("B"), cIn = problem.Input("C");
        Tensor? skipIn = problem.Optional("D"), z = problem.Optional("z");
        var (B, D, N, L) = (problem["B"], problem["D"], problem["N"], problem["L"]);
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem, "L");
        int S = slices.Count;
        var (seqTable, blockTable) = Blocks(slices, Math.Min(blockSize, Math.Max(1, L)));
        int nBlocks = blockTable.Length / 3;

        using DeviceBuffer seqs = context.UploadInts(seqTable), blocks = context.UploadInts(blockTable),
            ub = context.Upload(u.Data, precision), deltaIn = context.Upload(delta.Data, precision),
            bias = context.UploadOrZeros(problem.Optional("delta_bias")?.Data, D, precision), Δ = context.Allocate(B * D * L, precision),
            ab = context.Upload(a.Data, precision), bb = context.Upload(bIn.Data, precision), cb = context.Upload(cIn.Data, precision),
            skip = context.UploadOrZeros(skipIn?.Data, D, precision), zb = context.Upload(z?.Data ?? [], precision),
            state = context.UploadOrZeros(problem.Optional("initial_state")?.Data, S * D * N, precision),
            o = context.Zeros(B * D * L, precision);
        using (OpenClKernel kernel = context.Kernel("Mamba.cl", "mamba_delta", precision))
        {
            kernel.Arg(0, deltaIn).Arg(1, bias).Arg(2, Δ).Arg(3, options.DeltaSoftplus ? 1 : 0).Arg(4, B).Arg(5, D).Arg(6, L);
            context.Run(kernel, (long)B * D * L, local: 64);
        }
        int groupsB = Groups(problem, bIn), groupsC = Groups(problem, cIn);
        if (variant == "recurrent")
        {
            using OpenClKernel kernel = context.Kernel("Mamba.cl", "mamba_recurrent", precision);
            kernel.Arg(0, ub).Arg(1, Δ).Arg(2, ab).Arg(3, bb).Arg(4, groupsB).Arg(5, cb).Arg(6, groupsC).Arg(7, state).Arg(8, o)
                .Arg(9, seqs).Arg(10, S).Arg(11, D).Arg(12, N).Arg(13, L);
            context.Run(kernel, (long)S * D, local: 64);
        }
        else
        {
            int pairs = BlockBufferLength(nBlocks, D, N);
            using DeviceBuffer alphaEnd = context.Allocate(pairs, precision), betaEnd = context.Allocate(pairs, precision),
                carry = context.Allocate(pairs, precision);
            using (OpenClKernel kernel = context.Kernel("Mamba.cl", "mamba_scan_blocks", precision))
            {
                kernel.Arg(0, ub).Arg(1, Δ).Arg(2, ab).Arg(3, bb).Arg(4, groupsB).Arg(5, alphaEnd).Arg(6, betaEnd).Arg(7, seqs)
                    .Arg(8, blocks).Arg(9, nBlocks).Arg(10, D).Arg(11, N).Arg(12, L);
                context.Run(kernel, (long)nBlocks * D * N, local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Mamba.cl", "mamba_scan_carries", precision))
            {
                kernel.Arg(0, alphaEnd).Arg(1, betaEnd).Arg(2, carry).Arg(3, state).Arg(4, seqs).Arg(5, S).Arg(6, D).Arg(7, N);
                context.Run(kernel, (long)S * D * N, local: 64);
            }
            using (OpenClKernel kernel = context.Kernel("Mamba.cl", "mamba_scan_fixup", precision))
            {
                kernel.Arg(0, ub).Arg(1, Δ).Arg(2, ab).Arg(3, bb).Arg(4, groupsB).Arg(5, cb).Arg(6, groupsC).Arg(7, carry).Arg(8, o)
                    .Arg(9, seqs).Arg(10, blocks).Arg(11, nBlocks).Arg(12, D).Arg(13, N).Arg(14, L);
                context.Run(kernel, (long)nBlocks * D, local: 64);
            }
        }
        using (OpenClKernel kernel = context.Kernel("Mamba.cl", "mamba_output", precision))
        {
            kernel.Arg(0, ub).Arg(1, skip).Arg(2, zb).Arg(3, z is null ? 0 : 1).Arg(4, o).Arg(5, B).Arg(6, D).Arg(7, L);
            context.Run(kernel, (long)B * D * L, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, D, L], context.Download(o)),
            ["final_state"] = new Tensor([S, D, N], context.Download(state)),
        };
    }

    /// <summary>The kernels' G for B or C: 0 for time-invariant [D,N], 1 for shared [B,N,L] (one group), G for [B,G,N,L].</summary>
    private static int Groups(Problem problem, Tensor x) => x.Rank switch { 2 => 0, 3 => 1, _ => problem["G"] };

    /// <summary>
    /// The sequence table (batch, start, length, stateIndex, firstBlock, blockCount) and the block table
    /// (sequence, first step, length): blocks of <paramref name="blockSize"/> steps from each sequence's start, the
    /// last one possibly short, as the reference's BlockedScan cuts them.
    /// </summary>
    internal static (int[] Sequences, int[] Blocks) Blocks(IReadOnlyList<SequenceSlice> slices, int blockSize)
    {
        var sequences = new List<int>();
        var blocks = new List<int>();
        for (int s = 0; s < slices.Count; s++)
        {
            SequenceSlice slice = slices[s];
            int first = blocks.Count / 3, count = (slice.Length + blockSize - 1) / blockSize;
            sequences.AddRange([slice.Batch, slice.Start, slice.Length, slice.StateIndex, first, count]);
            for (int j = 0; j < count; j++)
            {
                blocks.AddRange([s, j * blockSize, Math.Min(blockSize, slice.Length - (j * blockSize))]);
            }
        }
        return (sequences.ToArray(), blocks.ToArray());
    }

    /// <summary>Blocks·D·N, the length of the scan's per-block buffers, refused where it exceeds one buffer.</summary>
    private static int BlockBufferLength(int blocks, int channels, int states)
    {
        long length = (long)blocks * channels * states;
        return length <= int.MaxValue
            ? (int)length
            : throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: mamba scan needs per-block buffers of blocks·D·N = {length} elements, more than one buffer holds; use a larger block_size"));
    }
}
