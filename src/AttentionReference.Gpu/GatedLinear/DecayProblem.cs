using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// One call of the diagonal-decay engine as its kernels read it (GlaKernels.cs, GlaChunkwiseKernels.cs): the sizes,
/// the sequences and a view of every tensor, in the layout [B,T,H,·] of the inputs, and the index arithmetic, named.
/// <code>
/// q, k [B,T,H,K]   v, o [B,T,H,V]   gk [B,T,H,K], or [B,T,H] where the key gate is one value per head (GateWidth 1)
/// gv [B,T,H,V] (HasGv)   S [N,H,K,V]: initial_state on entry, final_state on exit
/// Γ, Ψ (chunked only): gk and gv summed from each chunk's start, the shapes of gk and gv
/// </code>
/// </summary>
internal struct DecayProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The padded time axis T, the heads H, the key width K (Dk) and the value width V (Dv).</summary>
    public int T, H, Dk, Dv;

    /// <summary>Channels of the key gate: K (a gate per key channel) or 1 (one per head and step, the same on every key).</summary>
    public int GateWidth;

    /// <summary>The chunk length C of the chunked kernels (the longest sequence for the parallel variant).</summary>
    public int C;

    /// <summary>o_t = scale · S_tᵀ q_t.</summary>
    public Real Scale;

    /// <summary>The N sequences (batch entry, start, length, state row), and the sequence of each row b·T + t.</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> RowSequence;

    /// <summary>Inputs.</summary>
    public ArrayView<Real> Q, K, V, Gk, Gv;

    /// <summary>The state S (in: initial, out: final) and the output o (zeros on entry).</summary>
    public ArrayView<Real> S, O;

    /// <summary>Γ_t = Σ_{r=s..t} gk_r and Ψ_t = Σ_{r=s..t} gv_r within each chunk [s, e).</summary>
    public ArrayView<Real> Γ, Ψ;

    /// <summary>Whether gv is given (else no value-side decay).</summary>
    public readonly bool HasGv => Gv.Length > 0;

    /// <summary>The number of sequences N.</summary>
    public readonly int N => (int)Sequences.Length;

    /// <summary>The (sequence n, head h, channel d) that thread <paramref name="thread"/> of N·H·width threads owns.</summary>
    public static (int N, int H, int D) ChannelOf(int thread, int heads, int width) =>
        (thread / width / heads, thread / width % heads, thread % width);

    /// <summary>The row (b·T + start + t)·H + h of step <paramref name="t"/> of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly long Row(SequenceSlice seq, int t, int h) => ((long)seq.Batch * T + seq.Start + t) * H + h;

    /// <summary>The index of S_ac of <paramref name="seq"/>'s state, head <paramref name="h"/>.</summary>
    public readonly long State(SequenceSlice seq, int h, int a, int c) => (((long)seq.StateIndex * H + h) * Dk + a) * Dv + c;

    /// <summary>The index of the key gate gk_ta (and of Γ_ta) of <paramref name="row"/>: per key channel, or the head's one value.</summary>
    public readonly long KeyGate(long row, int a) => GateWidth == 1 ? row : row * Dk + a;

    /// <summary>The index of q_ta and k_ta.</summary>
    public readonly long Key(long row, int a) => row * Dk + a;

    /// <summary>The index of v_tc, o_tc, gv_tc and Ψ_tc.</summary>
    public readonly long Value(long row, int c) => row * Dv + c;
}
