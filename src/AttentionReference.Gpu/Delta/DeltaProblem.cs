using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Delta;

/// <summary>
/// One call of the delta rule with a decay (delta_rule, gated_delta_rule, kda) as its kernels read it
/// (DeltaRuleKernels.cs, WyChunkwiseKernels.cs, QkL2NormKernels.cs): the sizes, the sequences, a view of every tensor in
/// the layout [B,T,·,·] of the inputs, the chunked form's per-pair workspace, and the index arithmetic, named.
/// <code>
/// q, k [B,T,H,K]   v, o [B,T,HV,V]   beta [B,T,HV] (BetaWidth 1) or [B,T,HV,V] (BetaWidth V)
/// the log decay γ: none (GateWidth 0), g [B,T,HV] (GateWidth 1: the same on every key channel), gk [B,T,HV,K] (GateWidth K)
/// S [N,HV,K,V]: initial_state on entry, final_state on exit       GVA: value head hv reads q/k head hv / (HV/H)
/// </code>
/// The workspace of the chunked kernel, per (sequence, value head) pair and chunk of C steps r = 0..n−1 (WyChunkwise.cs):
/// Γ, K̃ = exp(Γ) ⊙ k, q ⊙ exp(Γ), exp(Γ_{n−1} − Γ) ⊙ k [C x K] and exp(Γ_{n−1}) [K]; T [nb x C x C] and W [nb x C x K],
/// one per β column (nb = BetaWidth); u [C x V]. The parallel variant's U is [B,T,HV,V], the shape of o.
/// </summary>
internal struct DeltaProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The padded time axis T, the q/k heads H, the value heads HV, the key width K (Dk) and the value width V (Dv).</summary>
    public int T, H, HV, Dk, Dv;

    /// <summary>Channels of the log decay: 0 (no decay), 1 (one per head and step) or K (one per key channel).</summary>
    public int GateWidth;

    /// <summary>Values of β per step: 1 (headwise) or V (per value column).</summary>
    public int BetaWidth;

    /// <summary>The chunk length C of the chunked kernel.</summary>
    public int C;

    /// <summary>o_t = scale · S_tᵀ q_t.</summary>
    public Real Scale;

    /// <summary>fla's L2-norm epsilon (x / √(Σx² + ε)).</summary>
    public Real Epsilon;

    /// <summary>The N sequences (batch entry, start, length, state row), and the sequence of each row b·T + t (−1: none).</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> RowSequence;

    /// <summary>Inputs (G: g or gk, empty without decay).</summary>
    public ArrayView<Real> Q, K, V, Beta, G;

    /// <summary>The state S (in: initial, out: final) and the output o (zeros on entry).</summary>
    public ArrayView<Real> S, O;

    /// <summary>The chunked kernel's workspace (see the type's comment): Γ and the decayed key and query rows.</summary>
    public ArrayView<Real> Γ, KDecayed, QDecayed, KToEnd, EndDecay;

    /// <summary>The chunked kernel's workspace: T = (I + A)⁻¹ diag(β) and W = T K̃ per β column, u = U − W S.</summary>
    public ArrayView<Real> Tm, W, Uc;

    /// <summary>The parallel variant's U = (I + tril(diag(β) K Kᵀ, −1))⁻¹ diag(β) (V − K S_0), [B,T,HV,V].</summary>
    public ArrayView<Real> U;

    /// <summary>The number of sequences N.</summary>
    public readonly int N => (int)Sequences.Length;

    /// <summary>Whether the form decays its state (gated_delta_rule, kda).</summary>
    public readonly bool HasDecay => GateWidth > 0;

    /// <summary>The (sequence n, value head hv, channel d) that thread <paramref name="thread"/> of N·HV·width threads owns.</summary>
    public readonly (int N, int Hv, int D) ChannelOf(long thread, int width) =>
        ((int)(thread / width / HV), (int)(thread / width % HV), (int)(thread % width));

    /// <summary>The (sequence n, value head hv) of pair <paramref name="pair"/> = n·HV + hv.</summary>
    public readonly (int N, int Hv) PairOf(int pair) => (pair / HV, pair % HV);

    /// <summary>The q/k row (b·T + start + t)·H + h of step <paramref name="t"/>, read by value head <paramref name="hv"/>.</summary>
    public readonly long KeyRow(SequenceSlice seq, int t, int hv) => ((long)seq.Batch * T + seq.Start + t) * H + hv / (HV / H);

    /// <summary>The v/o/β/gate row (b·T + start + t)·HV + hv of step <paramref name="t"/>.</summary>
    public readonly long ValueRow(SequenceSlice seq, int t, int hv) => ((long)seq.Batch * T + seq.Start + t) * HV + hv;

    /// <summary>The index of q_ta and k_ta in q/k row <paramref name="keyRow"/>.</summary>
    public readonly long Key(long keyRow, int a) => keyRow * Dk + a;

    /// <summary>The index of v_tc, o_tc and U_tc in value row <paramref name="valueRow"/>.</summary>
    public readonly long Value(long valueRow, int c) => valueRow * Dv + c;

    /// <summary>The index of β_t (headwise) or β_t[c] (per value) in value row <paramref name="valueRow"/>.</summary>
    public readonly long BetaAt(long valueRow, int c) => BetaWidth == 1 ? valueRow : valueRow * Dv + c;

    /// <summary>The index of γ_t[a] in value row <paramref name="valueRow"/>: the head's one log decay, or key channel a's.</summary>
    public readonly long Gate(long valueRow, int a) => GateWidth == 1 ? valueRow : valueRow * Dk + a;

    /// <summary>The index of S_ac of <paramref name="seq"/>'s state, value head <paramref name="hv"/>.</summary>
    public readonly long State(SequenceSlice seq, int hv, int a, int c) => (((long)seq.StateIndex * HV + hv) * Dk + a) * Dv + c;

    /// <summary>The index of row r, key channel d of a [C x K] workspace of <paramref name="pair"/> (Γ, K̃, ...).</summary>
    public readonly long ChunkKey(int pair, int r, int d) => ((long)pair * C + r) * Dk + d;

    /// <summary>The index of exp(Γ_{n−1}[d]) of <paramref name="pair"/>.</summary>
    public readonly long EndKey(int pair, int d) => (long)pair * Dk + d;

    /// <summary>The index of T_rj of β column <paramref name="column"/> of <paramref name="pair"/>.</summary>
    public readonly long TAt(int pair, int column, int r, int j) => (((long)pair * BetaWidth + column) * C + r) * C + j;

    /// <summary>The index of W_rd of β column <paramref name="column"/> of <paramref name="pair"/>.</summary>
    public readonly long WAt(int pair, int column, int r, int d) => (((long)pair * BetaWidth + column) * C + r) * Dk + d;

    /// <summary>The index of u_rc of <paramref name="pair"/>.</summary>
    public readonly long UAt(int pair, int r, int c) => ((long)pair * C + r) * Dv + c;
}
