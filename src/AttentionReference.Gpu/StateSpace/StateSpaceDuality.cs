using System.Globalization;
using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The host of Mamba-2's SSD (SsdKernels.cs): from the call bound by the form's own contract and
/// <see cref="SsdOptions"/>, upload, launch, download. All three variants:
/// <code>
///   recurrent  StepSizes, Recurrent, Output
///   chunked    StepSizes, ChunkEnds, ChunkStates (2.), StatePass (3.), ChunkOutputs (1. and 4.), Output; any Q ≥ 1
///   quadratic  StepSizes, QuadraticWeights, QuadraticOutput, QuadraticState, Output
/// </code>
/// Every option: dt_bias, dt_softplus, D per head or per channel, z, groups, initial_state, cu_seqlens. The chunked
/// variant's buffers are linear in T (chunk states: one P×N state per chunk and head); the quadratic variant's weights
/// are B·T·H·M values (M the longest sequence), refused as bad input where they would not fit in the device's memory.
/// </summary>
internal static class StateSpaceDuality
{
    /// <summary>The outputs o and final_state of <paramref name="variant"/> of a call of ssd.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var options = SsdOptions.Read(problem);
        var (B, T, H, P, G, N) = (problem["B"], problem["T"], problem["H"], problem["P"], problem["G"], problem["N"]);
        SequenceSlice[] sequences = problem.Sequences.Select(s => new SequenceSlice(s.Batch, s.Steps("T").Start, s.Steps("T").Length, s.Index)).ToArray();
        int S = sequences.Length, longest = Math.Max(1, sequences.Select(s => s.Length).DefaultIfEmpty(0).Max());
        // One chunk per sequence for quadratic; for chunked, Q capped at the longest sequence cuts every sequence as Q does.
        int Q = variant == "quadratic" ? longest : Math.Min(options.ChunkSize, longest);
        var (chunks, firstChunk) = StepBlock.Of(sequences, Q);
        using DeviceBuffers buffers = device.Buffers();
        var x = new SsdProblem<Real>
        {
            T = T, H = H, P = P, G = G, N = N, Q = Q,
            Softplus = options.DtSoftplus ? 1 : 0,
            Sequences = buffers.Upload(sequences), Chunks = buffers.Upload(chunks), FirstChunk = buffers.Upload(firstChunk),
            RowChunk = buffers.Upload(RowChunks(sequences, chunks, B, T)),
            X = buffers.Upload<Real>(problem.Input("x")), Dt = buffers.Upload<Real>(problem.Input("dt")), A = buffers.Upload<Real>(problem.Input("A")),
            B = buffers.Upload<Real>(problem.Input("B")), C = buffers.Upload<Real>(problem.Input("C")),
            Skip = buffers.UploadOptional<Real>(problem, "D"), Z = buffers.UploadOptional<Real>(problem, "z"),
            DtBias = buffers.UploadOptional<Real>(problem, "dt_bias"),
            Δ = buffers.Zeros<Real>((long)B * T * H), Log = buffers.Zeros<Real>((long)B * T * H),
            S = problem.Optional("initial_state") is { } initial ? buffers.Upload<Real>(initial) : buffers.Zeros<Real>((long)S * H * P * N),
            O = buffers.Zeros<Real>((long)B * T * H * P),
        };
        device.Launch(SsdKernels.StepSizes, x.Δ.Length, x);
        switch (variant)
        {
            case "recurrent":
                device.Launch(SsdKernels.Recurrent, (long)S * H * P, x);
                break;
            case "chunked":
                x.WEnd = buffers.Zeros<Real>((long)B * T * H);
                x.ChunkDecay = buffers.Zeros<Real>((long)chunks.Length * H);
                x.ChunkState = buffers.Zeros<Real>((long)chunks.Length * H * P * N);
                device.Launch(SsdKernels.ChunkEnds, (long)chunks.Length * H, x);
                device.Launch(SsdKernels.ChunkStates, (long)chunks.Length * H * P * N, x);                          // 2.
                device.Launch(SsdKernels.StatePass, (long)S * H * P * N, x);                                         // 3.
                device.LaunchGroups<SsdProblem<Real>, Real>(SsdKernels.ChunkOutputs, (long)B * T * H, device.GroupSize, x); // 1. and 4.
                break;
            default:
                x.W = buffers.Zeros<Real>(QuadraticWeights<Real>(device, B, T, H, Q));
                (x.E, x.WFinal, x.WFinal0) = (buffers.Zeros<Real>((long)B * T * H), buffers.Zeros<Real>((long)B * T * H), buffers.Zeros<Real>((long)S * H));
                device.Launch(SsdKernels.QuadraticWeights, (long)S * H * (Q + 1), x);
                device.Launch(SsdKernels.QuadraticOutput, x.O.Length, x);
                device.Launch(SsdKernels.QuadraticState, (long)S * H * P * N, x);
                break;
        }
        device.Launch(SsdKernels.Output, x.O.Length, x);
        device.Synchronize();
        return new Dictionary<string, Tensor>
        {
            ["o"] = DeviceBuffers.Download(x.O, [B, T, H, P]),
            ["final_state"] = DeviceBuffers.Download(x.S, [S, H, P, N]),
        };
    }

    /// <summary>The chunk of each row b·T + t, or −1 where none covers it.</summary>
    private static int[] RowChunks(SequenceSlice[] sequences, StepBlock[] chunks, int B, int T)
    {
        var rows = new int[B * T];
        Array.Fill(rows, -1);
        for (int c = 0; c < chunks.Length; c++)
        {
            SequenceSlice seq = sequences[chunks[c].Sequence];
            Array.Fill(rows, c, (seq.Batch * T) + seq.Start + chunks[c].First, chunks[c].Length);
        }
        return rows;
    }

    /// <summary>B·T·H·M, the quadratic variant's weights, refused where they exceed the device's memory.</summary>
    private static long QuadraticWeights<Real>(GpuDevice device, int B, int T, int H, int M) where Real : unmanaged
    {
        long count = (long)B * T * H * M, bytes = count * System.Runtime.CompilerServices.Unsafe.SizeOf<Real>();
        return bytes <= device.Accelerator.MemorySize
            ? count
            : throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend gpu: ssd quadratic needs weights of B·T·H·M = {count} values (M the longest sequence) ({bytes / (double)(1L << 30):0.0} GiB), more than {device.Description} holds; use the chunked variant"));
    }
}
