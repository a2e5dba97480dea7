using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// One call of power attention as its kernels read it (PowerKernels.cs): the sizes, the options, the sequences, the
/// symmetric power map's table and a view of every tensor in the layout [B,T,H,·] of the inputs, and the index
/// arithmetic, named.
/// <code>
/// q, k [B,T,H,K]   v, o [B,T,H,V]   g [B,T,H] (empty: no gates)
/// Indices [D·p], Coefficients [D]: SymmetricPower's table, φ(x)_α = coef_α · Π_r x_{a_r} (the CPU map's own entries)
/// S [N,H,D,V], z [N,H,D]: initial_state, initial_normalizer on entry, final_state, final_normalizer on exit
/// den [B,T,H]: each row's denominator before eps
/// b [B,T,H]: the chunked variant's b_t = g_s + … + g_t from its chunk's start s; ToEnd [B,T,H]: exp(b_last − b_t)
/// </code>
/// The normaliser is computed as the numerator is, with a column of ones for the values (as the CPU form's products
/// do): value column c = V of a pass is z and den, columns c &lt; V are S and o.
/// </summary>
internal struct PowerProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The recurrent order: step t enters S and z, then o_t reads them.</summary>
    public const int StepByStep = 0;

    /// <summary>The chunked order: each chunk's queries read the state entering it, then the chunk enters it.</summary>
    public const int ChunkByChunk = 1;

    /// <summary>The quadratic variant's final state: every step enters S and z, nothing reads them.</summary>
    public const int StateOnly = 2;

    /// <summary>The padded time axis T, the heads H, the key width K (Dk), the value width V (Dv), D = C(K+p−1, p) and p.</summary>
    public int T, H, Dk, Dv, D, P;

    /// <summary><see cref="StepByStep"/>, <see cref="ChunkByChunk"/> or <see cref="StateOnly"/>.</summary>
    public int Order;

    /// <summary>The chunk length C of the chunked variant.</summary>
    public int C;

    /// <summary>1 where o = n / (d + eps), 0 where o = n.</summary>
    public int Normalize;

    /// <summary>1 where the call gave initial_state or initial_normalizer (the quadratic variant reads them), else 0.</summary>
    public int HasInitialState;

    /// <summary>The scale s of the weights (s q·k)^p and of φ(s q), and the normaliser's eps.</summary>
    public Real Scale, Eps;

    /// <summary>The N sequences (batch entry, start, length, state row), and the sequence of each row b·T + t (−1: none).</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> RowSequence;

    /// <summary>The feature map's multi-indices, p channels per entry α.</summary>
    public ArrayView<int> Indices;

    /// <summary>The feature map's coefficients √(p! / Π_c α_c!), one per entry α.</summary>
    public ArrayView<Real> Coefficients;

    /// <summary>Inputs (G empty without gates).</summary>
    public ArrayView<Real> Q, K, V, G;

    /// <summary>The state S and normaliser z (in: initial, out: final), o and den (zeros on entry).</summary>
    public ArrayView<Real> S, Z, O, Den;

    /// <summary>The chunked variant's log decays b_t and exp(b_last − b_t).</summary>
    public ArrayView<Real> B, ToEnd;

    /// <summary>The number of sequences N.</summary>
    public readonly int N => (int)Sequences.Length;

    /// <summary>Whether the call has gates g.</summary>
    public readonly bool HasGate => G.Length > 0;

    /// <summary>The (sequence n, head h, column c) that thread <paramref name="thread"/> of N·H·width threads owns.</summary>
    public readonly (int N, int H, int C) ChannelOf(long thread, int width) =>
        ((int)(thread / width / H), (int)(thread / width % H), (int)(thread % width));

    /// <summary>The row (b·T + start + t)·H + h of step <paramref name="t"/> of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly long Row(SequenceSlice seq, int t, int h) => ((long)seq.Batch * T + seq.Start + t) * H + h;

    /// <summary>g_t of <paramref name="row"/> (0 without gates).</summary>
    public readonly Real Gate(long row) => HasGate ? G[row] : Real.Zero;

    /// <summary>The index of v_tc and o_tc.</summary>
    public readonly long Value(long row, int c) => row * Dv + c;

    /// <summary>v_tc, or 1 in the normaliser's column c = V.</summary>
    public readonly Real ValueOrOne(long row, int c) => c < Dv ? V[Value(row, c)] : Real.One;

    /// <summary>S, or z for the normaliser's column c = V.</summary>
    public readonly ArrayView<Real> StateOf(int c) => c < Dv ? S : Z;

    /// <summary>The index of S_αc of <paramref name="seq"/>'s state, head <paramref name="h"/>, or of z_α for c = V.</summary>
    public readonly long State(SequenceSlice seq, int h, int α, int c)
    {
        long zα = ((long)seq.StateIndex * H + h) * D + α;
        return c < Dv ? zα * Dv + c : zα;
    }

    /// <summary>o, or den for the normaliser's column c = V.</summary>
    public readonly ArrayView<Real> OutputOf(int c) => c < Dv ? O : Den;

    /// <summary>The index of o_tc, or of den_t for c = V.</summary>
    public readonly long Output(long row, int c) => c < Dv ? Value(row, c) : row;

    /// <summary>
    /// φ_α(factor · x) of q or k row <paramref name="row"/>: coef_α · (factor · x_{a_1}) · … · (factor · x_{a_p}), the
    /// CPU map's product order (SymmetricPower.Apply).
    /// </summary>
    public readonly Real Feature(ArrayView<Real> x, long row, int α, Real factor)
    {
        Real product = Coefficients[α];
        for (int r = 0; r < P; r++)
        {
            product *= factor * x[row * Dk + Indices[α * P + r]];
        }
        return product;
    }

    /// <summary>
    /// The weight (s q_t·k_j)^p · decay of query row <paramref name="rowT"/> and key row <paramref name="rowJ"/>, as the
    /// CPU form's Weights: the dot product, times s, raised by p − 1 products, times the decay.
    /// </summary>
    public readonly Real Weight(long rowT, long rowJ, Real decay)
    {
        Real dot = Real.Zero;
        for (int a = 0; a < Dk; a++)
        {
            dot += Q[rowT * Dk + a] * K[rowJ * Dk + a];
        }
        Real w = Scale * dot, power = w;
        for (int r = 1; r < P; r++)
        {
            power *= w;
        }
        return power * decay;
    }

    /// <summary>PowerOptions.Output: n / (d + eps) when normalised, n otherwise.</summary>
    public readonly Real Finish(Real numerator, Real denominator) => Normalize != 0 ? numerator / (denominator + Eps) : numerator;
}
