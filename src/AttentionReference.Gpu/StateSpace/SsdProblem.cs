using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// One call of Mamba-2's SSD as its kernels read it (SsdKernels.cs): the sizes, the sequences and their chunks, a view
/// of every tensor in the [B,T,H,...] layout, and the index arithmetic, named.
/// <code>
/// x, z, o [B,T,H,P]   dt, Δ, a = Δ·A [B,T,H]   A, dt_bias [H]   D [H] or [H,P]   B, C [B,T,G,N] (head h reads group h/(H/G))
/// S [S,H,P,N]: initial_state in, final_state out
/// chunked:   w_s = exp(Σ_{r=s+1..end} a_r) Δ_s [B,T,H], each chunk's decay exp(Σ a) [chunks,H], its own state, then the
///            state entering it [chunks,H,P,N]
/// quadratic: W_ts [B,T,H,M] (M the longest sequence), E_t = exp(segsum(t, −1)) [B,T,H], the final state's weights of
///            each step [B,T,H] and of the initial state [S,H]
/// </code>
/// </summary>
internal struct SsdProblem<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    /// <summary>The padded time axis T, the heads H, the head dimension P, the groups G and the state size N.</summary>
    public int T, H, P, G, N;

    /// <summary>The chunk length Q (chunked), or the longest sequence M (quadratic: one chunk per sequence).</summary>
    public int Q;

    /// <summary>dt_softplus as 0 or 1 (a kernel argument holds no bool).</summary>
    public int Softplus;

    /// <summary>The S sequences (batch entry, start, length, state row), their chunks, each sequence's first chunk.</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<StepBlock> Chunks;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> FirstChunk;

    /// <summary>The chunk of each row b·T + t.</summary>
    public ArrayView<int> RowChunk;

    /// <summary>Inputs (Skip is ssd's D).</summary>
    public ArrayView<Real> X, Dt, A, B, C, Skip, Z, DtBias;

    /// <summary>Δ and a = Δ·A per step, the state S (in: initial, out: final) and the output o (zeros on entry).</summary>
    public ArrayView<Real> Δ, Log, S, O;

    /// <summary>chunked: the weights to the chunk's end, the chunks' decays and states.</summary>
    public ArrayView<Real> WEnd, ChunkDecay, ChunkState;

    /// <summary>quadratic: the weights W, E, and the final state's weights.</summary>
    public ArrayView<Real> W, E, WFinal, WFinal0;

    /// <summary>The row (b·T + t)·H + h of step t of batch entry b, head h (the index of Δ_t, a_t, w_t, E_t).</summary>
    public readonly long Row(int b, int t, int h) => ((long)b * T + t) * H + h;

    /// <summary>The index of x_t[p], z_t[p] and o_t[p] of <paramref name="row"/>.</summary>
    public readonly long Value(long row, int p) => row * P + p;

    /// <summary>The index of B_t[n] and C_t[n] of step t of batch entry b as head h reads them.</summary>
    public readonly long Projection(int b, int t, int h, int n) => (((long)b * T + t) * G + (h / (H / G))) * N + n;

    /// <summary>The index of h[p, n] of head h of state row <paramref name="stateIndex"/> (or of chunk c's state).</summary>
    public readonly long State(int stateIndex, int h, int p, int n) => (((long)stateIndex * H + h) * P + p) * N + n;

    /// <summary>D_hp: per channel, per head, or 0 if absent.</summary>
    public readonly Real SkipOf(int h, int p) => Skip.Length == 0 ? Real.Zero : Skip.Length == H ? Skip[h] : Skip[(h * P) + p];

    /// <summary>dt_bias_h, 0 if absent.</summary>
    public readonly Real BiasOf(int h) => DtBias.Length > 0 ? DtBias[h] : Real.Zero;
}
