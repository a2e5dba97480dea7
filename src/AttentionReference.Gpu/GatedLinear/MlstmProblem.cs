using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// One call of mlstm as its kernels read it (MlstmKernels.cs): the sizes, the options, the sequences and a view of every
/// tensor, in the layout [B,T,H,·] of the inputs, and the index arithmetic, named (a a key channel, d a value column).
/// <code>
/// q, k [B,T,H,K]   v, o [B,T,H,V]   i, log f [B,T,H] (log f = logsigmoid(f), or f: the host's reduction, the CPU's own)
/// C̃ [N,H,K,V], ñ [N,H,K], m [N,H]: the initial state on entry, the final state on exit
/// per row [B,T,H]: recurrent  Forget = exp(log f_t + m_{t−1} − m_t), Input = exp(i_t − m_t), Normalizer = the denominator
///                  chunked    b (the chunk's local log forget sum), MRow = m_r, Carried = exp(ℓ_r* − m_r),
///                             Normalizer = the inter-chunk part of the normaliser, carried_r · (scale·q_r)ᵀ ñ_start
/// </code>
/// </summary>
internal struct MlstmProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The padded time axis T, the heads H, the key width K (Dk) and the value width V (Dv).</summary>
    public int T, H, Dk, Dv;

    /// <summary>The chunk length C of the chunked kernels (the longest sequence for the parallel variant).</summary>
    public int C;

    /// <summary>The query scale, and eps added to the stabilised denominator.</summary>
    public Real Scale, Eps;

    /// <summary>The N sequences (batch entry, start, length, state row), and the sequence of each row b·T + t.</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> RowSequence;

    /// <summary>Inputs: q, k, v, the input gate i and the log forget gate log f.</summary>
    public ArrayView<Real> Q, K, V, I, LogF;

    /// <summary>The stabilised state (in: initial, out: final): the memory C̃, the normaliser ñ and the stabiliser m.</summary>
    public ArrayView<Real> Memory, Normalizer, Max;

    /// <summary>The output o (zeros on entry).</summary>
    public ArrayView<Real> O;

    /// <summary>Per row: the recurrent step's gates, the chunked form's b, m_r, carried_r, and either form's normaliser part.</summary>
    public ArrayView<Real> Forget, Input, Local, MRow, Carried, RowNormalizer;

    /// <summary>The number of sequences N.</summary>
    public readonly int N => (int)Sequences.Length;

    /// <summary>The (sequence n, head h, channel) that thread <paramref name="thread"/> of N·H·width threads owns.</summary>
    public static (int N, int H, int D) ChannelOf(int thread, int heads, int width) =>
        (thread / width / heads, thread / width % heads, thread % width);

    /// <summary>The row (b·T + start + t)·H + h of step <paramref name="t"/> of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly long Row(SequenceSlice seq, int t, int h) => ((long)seq.Batch * T + seq.Start + t) * H + h;

    /// <summary>The index of (m of) <paramref name="seq"/>'s state, head <paramref name="h"/>.</summary>
    public readonly long Pair(SequenceSlice seq, int h) => (long)seq.StateIndex * H + h;

    /// <summary>The index of C̃_ad of <paramref name="seq"/>'s state, head <paramref name="h"/>.</summary>
    public readonly long State(SequenceSlice seq, int h, int a, int d) => (Pair(seq, h) * Dk + a) * Dv + d;

    /// <summary>The index of ñ_a of <paramref name="seq"/>'s state, head <paramref name="h"/>.</summary>
    public readonly long NormalizerOf(SequenceSlice seq, int h, int a) => Pair(seq, h) * Dk + a;

    /// <summary>The index of q_ta and k_ta.</summary>
    public readonly long Key(long row, int a) => row * Dk + a;

    /// <summary>The index of v_td and o_td.</summary>
    public readonly long Value(long row, int d) => row * Dv + d;

    /// <summary>(scale·q_r)ᵀ k_j: the dot of the scaled query of <paramref name="row"/> with the key of <paramref name="rowJ"/>.</summary>
    public readonly Real ScaledDot(long row, long rowJ)
    {
        Real dot = Real.Zero;
        for (int a = 0; a < Dk; a++)
        {
            dot += Q[Key(row, a)] * Scale * K[Key(rowJ, a)];
        }
        return dot;
    }

    /// <summary>ℓ_rj = i_j + b_r − b_j, the log gate of key j in row r of one chunk.</summary>
    public readonly Real LogGate(long row, long rowJ) => I[rowJ] + Local[row] - Local[rowJ];
}
