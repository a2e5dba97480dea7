using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Gpu.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// The host of power attention (PowerKernels.cs): reads the call bound by the form's contract with the CPU form's own
/// options (<see cref="PowerOptions"/>: deg, normalize, eps, scale, chunk_size and the symmetric power map, whose table
/// goes up as it is, so φ is the CPU's entry by entry), uploads, launches, downloads. Variants: recurrent (the state
/// pass step by step: the D × V state in the final_state buffer, one thread per value column, which OpenCL refused),
/// chunked (any C ≥ 1) and quadratic (tiles of keys from the diagonal down, then the final state by the recurrence).
/// Nothing is stored per pair of steps or per feature of a row.
/// </summary>
internal static class PowerHost
{
    /// <summary>The outputs o, final_state and final_normalizer of <paramref name="variant"/> of a power call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        PowerOptions options = PowerOptions.Read(problem);
        var (B, T, H, K, V, D) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"], problem["D"]);
        SequenceSlice[] sequences = DiagonalDecay.Slices(problem);
        int N = sequences.Length;
        if ((long)B * T * H * V == 0 && (long)N * H * D == 0)
        {
            // Every output is empty (K = 0 gives D = 0): nothing to upload or launch, however long the time axis.
            return Outputs(Tensor.Zeros(B, T, H, V), Tensor.Zeros(N, H, D, V), Tensor.Zeros(N, H, D));
        }

        using DeviceBuffers buffers = device.Buffers();
        var x = new PowerProblem<Real>
        {
            T = T, H = H, Dk = K, Dv = V, D = D, P = options.Degree,
            Order = variant switch
            {
                "recurrent" => PowerProblem<Real>.StepByStep,
                "chunked" => PowerProblem<Real>.ChunkByChunk,
                _ => PowerProblem<Real>.StateOnly,
            },
            C = DiagonalDecay.ChunkLength("chunked", options.ChunkSize, sequences),
            Normalize = options.Normalize ? 1 : 0,
            HasInitialState = problem.Has("initial_state") || problem.Has("initial_normalizer") ? 1 : 0,
            Scale = Real.CreateTruncating(options.Scale), Eps = Real.CreateTruncating(options.Eps),
            Sequences = buffers.Upload(sequences),
            RowSequence = buffers.Upload(DiagonalDecay.RowSequences(sequences, B, T)),
            Indices = buffers.Upload(options.Map.Indices.ToArray()),
            Coefficients = buffers.Upload<Real>(new Tensor([D], options.Map.Coefficients.ToArray())),
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(problem.Input("k")),
            V = buffers.Upload<Real>(problem.Input("v")),
            G = problem.Optional("g") is { } g ? buffers.Upload<Real>(g) : default,
            S = problem.Optional("initial_state") is { } S0 ? buffers.Upload<Real>(S0) : buffers.Zeros<Real>((long)N * H * D * V),
            Z = problem.Optional("initial_normalizer") is { } z0 ? buffers.Upload<Real>(z0) : buffers.Zeros<Real>((long)N * H * D),
            O = buffers.Zeros<Real>((long)B * T * H * V),
            Den = buffers.Zeros<Real>((long)B * T * H),
        };
        long stateColumns = (long)N * H * (V + 1), rows = (long)B * T * H;
        switch (variant)
        {
            case "recurrent":
                device.Launch(PowerKernels.StatePass, stateColumns, x);
                device.Launch(PowerKernels.Finish, rows * V, x);
                break;
            case "chunked":
                (x.B, x.ToEnd) = (buffers.Zeros<Real>(rows), buffers.Zeros<Real>(rows));
                device.Launch(PowerKernels.ChunkGates, (long)N * H, x);
                device.Launch(PowerKernels.StatePass, stateColumns, x);
                device.LaunchGroups<PowerProblem<Real>, Real>(PowerKernels.IntraChunk, rows, device.GroupSize, x);
                break;
            default:
                // The quadratic form reads the initial state before the state pass moves it on.
                device.LaunchGroups<PowerProblem<Real>, Real>(PowerKernels.Quadratic, rows, 2 * device.GroupSize, x);
                device.Launch(PowerKernels.StatePass, stateColumns, x);
                break;
        }
        device.Synchronize();
        return Outputs(DeviceBuffers.Download(x.O, [B, T, H, V]), DeviceBuffers.Download(x.S, [N, H, D, V]), DeviceBuffers.Download(x.Z, [N, H, D]));
    }

    private static Dictionary<string, Tensor> Outputs(Tensor o, Tensor finalState, Tensor finalNormalizer) =>
        new() { ["o"] = o, ["final_state"] = finalState, ["final_normalizer"] = finalNormalizer };
}
