using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// The kernel of Forms/Hybrid/NatsL.cs that is nats_l's own: the rule at the end of a routing chunk of the Gated DeltaNet
/// branch (the branch's steps are gated_delta_rule's kernels, DeltaRuleKernels.Recurrent or WyChunkwiseKernels.Chunked,
/// run one routing chunk at a time; the softmax branch is SoftmaxRowKernels.Add under the Routed rule). Same symbols:
/// <code>
///   at the end of every complete chunk c, with S the running state and S̄ the chunk-start state:
///     r_c = 0:  S̄ ← S                                 (the chunk is written into the state)
///     r_c = 1:  S ← exp(δ · Σ_{t∈c} g_t) S̄,  S̄ ← S    (its writes are undone, its decay kept)
/// </code>
/// One thread per (batch entry, head, value column c), which owns column c of S and S̄ (the rule never mixes columns).
/// </summary>
internal static class NatsLKernels
{
    /// <summary>The end-of-chunk rule for column c of one pair's S and S̄, after chunk <see cref="NatsLProblem{Real}.Chunk"/>.</summary>
    public static void EndOfChunk<Real>(Index1D thread, NatsLProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (b, h, c) = x.ChannelOf(thread);
        int start = x.Chunk * x.C;
        if (x.C > x.T - start)
        {
            return; // an incomplete last chunk: its decision comes when it completes; S is the final state
        }
        if (x.Route[x.RouteAt(b, x.Chunk, h)] == 1)
        {
            // A softmax chunk: back to S̄, decayed by the chunk's gates when δ = 1.
            Real sum = Real.Zero;
            for (int t = start; t < start + x.C; t++)
            {
                sum += x.G[x.Row(b, t, h)];
            }
            Real chunkDecay = GpuMath.Exp(x.Delta * sum);
            for (int a = 0; a < x.Dk; a++)
            {
                x.S[x.State(b, h, a, c)] = x.SBar[x.State(b, h, a, c)] * chunkDecay;
            }
        }
        for (int a = 0; a < x.Dk; a++)
        {
            x.SBar[x.State(b, h, a, c)] = x.S[x.State(b, h, a, c)];
        }
    }
}
