using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// One call of mamba's selective scan as its kernels read it (MambaKernels.cs): the sizes, the sequences and the scan's
/// blocks, a view of every tensor in mamba's channel-first layout, and the index arithmetic, named.
/// <code>
/// u, delta, Δ, z, o [B,D,L]   A [D,N]   D, delta_bias [D] (absent: 0)   S [S,D,N]: initial_state in, final_state out
/// B, C: [D,N] (groups 0: time-invariant) or [B,G,N,L] (groups G; the shared [B,N,L] is G = 1)
/// scan: α, β of each block's end and the carry entering it [blocks,D,N]
/// </code>
/// </summary>
internal struct SelectiveScanProblem<Real> where Real : unmanaged, IFloatingPointIeee754<Real>
{
    /// <summary>The channels D, the state size N and the steps L.</summary>
    public int D, N, L;

    /// <summary>How B and C are laid out: 0 time-invariant [D,N], else the G of [B,G,N,L].</summary>
    public int BGroups, CGroups;

    /// <summary>delta_softplus as 0 or 1 (a kernel argument holds no bool).</summary>
    public int Softplus;

    /// <summary>The S sequences (batch entry, start, length, state row), the scan's blocks and each sequence's first block.</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<StepBlock> Blocks;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> FirstBlock;

    /// <summary>Inputs (Skip is mamba's D).</summary>
    public ArrayView<Real> U, Delta, A, B, C, Skip, Z, DeltaBias;

    /// <summary>Δ, the state S (in: initial, out: final) and the output o (zeros on entry).</summary>
    public ArrayView<Real> Δ, S, O;

    /// <summary>The scan's block ends (α, β) and carries.</summary>
    public ArrayView<Real> AlphaEnd, BetaEnd, Carry;

    /// <summary>The index of step t of channel d of batch entry b in [B,D,L].</summary>
    public readonly long Row(int b, int d, int t) => ((long)b * D + d) * L + t;

    /// <summary>The index of A_dn.</summary>
    public readonly int Mode(int d, int n) => d * N + n;

    /// <summary>The index of (d, n) of <paramref name="seq"/>'s state.</summary>
    public readonly long State(SequenceSlice seq, int d, int n) => ((long)seq.StateIndex * D + d) * N + n;

    /// <summary>The index of (d, n) of block <paramref name="j"/> in the scan's [blocks,D,N] buffers.</summary>
    public readonly long BlockEnd(int j, int d, int n) => ((long)j * D + d) * N + n;

    /// <summary>B_t[n] of channel d of batch entry b.</summary>
    public readonly Real BAt(int b, int d, int n, int t) => Projection(B, BGroups, b, d, n, t);

    /// <summary>C_t[n] of channel d of batch entry b.</summary>
    public readonly Real CAt(int b, int d, int n, int t) => Projection(C, CGroups, b, d, n, t);

    /// <summary>D_d, 0 if absent.</summary>
    public readonly Real SkipOf(int d) => Skip.Length > 0 ? Skip[d] : Real.Zero;

    /// <summary>delta_bias_d, 0 if absent.</summary>
    public readonly Real BiasOf(int d) => DeltaBias.Length > 0 ? DeltaBias[d] : Real.Zero;

    /// <summary>B_dn of a time-invariant projection, else the group's value: channel d reads group d / (D/G).</summary>
    private readonly Real Projection(ArrayView<Real> x, int groups, int b, int d, int n, int t) =>
        groups == 0 ? x[Mode(d, n)] : x[((((long)b * groups) + (d / (D / groups))) * N + n) * L + t];
}
