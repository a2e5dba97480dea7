using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.Delta;

/// <summary>
/// The host of the delta-rule family: delta_rule, gated_delta_rule and kda on the delta rule's step (DeltaProblem), rwkv7
/// on the diagonal-plus-low-rank one (DplrProblem), each from the call bound by the form's own contract and the options
/// its CPU form reads (<see cref="DeltaOptions"/>; rwkv7 <see cref="ScaleAndChunk"/>); then upload, launch, download.
/// <code>
///   delta_rule        no decay (GateWidth 0)                recurrent, chunked, parallel
///   gated_delta_rule  γ_t = g_t on every key channel (1)    recurrent, chunked
///   kda               γ_t = gk_t (K)                        recurrent, chunked
///   rwkv7             a, b, gk                              recurrent, chunked
/// </code>
/// use_qk_l2norm_in_kernel normalises the device copies of q and k first (QkL2NormKernels), as DeltaOptions.Prepare does
/// on the CPU. β headwise [B,T,HV] or per value [B,T,HV,V], as bound. The chunked kernels' workspace is per (sequence,
/// head) pair and per chunk; the parallel variant keeps only U, the size of o. No buffer grows with T².
/// </summary>
internal static class DeltaRules
{
    /// <summary>The forms this host runs.</summary>
    public static IReadOnlySet<string> Forms { get; } =
        new HashSet<string>(["delta_rule", "gated_delta_rule", "kda", "rwkv7"], StringComparer.Ordinal);

    /// <summary>The outputs o and final_state of <paramref name="variant"/> of a call of one of <see cref="Forms"/>.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string form, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real> =>
        form == "rwkv7" ? RunRwkv7<Real>(device, variant, problem) : RunDelta<Real>(device, form, variant, problem);

    private static Dictionary<string, Tensor> RunDelta<Real>(GpuDevice device, string form, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        DeltaOptions options = DeltaOptions.Read(problem);
        var (B, T, H, HV, K, V) = (problem["B"], problem["T"], problem["H"], problem["HV"], problem["K"], problem["V"]);
        SequenceSlice[] sequences = Slices(problem);
        var (gate, gateWidth) = form switch
        {
            "gated_delta_rule" => (problem.Input("g"), 1),
            "kda" => (problem.Input("gk"), K),
            _ => ((Tensor?)null, 0),
        };
        int N = sequences.Length, pairs = N * HV, C = ChunkLength(options.ChunkSize, sequences);
        int betaWidth = problem.ShapeOf("beta").Length == 4 ? V : 1;

        using DeviceBuffers buffers = device.Buffers();
        var x = new DeltaProblem<Real>
        {
            T = T, H = H, HV = HV, Dk = K, Dv = V, GateWidth = gateWidth, BetaWidth = betaWidth, C = C,
            Scale = Real.CreateTruncating(options.Scale),
            Epsilon = Real.CreateTruncating(QkL2Norm.Epsilon),
            Sequences = buffers.Upload(sequences),
            RowSequence = buffers.Upload(RowSequences(sequences, B, T)),
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(problem.Input("k")),
            V = buffers.Upload<Real>(problem.Input("v")), Beta = buffers.Upload<Real>(problem.Input("beta")),
            G = gate is null ? default : buffers.Upload<Real>(gate),
            S = problem.Optional("initial_state") is { } initial ? buffers.Upload<Real>(initial) : buffers.Zeros<Real>((long)pairs * K * V),
            O = buffers.Zeros<Real>((long)B * T * HV * V),
        };
        if (options.UseQkL2Norm && K > 0)
        {
            device.Launch(QkL2NormKernels.Normalise, 2L * B * T * H, x);
        }
        switch (variant)
        {
            case "recurrent":
                device.Launch(DeltaRuleKernels.Recurrent, (long)pairs * V, x);
                break;
            case "parallel":
                x.U = buffers.Zeros<Real>((long)B * T * HV * V);
                device.LaunchGroups<DeltaProblem<Real>, Real>(DeltaRuleKernels.ParallelSolve, pairs, device.GroupSize, x);
                device.LaunchGroups<DeltaProblem<Real>, Real>(DeltaRuleKernels.ParallelOutputs, (long)B * T * HV, device.GroupSize, x);
                device.Launch(DeltaRuleKernels.ParallelState, (long)pairs * K * V, x);
                break;
            default:
                x = WithChunkWorkspace(x, buffers, pairs);
                device.LaunchGroups<DeltaProblem<Real>, Real>(WyChunkwiseKernels.Chunked, pairs, device.GroupSize, x);
                break;
        }
        device.Synchronize();
        return Outputs(x.O, [B, T, HV, V], x.S, [N, HV, K, V]);
    }

