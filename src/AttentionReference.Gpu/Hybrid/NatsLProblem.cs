using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// nats_l's end-of-chunk rule as NatsLKernels.EndOfChunk reads it: the sizes, the chunk just finished, δ, and the views
/// it reads and writes.
/// <code>
/// g [B,T,H]   route [B,NC,H] as 0 or 1   S, S̄ [B,H,K,V]: the running state (gated_delta_rule's kernels' S) and the chunk-start state
/// </code>
/// </summary>
internal struct NatsLProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The time axis T, the heads H, the key width K (Dk), the value width V (Dv), the routing chunk C and the chunks NC.</summary>
    public int T, H, Dk, Dv, C, NC;

    /// <summary>The chunk whose end this launch handles.</summary>
    public int Chunk;

    /// <summary>δ = decay_for_non_gdn_blocks: 1 or 0.</summary>
    public Real Delta;

    /// <summary>The route r [B,NC,H].</summary>
    public ArrayView<int> Route;

    /// <summary>The log decay g, the running state S and the chunk-start state S̄.</summary>
    public ArrayView<Real> G, S, SBar;

    /// <summary>The (batch entry b, head h, column c) that thread <paramref name="thread"/> of B·H·V threads owns.</summary>
    public readonly (int B, int H, int C) ChannelOf(long thread) => ((int)(thread / Dv / H), (int)(thread / Dv % H), (int)(thread % Dv));

    /// <summary>The row (b·T + t)·H + h of g.</summary>
    public readonly long Row(int b, int t, int h) => ((long)b * T + t) * H + h;

    /// <summary>The index of r_c of batch entry <paramref name="b"/>, head <paramref name="h"/>.</summary>
    public readonly long RouteAt(int b, int chunk, int h) => ((long)b * NC + chunk) * H + h;

    /// <summary>The index of S_ac (and S̄_ac) of batch entry <paramref name="b"/>, head <paramref name="h"/>.</summary>
    public readonly long State(int b, int h, int a, int c) => (((long)b * H + h) * Dk + a) * Dv + c;
}
