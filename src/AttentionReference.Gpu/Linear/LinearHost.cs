using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Linear;
using AttentionReference.Gpu.GatedLinear;
using AttentionReference.Tensors;
using ILGPU;

namespace AttentionReference.Gpu.Linear;

/// <summary>
/// The host of linear attention (FeatureMapKernels.cs, LinearKernels.cs): reads the call bound by the form's contract
/// with the CPU form's own options (<see cref="LinearOptions"/>), uploads q, k, v and the states, maps q and k to their
/// features on the device (the identity map uploads no copy; taylor2 keeps q̃ and k̃, K per row, not its 1 + K + K²
/// features), launches, downloads. Variants: recurrent (causal or not),
/// chunked (any C ≥ 1) and parallel, which is the chunked kernels with one chunk per sequence. No buffer is quadratic in
/// T: step 2 keeps its scores in shared memory, a tile at a time.
/// </summary>
internal static class LinearHost
{
    /// <summary>The outputs o, final_state and final_normalizer of <paramref name="variant"/> of a linear call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        using DeviceBuffers buffers = device.Buffers();
        LinearProblem<Real> x = Launch<Real>(device, buffers, variant, problem, LinearOptions.Read(problem));
        device.Synchronize();
        return Outputs(x, problem);
    }

    /// <summary>
    /// Uploads a call's inputs into <paramref name="buffers"/> and launches <paramref name="variant"/> with
    /// <paramref name="options"/>: the problem returned holds o, final_state and final_normalizer (x.O, x.S, x.Z) once the
    /// device is done. For a form that runs linear attention as a branch (based: taylor2 on its own q, k, v, states and
    /// cu_seqlens, read from its problem by linear's names) and adds to o on the device before it comes down.
    /// </summary>
    internal static LinearProblem<Real> Launch<Real>(GpuDevice device, DeviceBuffers buffers, string variant, Problem problem, LinearOptions options)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (B, T, H, K, V, F) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"], problem["F"]);
        SequenceSlice[] sequences = DiagonalDecay.Slices(problem);
        int N = sequences.Length;

        ArrayView<Real> proj = problem.Optional("proj") is { } ω ? buffers.Upload<Real>(ω) : default;
        var x = new LinearProblem<Real>
        {
            T = T, H = H, Dk = K, F = F, Dv = V, Map = (int)options.Map,
            Order = variant == "recurrent" && options.Causal ? LinearProblem<Real>.StepByStep
                : variant != "parallel" && !options.Causal ? LinearProblem<Real>.FinalState
                : LinearProblem<Real>.ChunkByChunk,
            C = DiagonalDecay.ChunkLength(variant, options.ChunkSize, sequences),
            AllKeys = variant == "parallel" && !options.Causal ? 1 : 0,
            Normalize = options.Normalize ? 1 : 0,
            Scale = Real.CreateTruncating(options.Scale), Eps = Real.CreateTruncating(options.Eps), Sqrt2 = Real.CreateTruncating(Math.Sqrt(2)),
            Sequences = buffers.Upload(sequences),
            RowSequence = buffers.Upload(DiagonalDecay.RowSequences(sequences, B, T)),
            Φq = Features(device, buffers, problem.Input("q"), options.Map, F, proj),
            Φk = Features(device, buffers, problem.Input("k"), options.Map, F, proj),
            V = buffers.Upload<Real>(problem.Input("v")),
            S = problem.Optional("initial_state") is { } S0 ? buffers.Upload<Real>(S0) : buffers.Zeros<Real>((long)N * H * F * V),
            Z = problem.Optional("initial_normalizer") is { } z0 ? buffers.Upload<Real>(z0) : buffers.Zeros<Real>((long)N * H * F),
            O = buffers.Zeros<Real>((long)B * T * H * V),
            Den = buffers.Zeros<Real>((long)B * T * H),
        };
        device.Launch(LinearKernels.StatePass, (long)N * H * (V + 1), x);
        if (x.Order == LinearProblem<Real>.ChunkByChunk)
        {
            device.LaunchGroups<LinearProblem<Real>, Real>(LinearKernels.IntraChunk, (long)B * T * H, device.GroupSize, x);
        }
        else
        {
            device.Launch(LinearKernels.Finish, (long)B * T * H * V, x);
        }
        return x;
    }

    /// <summary>o [B,T,H,V], final_state [N,H,F,V] and final_normalizer [N,H,F] of a launched call, downloaded.</summary>
    internal static Dictionary<string, Tensor> Outputs<Real>(LinearProblem<Real> x, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (B, T, H, V, F, N) = (problem["B"], problem["T"], problem["H"], problem["V"], problem["F"], x.N);
        return new Dictionary<string, Tensor>
        {
            ["o"] = DeviceBuffers.Download(x.O, [B, T, H, V]),
            ["final_state"] = DeviceBuffers.Download(x.S, [N, H, F, V]),
            ["final_normalizer"] = DeviceBuffers.Download(x.Z, [N, H, F]),
        };
    }

    /// <summary>
    /// φ(x) [B,T,H,F] of x [B,T,H,K] on the device (performer with ω = <paramref name="proj"/>); x itself for the identity
    /// map; x̃ [B,T,H,K] for taylor2, whose features the kernels compute from it.
    /// </summary>
    private static ArrayView<Real> Features<Real>(GpuDevice device, DeviceBuffers buffers, Tensor x, LinearFeatureMap map, int F, ArrayView<Real> proj)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        if (map == LinearFeatureMap.Identity)
        {
            return buffers.Upload<Real>(x);
        }
        int K = x.Dim(3), width = map == LinearFeatureMap.Taylor2 ? K : F;
        long rows = (long)x.Dim(0) * x.Dim(1) * x.Dim(2);
        var φ = new FeatureMapProblem<Real>
        {
            Dk = K, Width = width, Map = (int)map,
            RootRootK = Real.CreateTruncating(Math.Sqrt(Math.Sqrt(K))),
            SqrtM = Real.CreateTruncating(Math.Sqrt(F)),
            X = buffers.Upload<Real>(x),
            Φ = buffers.Zeros<Real>(rows * width),
            Proj = proj,
        };
        device.Launch(FeatureMapKernels.Features, rows * width, φ);
        return φ.Φ;
    }
}
