using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// The host of mlstm (MlstmKernels.cs): reads the call bound by the form's contract with the CPU form's own options
/// (<see cref="MlstmOptions"/>), reduces the forget gate to log f as the CPU form does (MlstmOptions.LogForget:
/// logsigmoid, or the pre-activation itself for forget_gate=exp), uploads, launches, downloads. Variants: recurrent,
/// chunked (any C ≥ 1) and parallel, which is the chunked kernels with one chunk per sequence. No buffer is quadratic
/// in T: the intra-chunk scores stay in shared memory, a tile at a time.
/// </summary>
internal static class MlstmHost
{
    /// <summary>The outputs o, final_state, final_normalizer and final_max of <paramref name="variant"/> of an mlstm call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        MlstmOptions options = MlstmOptions.Read(problem);
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        SequenceSlice[] sequences = DiagonalDecay.Slices(problem);
        int N = sequences.Length;
        Tensor f = problem.Input("f");
        long rows = (long)B * T * H;

        using DeviceBuffers buffers = device.Buffers();
        var x = new MlstmProblem<Real>
        {
            T = T, H = H, Dk = K, Dv = V,
            C = DiagonalDecay.ChunkLength(variant, options.ChunkSize, sequences),
            Scale = Real.CreateTruncating(options.Scale), Eps = Real.CreateTruncating(options.Eps),
            Sequences = buffers.Upload(sequences),
            RowSequence = buffers.Upload(DiagonalDecay.RowSequences(sequences, B, T)),
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(problem.Input("k")), V = buffers.Upload<Real>(problem.Input("v")),
            I = buffers.Upload<Real>(problem.Input("i")),
            LogF = buffers.Upload<Real>(new Tensor(f.ShapeArray(), f.Data.Select(options.LogForget).ToArray())),
            Memory = Initial<Real>(buffers, problem.Optional("initial_state"), (long)N * H * K * V),
            Normalizer = Initial<Real>(buffers, problem.Optional("initial_normalizer"), (long)N * H * K),
            Max = Initial<Real>(buffers, problem.Optional("initial_max"), (long)N * H),
            O = buffers.Zeros<Real>((long)B * T * H * V),
            RowNormalizer = buffers.Zeros<Real>(rows),
        };
        if (variant == "recurrent")
        {
            (x.Forget, x.Input) = (buffers.Zeros<Real>(rows), buffers.Zeros<Real>(rows));
            device.Launch(MlstmKernels.RecurrentGates, (long)N * H, x);
            device.Launch(MlstmKernels.RecurrentState, (long)N * H * V, x);
        }
        else
        {
            (x.Local, x.MRow, x.Carried) = (buffers.Zeros<Real>(rows), buffers.Zeros<Real>(rows), buffers.Zeros<Real>(rows));
            device.Launch(MlstmKernels.LocalSums, (long)N * H, x);                                                  // b
            device.Launch(MlstmKernels.RowMax, rows, x);                                                           // 1.
            device.Launch(MlstmKernels.ChunkGates, (long)N * H, x);                                                // 1. and 3. (ñ, m)
            device.Launch(MlstmKernels.StatePass, (long)N * H * V, x);                                             // 2. and 3. (C̃)
            device.LaunchGroups<MlstmProblem<Real>, Real>(MlstmKernels.IntraChunk, rows, device.GroupSize, x);   // 2.
        }
        device.Synchronize();
        return new Dictionary<string, Tensor>
        {
            ["o"] = DeviceBuffers.Download(x.O, [B, T, H, V]),
            ["final_state"] = DeviceBuffers.Download(x.Memory, [N, H, K, V]),
            ["final_normalizer"] = DeviceBuffers.Download(x.Normalizer, [N, H, K]),
            ["final_max"] = DeviceBuffers.Download(x.Max, [N, H]),
        };
    }

    /// <summary>The given initial tensor on the device, or <paramref name="length"/> zeros.</summary>
    private static ILGPU.ArrayView<Real> Initial<Real>(DeviceBuffers buffers, Tensor? initial, long length) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        initial is null ? buffers.Zeros<Real>(length) : buffers.Upload<Real>(initial);
}
