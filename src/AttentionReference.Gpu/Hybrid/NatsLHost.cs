using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Gpu.Delta;
using AttentionReference.Gpu.GatedLinear;
using AttentionReference.Tensors;
using ILGPU;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// The host of nats_l: reads the call bound by the form's contract with the CPU form's own options
/// (<see cref="NatsLOptions"/>: scale, chunk_size, δ and the route as [B,NC,H], every entry 0 or 1), uploads, launches,
/// downloads. As the CPU form's chunked variant does, the Gated DeltaNet branch is gated_delta_rule's own kernels
/// (DeltaRuleKernels.Recurrent for recurrent, WyChunkwiseKernels.Chunked for chunked: one routing chunk is one WY chunk)
/// run one routing chunk at a time from the chunk-start state, every batch entry and head at once, each chunk followed
/// by NatsLKernels.EndOfChunk; the softmax branch is one SoftmaxRowKernels.Add launch under the Routed rule (the set
/// A_t of the CPU's mask, tested key by key, nothing stored T x T). Both variants compute the same function.
/// </summary>
internal static class NatsLHost
{
    /// <summary>The outputs o_linear, o_softmax and final_state of <paramref name="variant"/> of a nats_l call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        NatsLOptions options = NatsLOptions.Read(problem);
        var (B, T, H, K, V, NC) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"], problem["NC"]);
        int C = options.ChunkSize;
        SequenceSlice[] sequences = DiagonalDecay.Slices(problem);
        if ((long)B * H * V == 0)
        {
            // Every output is empty: nothing to upload or launch, however many routing chunks the time axis has.
            return Outputs(Tensor.Zeros(B, T, H, V), Tensor.Zeros(B, T, H, V), Tensor.Zeros(B, H, K, V));
        }

        using DeviceBuffers buffers = device.Buffers();
        ArrayView<int> route = buffers.Upload(options.Routes.Data.Select(r => (int)r).ToArray());
        Tensor? initialState = problem.Optional("initial_state");

        // Gated DeltaNet branch: gated_delta_rule (one log decay g per head and step, headwise β) over each chunk's steps.
        var gdn = new DeltaProblem<Real>
        {
            T = T, H = H, HV = H, Dk = K, Dv = V, GateWidth = 1, BetaWidth = 1, C = Math.Clamp(C, 1, Math.Max(1, T)),
            Scale = Real.CreateTruncating(options.Scale),
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(problem.Input("k")),
            V = buffers.Upload<Real>(problem.Input("v")), Beta = buffers.Upload<Real>(problem.Input("beta")),
            G = buffers.Upload<Real>(problem.Input("g")),
            S = initialState is null ? buffers.Zeros<Real>((long)B * H * K * V) : buffers.Upload<Real>(initialState),
            O = buffers.Zeros<Real>((long)B * T * H * V),
        };
        if (variant == "chunked")
        {
            gdn = DeltaRules.WithChunkWorkspace(gdn, buffers, (long)B * H);
        }
        var rule = new NatsLProblem<Real>
        {
            T = T, H = H, Dk = K, Dv = V, C = C, NC = NC,
            Delta = Real.CreateTruncating(options.Delta),
            Route = route, G = gdn.G, S = gdn.S,
            SBar = initialState is null ? buffers.Zeros<Real>((long)B * H * K * V) : buffers.Upload<Real>(initialState),
        };
        // Chunk c of every batch entry b as a sequence of its own: steps [c·C, c·C + m), state row b.
        ArrayView<SequenceSlice> chunks = buffers.Upload(
            Enumerable.Range(0, NC).SelectMany(c => Enumerable.Range(0, B).Select(b => new SequenceSlice(b, c * C, Math.Min(C, T - c * C), b))).ToArray());
        for (int c = 0; c < NC; c++)
        {
            gdn.Sequences = chunks.SubView((long)c * B, B);
            if (variant == "chunked")
            {
                device.LaunchGroups<DeltaProblem<Real>, Real>(WyChunkwiseKernels.Chunked, (long)B * H, device.GroupSize, gdn);
            }
            else
            {
                device.Launch(DeltaRuleKernels.Recurrent, (long)B * H * V, gdn);
            }
            rule.Chunk = c;
            device.Launch(NatsLKernels.EndOfChunk, (long)B * H * V, rule);
        }

        // Softmax branch: each query over A_t = { j ≤ t : c(j) = c(t) or r_{c(j)} = 1 }.
        var softmax = new SoftmaxRowProblem<Real>
        {
            T = T, H = H, Dk = K, Dv = V, Rule = SoftmaxRowProblem<Real>.Routed, C = C, NC = NC,
            Scale = Real.CreateTruncating(options.Scale),
            Sequences = buffers.Upload(sequences),
            RowSequence = buffers.Upload(DiagonalDecay.RowSequences(sequences, B, T)),
            Route = route, Q = gdn.Q, K = gdn.K, V = gdn.V,
            O = buffers.Zeros<Real>((long)B * T * H * V),
            Weighted = buffers.Zeros<Real>((long)B * T * H * V),
        };
        device.LaunchGroups<SoftmaxRowProblem<Real>, Real>(SoftmaxRowKernels.Add, (long)B * T * H, device.GroupSize, softmax);
        device.Synchronize();
        return Outputs(DeviceBuffers.Download(gdn.O, [B, T, H, V]), DeviceBuffers.Download(softmax.O, [B, T, H, V]), DeviceBuffers.Download(gdn.S, [B, H, K, V]));
    }

    private static Dictionary<string, Tensor> Outputs(Tensor oLinear, Tensor oSoftmax, Tensor finalState) =>
        new() { ["o_linear"] = oLinear, ["o_softmax"] = oSoftmax, ["final_state"] = finalState };
}
