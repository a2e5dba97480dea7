using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The host of mamba's selective scan (MambaKernels.cs): from the call bound by the form's own contract and
/// <see cref="MambaOptions"/>, upload, launch, download. Both variants: recurrent (StepSizes, Recurrent, Output) and scan
/// with the form's block_size (StepSizes, ScanBlocks, ScanCarries, ScanFixUp, Output). Every option: delta_bias,
/// delta_softplus, D, z, time-invariant, shared and grouped B and C, initial_state, cu_seqlens along L. The scan's
/// buffers hold one (α, β, carry) per (block, d, n), linear in L.
/// </summary>
internal static class SelectiveScan
{
    /// <summary>The outputs o and final_state of <paramref name="variant"/> of a call of mamba.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var options = MambaOptions.Read(problem);
        var (B, D, N, L) = (problem["B"], problem["D"], problem["N"], problem["L"]);
        SequenceSlice[] sequences = problem.Sequences.Select(s => new SequenceSlice(s.Batch, s.Steps("L").Start, s.Steps("L").Length, s.Index)).ToArray();
        int S = sequences.Length;
        using DeviceBuffers buffers = device.Buffers();
        var x = new SelectiveScanProblem<Real>
        {
            D = D, N = N, L = L,
            BGroups = Groups(problem, "B"), CGroups = Groups(problem, "C"),
            Softplus = options.DeltaSoftplus ? 1 : 0,
            Sequences = buffers.Upload(sequences),
            U = buffers.Upload<Real>(problem.Input("u")), Delta = buffers.Upload<Real>(problem.Input("delta")),
            A = buffers.Upload<Real>(problem.Input("A")), B = buffers.Upload<Real>(problem.Input("B")), C = buffers.Upload<Real>(problem.Input("C")),
            Skip = buffers.UploadOptional<Real>(problem, "D"), Z = buffers.UploadOptional<Real>(problem, "z"),
            DeltaBias = buffers.UploadOptional<Real>(problem, "delta_bias"),
            Δ = buffers.Zeros<Real>((long)B * D * L),
            S = problem.Optional("initial_state") is { } initial ? buffers.Upload<Real>(initial) : buffers.Zeros<Real>((long)S * D * N),
            O = buffers.Zeros<Real>((long)B * D * L),
        };
        device.Launch(MambaKernels.StepSizes, x.Δ.Length, x);
        if (variant == "recurrent")
        {
            device.Launch(MambaKernels.Recurrent, (long)S * D, x);
        }
        else
        {
            // A block longer than the longest sequence is one block per sequence, as in the reference's BlockedScan.
            int longest = Math.Max(1, sequences.Select(s => s.Length).DefaultIfEmpty(0).Max());
            var (blocks, first) = StepBlock.Of(sequences, Math.Min(options.BlockSize, longest));
            x.Blocks = buffers.Upload(blocks);
            x.FirstBlock = buffers.Upload(first);
            (x.AlphaEnd, x.BetaEnd, x.Carry) = (buffers.Zeros<Real>((long)blocks.Length * D * N),
                buffers.Zeros<Real>((long)blocks.Length * D * N), buffers.Zeros<Real>((long)blocks.Length * D * N));
            device.Launch(MambaKernels.ScanBlocks, (long)blocks.Length * D * N, x);   // 1.
            device.Launch(MambaKernels.ScanCarries, (long)S * D * N, x);              // 2.
            device.Launch(MambaKernels.ScanFixUp, (long)blocks.Length * D, x);        // 3.
        }
        device.Launch(MambaKernels.Output, x.O.Length, x);
        device.Synchronize();
        return new Dictionary<string, Tensor>
        {
            ["o"] = DeviceBuffers.Download(x.O, [B, D, L]),
            ["final_state"] = DeviceBuffers.Download(x.S, [S, D, N]),
        };
    }

    /// <summary>The kernels' groups for B or C: 0 for time-invariant [D,N], 1 for shared [B,N,L], G for [B,G,N,L].</summary>
    private static int Groups(Problem problem, string name) => problem.Input(name).Rank switch { 2 => 0, 3 => 1, _ => problem["G"] };
}
