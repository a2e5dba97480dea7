using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// The host of the diagonal-decay engine (GlaKernels.cs, GlaChunkwiseKernels.cs): gla, simple_gla, retention and hgrn2,
/// each reduced to the engine's inputs exactly as its CPU form reduces it to GlaChunkwise, from the call bound by the
/// form's own contract; then upload, launch, download.
/// <code>
///   gla         k, gk (per key channel), gv if given
///   simple_gla  k, gk = g (one gate per head and step: the kernels read it on every key channel, as OnEveryKey)
///   retention   k, gk = log γ_h (per head, every step)
///   hgrn2       k = 1 − exp(gk), gk
/// </code>
/// Variants: recurrent (GlaKernels.Recurrent), chunked (GlaChunkwiseKernels with any C ≥ 1) and parallel, which is the
/// chunked kernels with one chunk per sequence, as GlaChunkwise.Parallel is. No buffer is quadratic in T: step 2 keeps
/// its scores in shared memory, a tile at a time.
/// </summary>
internal static class DiagonalDecay
{
    /// <summary>The forms this engine runs.</summary>
    public static IReadOnlySet<string> Forms { get; } = new HashSet<string>(["gla", "simple_gla", "retention", "hgrn2"], StringComparer.Ordinal);

    /// <summary>The outputs o and final_state of <paramref name="variant"/> of a call of one of <see cref="Forms"/>.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string form, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        SequenceSlice[] sequences = Slices(problem);
        var (k, gk, gateWidth) = form switch
        {
            "simple_gla" => (problem.Input("k"), problem.Input("g"), 1),
            "retention" => (problem.Input("k"), LogGammas(problem, B, T, H), 1),
            "hgrn2" => (Map(problem.Input("gk"), gate => 1 - Math.Exp(gate)), problem.Input("gk"), K),
            _ => (problem.Input("k"), problem.Input("gk"), K),
        };
        Tensor? gv = form == "gla" ? problem.Optional("gv") : null;
        int N = sequences.Length;

        using DeviceBuffers buffers = device.Buffers();
        var x = new DecayProblem<Real>
        {
            T = T, H = H, Dk = K, Dv = V, GateWidth = gateWidth,
            C = ChunkLength(variant, problem.Get(Specs.ChunkSize), sequences),
            Scale = Real.CreateTruncating(Specs.ScaleOf(problem)),
            Sequences = buffers.Upload(sequences),
            RowSequence = buffers.Upload(RowSequences(sequences, B, T)),
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(k), V = buffers.Upload<Real>(problem.Input("v")),
            Gk = buffers.Upload<Real>(gk), Gv = gv is null ? default : buffers.Upload<Real>(gv),
            S = problem.Optional("initial_state") is { } initial ? buffers.Upload<Real>(initial) : buffers.Zeros<Real>((long)N * H * K * V),
            O = buffers.Zeros<Real>((long)B * T * H * V),
        };
        if (variant == "recurrent")
        {
            device.Launch(GlaKernels.Recurrent, (long)N * H * V, x);
        }
        else
        {
            x.Γ = buffers.Zeros<Real>(gk.Length);
            x.Ψ = gv is null ? default : buffers.Zeros<Real>(gv.Length);
            device.Launch(GlaChunkwiseKernels.KeyGateSums, (long)N * H * gateWidth, x);                      // 0.
            if (gv is not null)
            {
                device.Launch(GlaChunkwiseKernels.ValueGateSums, (long)N * H * V, x);                          // 0.
            }
            device.Launch(GlaChunkwiseKernels.StatePass, (long)N * H * V, x);                                  // 1. and 3.
            device.LaunchGroups<DecayProblem<Real>, Real>(GlaChunkwiseKernels.IntraChunk, (long)B * T * H, device.GroupSize, x); // 2.
        }
        device.Synchronize();
        return new Dictionary<string, Tensor>
        {
            ["o"] = DeviceBuffers.Download(x.O, [B, T, H, V]),
            ["final_state"] = DeviceBuffers.Download(x.S, [N, H, K, V]),
        };
    }

    /// <summary>The sequences of a bound call (batch entries, or cu_seqlens' sequences) as the kernels' slices of the time axis T.</summary>
    internal static SequenceSlice[] Slices(Problem problem) =>
        problem.Sequences.Select(s => new SequenceSlice(s.Batch, s.Steps("T").Start, s.Steps("T").Length, s.Index)).ToArray();

    /// <summary>
    /// The chunk length C of the chunked kernels: one chunk per sequence for parallel (the longest sequence); for chunked
    /// the given C, capped at the longest sequence (which chunks every sequence the same way).
    /// </summary>
    internal static int ChunkLength(string variant, int chunkSize, SequenceSlice[] sequences)
    {
        int longest = Math.Max(1, sequences.Select(s => s.Length).DefaultIfEmpty(0).Max());
        return variant == "parallel" ? longest : Math.Clamp(chunkSize, 1, longest);
    }

    /// <summary>The sequence of each row b·T + t, or −1 where none covers it.</summary>
    internal static int[] RowSequences(SequenceSlice[] sequences, int B, int T)
    {
        var rows = new int[B * T];
        Array.Fill(rows, -1);
        for (int n = 0; n < sequences.Length; n++)
        {
            Array.Fill(rows, n, sequences[n].Batch * T + sequences[n].Start, sequences[n].Length);
        }
        return rows;
    }

    /// <summary>Retention's key gate g[b, t, h] = log γ_h, with γ as its CPU form reads it.</summary>
    private static Tensor LogGammas(Problem problem, int B, int T, int H)
    {
        double[] γ = Retention.Gammas(problem);
        var g = Tensor.Zeros(B, T, H);
        for (int i = 0; i < g.Length; i++)
        {
            g.Data[i] = Math.Log(γ[i % H]);
        }
        return g;
    }

    private static Tensor Map(Tensor x, Func<double, double> f) => new(x.ShapeArray(), x.Data.Select(f).ToArray());
}
