using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// One call of rwkv6 as its kernels read it (Rwkv6Kernels.cs): the sizes, the sequences and a view of every tensor, in
/// the layout [B,T,H,·] of the inputs, and the index arithmetic, named (c a key channel, d a value column).
/// <code>
/// q, k, w [B,T,H,K]   v, o [B,T,H,V]   u [H,K]
/// S [N,H,K,V]: initial_state on entry, final_state on exit (parallel: zeros on entry; S0 holds initial_state)
/// b (chunked only) [B,T,H,K]: b_i = Σ_{r=s..s+i} w_r, the local inclusive log decay of each chunk [s, e)
/// </code>
/// </summary>
internal struct Rwkv6Problem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The padded time axis T, the heads H, the key width K (Dk) and the value width V (Dv).</summary>
    public int T, H, Dk, Dv;

    /// <summary>The chunk length C of the chunked kernels.</summary>
    public int C;

    /// <summary>The parallel kernel's tile: the keys j whose products share memory at once.</summary>
    public int J;

    /// <summary>o_t = scale · q_tᵀ (S_{t−1} + Diag(u) k_t v_tᵀ).</summary>
    public Real Scale;

    /// <summary>The N sequences (batch entry, start, length, state row), and the sequence of each row b·T + t.</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> RowSequence;

    /// <summary>Inputs.</summary>
    public ArrayView<Real> Q, K, V, W, U;

    /// <summary>The state S (in: initial, out: final), the parallel form's initial state S0, and the output o (zeros on entry).</summary>
    public ArrayView<Real> S, S0, O;

    /// <summary>b_i = Σ_{r=s..s+i} w_r within each chunk [s, e).</summary>
    public ArrayView<Real> LocalDecay;

    /// <summary>The number of sequences N.</summary>
    public readonly int N => (int)Sequences.Length;

    /// <summary>The (sequence n, head h, channel) that thread <paramref name="thread"/> of N·H·width threads owns.</summary>
    public static (int N, int H, int D) ChannelOf(int thread, int heads, int width) =>
        (thread / width / heads, thread / width % heads, thread % width);

    /// <summary>The row (b·T + start + t)·H + h of step <paramref name="t"/> of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly long Row(SequenceSlice seq, int t, int h) => ((long)seq.Batch * T + seq.Start + t) * H + h;

    /// <summary>The index of S_cd (and S0_cd) of <paramref name="seq"/>'s state, head <paramref name="h"/>.</summary>
    public readonly long State(SequenceSlice seq, int h, int c, int d) => (((long)seq.StateIndex * H + h) * Dk + c) * Dv + d;

    /// <summary>The index of q_tc, k_tc, w_tc and b_tc.</summary>
    public readonly long Key(long row, int c) => row * Dk + c;

    /// <summary>The index of v_td and o_td.</summary>
    public readonly long Value(long row, int d) => row * Dv + d;

    /// <summary>The index of u_c of head <paramref name="h"/>.</summary>
    public readonly long Bonus(int h, int c) => (long)h * Dk + c;
}
