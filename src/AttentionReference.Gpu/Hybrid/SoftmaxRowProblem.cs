using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// Softmax rows over a set of keys per query as SoftmaxRowKernels.cs reads them: the sizes, the rule that picks each
/// query's keys, the sequences and a view of every tensor in the layout [B,T,H,·] of the inputs.
/// <code>
/// q, k [B,T,H,K]   v, o [B,T,H,V]   weighted [B,T,H,V]: Σ_j exp(s q_t·k_j − m) v_j of each row (zeros on entry)
/// Window (based):  J_t = { j : t − W &lt; j ≤ t }, steps of t's own sequence
/// Routed (nats_l): J_t = { j ≤ t : c(j) = c(t) or r_{c(j)} = 1 },  c(j) = ⌊j / C⌋,  route r [B,NC,H] as 0 or 1
/// </code>
/// </summary>
internal struct SoftmaxRowProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>based's window: the last W keys up to the query.</summary>
    public const int Window = 0;

    /// <summary>nats_l's softmax branch: the query's own chunk and the softmax-routed chunks before it.</summary>
    public const int Routed = 1;

    /// <summary>The padded time axis T, the heads H, the key width K (Dk) and the value width V (Dv).</summary>
    public int T, H, Dk, Dv;

    /// <summary><see cref="Window"/> or <see cref="Routed"/>.</summary>
    public int Rule;

    /// <summary>The window W (Window), the routing chunk C and the chunks NC per row of the route (Routed).</summary>
    public int W, C, NC;

    /// <summary>The score scale s.</summary>
    public Real Scale;

    /// <summary>The N sequences (batch entry, start, length, state row), and the sequence of each row b·T + t (−1: none).</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> RowSequence;

    /// <summary>The route r [B,NC,H] (Routed).</summary>
    public ArrayView<int> Route;

    /// <summary>Inputs, the output o (added to) and the numerators of the rows (zeros on entry).</summary>
    public ArrayView<Real> Q, K, V, O, Weighted;

    /// <summary>The row (b·T + start + t)·H + h of step <paramref name="t"/> of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly long Row(SequenceSlice seq, int t, int h) => ((long)seq.Batch * T + seq.Start + t) * H + h;

    /// <summary>The index of v_tc and o_tc.</summary>
    public readonly long Value(long row, int c) => row * Dv + c;

    /// <summary>The first key any query t can see: t − W + 1 (Window, at least 0), else 0.</summary>
    public readonly int FirstKey(int t) => Rule == Window ? Math.Max(0, t - W + 1) : 0;

    /// <summary>Whether key j ≤ t is in J_t of query t of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly bool Sees(SequenceSlice seq, int h, int t, int j) =>
        Rule == Window ? j > t - W : j / C == t / C || Route[((long)seq.Batch * NC + j / C) * H + h] == 1;

    /// <summary>s q_t·k_j of rows <paramref name="rowT"/> and <paramref name="rowJ"/>, the dot product first.</summary>
    public readonly Real Score(long rowT, long rowJ)
    {
        Real dot = Real.Zero;
        for (int a = 0; a < Dk; a++)
        {
            dot += Q[rowT * Dk + a] * K[rowJ * Dk + a];
        }
        return Scale * dot;
    }
}