    /// <summary>
    /// <paramref name="x"/> with the chunked kernel's workspace (DeltaProblem's comment) for <paramref name="pairs"/>
    /// (sequence, value head) pairs in <paramref name="buffers"/>, sized by x's C, K, V and β width. Also for a form that runs
    /// the chunked delta rule as a branch (nats_l's Gated DeltaNet, a routing chunk at a time).
    /// </summary>
    internal static DeltaProblem<Real> WithChunkWorkspace<Real>(DeltaProblem<Real> x, DeviceBuffers buffers, long pairs)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long chunkKeys = pairs * x.C * x.Dk;
        (x.Γ, x.KDecayed, x.QDecayed, x.KToEnd) = (buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys));
        x.EndDecay = buffers.Zeros<Real>(pairs * x.Dk);
        x.Tm = buffers.Zeros<Real>(pairs * x.BetaWidth * x.C * x.C);
        x.W = buffers.Zeros<Real>(pairs * x.BetaWidth * x.C * x.Dk);
        x.Uc = buffers.Zeros<Real>(pairs * x.C * x.Dv);
        return x;
    }

    private static Dictionary<string, Tensor> RunRwkv7<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        SequenceSlice[] sequences = Slices(problem);
        int N = sequences.Length, pairs = N * H, C = ChunkLength(chunkSize, sequences);

        using DeviceBuffers buffers = device.Buffers();
        var x = new DplrProblem<Real>
        {
            T = T, H = H, Dk = K, Dv = V, C = C,
            Scale = Real.CreateTruncating(scale),
            Sequences = buffers.Upload(sequences),
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(problem.Input("k")), V = buffers.Upload<Real>(problem.Input("v")),
            A = buffers.Upload<Real>(problem.Input("a")), B = buffers.Upload<Real>(problem.Input("b")), Gk = buffers.Upload<Real>(problem.Input("gk")),
            S = problem.Optional("initial_state") is { } initial ? buffers.Upload<Real>(initial) : buffers.Zeros<Real>((long)pairs * K * V),
            O = buffers.Zeros<Real>((long)B * T * H * V),
        };
        if (variant == "recurrent")
        {
            device.Launch(Rwkv7Kernels.Recurrent, (long)pairs * V, x);
        }
        else
        {
            long chunkKeys = (long)pairs * C * K, chunkValues = (long)pairs * C * V;
            (x.Γ, x.ΓBefore, x.ADecayed, x.QDecayed) = (buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys));
            (x.KToEnd, x.BToEnd, x.W) = (buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys), buffers.Zeros<Real>(chunkKeys));
            x.EndDecay = buffers.Zeros<Real>((long)pairs * K);
            x.Tm = buffers.Zeros<Real>((long)pairs * C * C);
            (x.AkV, x.WNew) = (buffers.Zeros<Real>(chunkValues), buffers.Zeros<Real>(chunkValues));
            device.LaunchGroups<DplrProblem<Real>, Real>(Rwkv7Kernels.Chunked, pairs, 2 * device.GroupSize, x);
        }
        device.Synchronize();
        return Outputs(x.O, [B, T, H, V], x.S, [N, H, K, V]);
    }

    /// <summary>The bound call's sequences: batch entry, start and length on T, state row.</summary>
    private static SequenceSlice[] Slices(Problem problem) =>
        problem.Sequences.Select(s => new SequenceSlice(s.Batch, s.Steps("T").Start, s.Steps("T").Length, s.Index)).ToArray();

    /// <summary>The chunk length C: the given one, capped at the longest sequence (which chunks every sequence the same way).</summary>
    private static int ChunkLength(int chunkSize, SequenceSlice[] sequences) =>
        Math.Clamp(chunkSize, 1, Math.Max(1, sequences.Select(s => s.Length).DefaultIfEmpty(0).Max()));

    /// <summary>The sequence of each row b·T + t, or −1 where none covers it.</summary>
    private static int[] RowSequences(SequenceSlice[] sequences, int B, int T)
    {
        var rows = new int[B * T];
        Array.Fill(rows, -1);
        for (int n = 0; n < sequences.Length; n++)
        {
            Array.Fill(rows, n, sequences[n].Batch * T + sequences[n].Start, sequences[n].Length);
        }
        return rows;
    }

    private static Dictionary<string, Tensor> Outputs<Real>(ILGPU.ArrayView<Real> o, int[] oShape, ILGPU.ArrayView<Real> s, int[] sShape)
        where Real : unmanaged, IFloatingPointIeee754<Real> =>
        new() { ["o"] = DeviceBuffers.Download(o, oShape), ["final_state"] = DeviceBuffers.Download(s, sShape) };
}
