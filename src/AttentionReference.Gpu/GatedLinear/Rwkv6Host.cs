using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// The host of rwkv6 (Rwkv6Kernels.cs): reads the call bound by the form's contract (scale and chunk_size as the CPU
/// form reads them), uploads, launches, downloads. Variants: recurrent, chunked (any C ≥ 1) and parallel, the unrolled
/// sum of the CPU form (its decay accumulated backwards from t − 1, which is not the chunked computation with C = T
/// term for term, so it has kernels of its own). No buffer is quadratic in T: scores and products stay in shared memory.
/// </summary>
internal static class Rwkv6Host
{
    /// <summary>Shared memory the parallel kernel's tile of products may take per group, where the device allows that much.</summary>
    private const int ParallelTileBytes = 16 * 1024;

    /// <summary>The outputs o and final_state of <paramref name="variant"/> of an rwkv6 call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        SequenceSlice[] sequences = DiagonalDecay.Slices(problem);
        int N = sequences.Length;
        Tensor? initial = problem.Optional("initial_state");

        using DeviceBuffers buffers = device.Buffers();
        var x = new Rwkv6Problem<Real>
        {
            T = T, H = H, Dk = K, Dv = V,
            C = DiagonalDecay.ChunkLength(variant, chunkSize, sequences),
            Scale = Real.CreateTruncating(scale),
            Sequences = buffers.Upload(sequences),
            RowSequence = buffers.Upload(DiagonalDecay.RowSequences(sequences, B, T)),
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(problem.Input("k")), V = buffers.Upload<Real>(problem.Input("v")),
            W = buffers.Upload<Real>(problem.Input("w")), U = buffers.Upload<Real>(problem.Input("u")),
            O = buffers.Zeros<Real>((long)B * T * H * V),
        };
        switch (variant)
        {
            case "recurrent":
                x.S = initial is null ? buffers.Zeros<Real>((long)N * H * K * V) : buffers.Upload<Real>(initial);
                device.Launch(Rwkv6Kernels.Recurrent, (long)N * H * V, x);
                break;
            case "parallel":
                x.S0 = initial is null ? buffers.Zeros<Real>((long)N * H * K * V) : buffers.Upload<Real>(initial);
                x.S = buffers.Zeros<Real>((long)N * H * K * V);
                x.J = ParallelTile(device, K, System.Runtime.CompilerServices.Unsafe.SizeOf<Real>());
                device.LaunchGroups<Rwkv6Problem<Real>, Real>(Rwkv6Kernels.Parallel, (long)B * T * H, x.J * (K + 1) + K, x);
                device.Launch(Rwkv6Kernels.ParallelState, (long)N * H * K, x);
                break;
            default:
                x.S = initial is null ? buffers.Zeros<Real>((long)N * H * K * V) : buffers.Upload<Real>(initial);
                x.LocalDecay = buffers.Zeros<Real>((long)B * T * H * K);
                device.Launch(Rwkv6Kernels.LocalDecaySums, (long)N * H * K, x);                                       // 0.
                device.Launch(Rwkv6Kernels.StatePass, (long)N * H * V, x);                                            // 1. and 4.
                device.LaunchGroups<Rwkv6Problem<Real>, Real>(Rwkv6Kernels.IntraChunk, (long)B * T * H, device.GroupSize, x); // 2. and 3.
                break;
        }
        device.Synchronize();
        return new Dictionary<string, Tensor>
        {
            ["o"] = DeviceBuffers.Download(x.O, [B, T, H, V]),
            ["final_state"] = DeviceBuffers.Download(x.S, [N, H, K, V]),
        };
    }

    /// <summary>
    /// The parallel kernel's tile J: as many keys as <see cref="ParallelTileBytes"/> (or the device's shared memory per
    /// group, if less) holds next to the decays d [K], at most a group's threads, at least 1.
    /// </summary>
    private static int ParallelTile(GpuDevice device, int K, int realBytes)
    {
        long budget = Math.Min(ParallelTileBytes, device.Accelerator.MaxSharedMemoryPerGroup) / realBytes;
        return (int)Math.Clamp((budget - K) / (K + 1), 1, device.GroupSize);
    }
}
