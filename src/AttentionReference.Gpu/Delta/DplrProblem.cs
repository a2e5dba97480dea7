using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Delta;

/// <summary>
/// One call of rwkv7, the delta rule with a diagonal-plus-low-rank transition, as its kernels read it (Rwkv7Kernels.cs):
/// the sizes, the sequences, a view of every tensor in the layout [B,T,H,·] of the inputs, the chunked form's per-pair
/// workspace, and the index arithmetic, named.
/// <code>
/// q, k, a, b, gk [B,T,H,K]   v, o [B,T,H,V]   S [N,H,K,V]: initial_state on entry, final_state on exit
/// </code>
/// The workspace of the chunked kernel, per (sequence, head) pair and chunk of C steps r = 0..n−1 (Rwkv7.Chunked):
/// Γ, Γ⁻, Ã = exp(Γ⁻) ⊙ a, q ⊙ exp(Γ), exp(Γ_{n−1} − Γ) ⊙ k, exp(Γ_{n−1} − Γ) ⊙ b and W [C x K], exp(Γ_{n−1}) [K];
/// T [C x C]; A_ak V and w [C x V].
/// </summary>
internal struct DplrProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The padded time axis T, the heads H, the key width K (Dk) and the value width V (Dv).</summary>
    public int T, H, Dk, Dv;

    /// <summary>The chunk length C of the chunked kernel.</summary>
    public int C;

    /// <summary>o_t = scale · S_tᵀ q_t.</summary>
    public Real Scale;

    /// <summary>The N sequences (batch entry, start, length, state row).</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <summary>Inputs: q, k, v, the low-rank vectors a (reads the state) and b (writes it), the log decay gk.</summary>
    public ArrayView<Real> Q, K, V, A, B, Gk;

    /// <summary>The state S (in: initial, out: final) and the output o (zeros on entry).</summary>
    public ArrayView<Real> S, O;

    /// <summary>The chunked kernel's workspace (see the type's comment): the log sums and the decayed rows.</summary>
    public ArrayView<Real> Γ, ΓBefore, ADecayed, QDecayed, KToEnd, BToEnd, EndDecay;

    /// <summary>The chunked kernel's workspace: T = (I − A_ab)⁻¹, W = T Ã, A_ak V and w = U + W S.</summary>
    public ArrayView<Real> Tm, W, AkV, WNew;

    /// <summary>The (sequence n, head h, channel d) that thread <paramref name="thread"/> of N·H·width threads owns.</summary>
    public readonly (int N, int H, int D) ChannelOf(long thread, int width) =>
        ((int)(thread / width / H), (int)(thread / width % H), (int)(thread % width));

    /// <summary>The row (b·T + start + t)·H + h of step <paramref name="t"/> of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly long Row(SequenceSlice seq, int t, int h) => ((long)seq.Batch * T + seq.Start + t) * H + h;

    /// <summary>The index of q_td, k_td, a_td, b_td and gk_td in <paramref name="row"/>.</summary>
    public readonly long Key(long row, int d) => row * Dk + d;

    /// <summary>The index of v_tc and o_tc in <paramref name="row"/>.</summary>
    public readonly long Value(long row, int c) => row * Dv + c;

    /// <summary>The index of S_dc of <paramref name="seq"/>'s state, head <paramref name="h"/>.</summary>
    public readonly long State(SequenceSlice seq, int h, int d, int c) => (((long)seq.StateIndex * H + h) * Dk + d) * Dv + c;

    /// <summary>The index of row r, key channel d of a [C x K] workspace of <paramref name="pair"/> (Γ, Ã, W, ...).</summary>
    public readonly long ChunkKey(int pair, int r, int d) => ((long)pair * C + r) * Dk + d;

    /// <summary>The index of row r, value column c of a [C x V] workspace of <paramref name="pair"/> (A_ak V, w).</summary>
    public readonly long ChunkValue(int pair, int r, int c) => ((long)pair * C + r) * Dv + c;

    /// <summary>The index of exp(Γ_{n−1}[d]) of <paramref name="pair"/>.</summary>
    public readonly long EndKey(int pair, int d) => (long)pair * Dk + d;

    /// <summary>The index of T_rj of <paramref name="pair"/>.</summary>
    public readonly long TAt(int pair, int r, int j) => ((long)pair * C + r) * C + j;
}
