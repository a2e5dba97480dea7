using System.Numerics;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Linear;
using ILGPU;

namespace AttentionReference.Gpu.Linear;

/// <summary>
/// One call of linear attention as its kernels read it (LinearKernels.cs): the sizes, the options, the sequences and a
/// view of every tensor, in the layout [B,T,H,·] of the inputs, and the index arithmetic, named.
/// <code>
/// Φq, Φk [B,T,H,F]: φ(q), φ(k) (FeatureMapKernels; q and k themselves for the identity map); for taylor2 [B,T,H,K]:
///   q̃, k̃, from which each feature is computed where it is read (<see cref="Φ"/>)                 v, o [B,T,H,V]
/// S [N,H,F,V], z [N,H,F]: initial_state, initial_normalizer on entry, final_state, final_normalizer on exit
/// den [B,T,H]: each row's denominator φ(q_t)·z, before the scale and eps
/// </code>
/// The normaliser is computed as the numerator is, with a column of ones for the values (as the CPU form's products
/// do): value column c = V of a pass is z and den, columns c &lt; V are S and o.
/// </summary>
internal struct LinearProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The order in which a causal recurrent call steps: add step t to S and z, then read them.</summary>
    public const int StepByStep = 0;

    /// <summary>Not causal (recurrent and chunked): every step is added first, then every o_t reads the final S and z.</summary>
    public const int FinalState = 1;

    /// <summary>Causal chunked, and parallel (one chunk per sequence): each chunk reads the state entering it, then advances it.</summary>
    public const int ChunkByChunk = 2;

    /// <summary>The padded time axis T, the heads H, the key width K (Dk), the feature dimension F and the value width V (Dv).</summary>
    public int T, H, Dk, F, Dv;

    /// <summary>The feature map φ (a <see cref="LinearFeatureMap"/>): taylor2 scores by 1 + s + s²/2.</summary>
    public int Map;

    /// <summary><see cref="StepByStep"/>, <see cref="FinalState"/> or <see cref="ChunkByChunk"/>.</summary>
    public int Order;

    /// <summary>The chunk length C (the longest sequence for the parallel variant).</summary>
    public int C;

    /// <summary>1 where a query reads every key of its chunk (the parallel variant, not causal), else 0 (keys j ≤ t).</summary>
    public int AllKeys;

    /// <summary>1 where the output is normalised, else 0.</summary>
    public int Normalize;

    /// <summary>o_t = scale · S_tᵀ φ(q_t), divided by scale · φ(q_t)·z_t + eps when normalised.</summary>
    public Real Scale, Eps;

    /// <summary>√2, computed in double and converted (taylor2's features).</summary>
    public Real Sqrt2;

    /// <summary>The N sequences (batch entry, start, length, state row), and the sequence of each row b·T + t.</summary>
    public ArrayView<SequenceSlice> Sequences;

    /// <inheritdoc cref="Sequences"/>
    public ArrayView<int> RowSequence;

    /// <summary>The features φ(q), φ(k) and the values v.</summary>
    public ArrayView<Real> Φq, Φk, V;

    /// <summary>The state S and normaliser z (in: initial, out: final), o and den (zeros on entry).</summary>
    public ArrayView<Real> S, Z, O, Den;

    /// <summary>The number of sequences N.</summary>
    public readonly int N => (int)Sequences.Length;

    /// <summary>Whether the map is taylor2: Φq, Φk hold q̃, k̃, and scores are 1 + s + s²/2 of s = q̃·k̃, as the CPU form's.</summary>
    public readonly bool ScoresByTaylor2 => Map == (int)LinearFeatureMap.Taylor2;

    /// <summary>The (sequence n, head h, column c) that thread <paramref name="thread"/> of N·H·width threads owns.</summary>
    public static (int N, int H, int D) ChannelOf(int thread, int heads, int width) =>
        (thread / width / heads, thread / width % heads, thread % width);

    /// <summary>The row (b·T + start + t)·H + h of step <paramref name="t"/> of <paramref name="seq"/>, head <paramref name="h"/>.</summary>
    public readonly long Row(SequenceSlice seq, int t, int h) => ((long)seq.Batch * T + seq.Start + t) * H + h;

    /// <summary>φ(x_t)_a of <paramref name="row"/> of Φq or Φk: the stored feature, or taylor2's computed from x̃.</summary>
    public readonly Real Φ(ArrayView<Real> features, long row, int a) =>
        ScoresByTaylor2 ? FeatureMapKernels.Taylor2(features, row, Dk, a, Sqrt2) : features[row * F + a];

    /// <summary>s = q̃_t·k̃_j of taylor2's rows q̃ [rows, K] and k̃ [rows, K].</summary>
    public readonly Real ScaledDot(long rowT, long rowJ)
    {
        Real s = Real.Zero;
        for (int a = 0; a < Dk; a++)
        {
            s += Φq[rowT * Dk + a] * Φk[rowJ * Dk + a];
        }
        return s;
    }

    /// <summary>The index of v_tc and o_tc.</summary>
    public readonly long Value(long row, int c) => row * Dv + c;

    /// <summary>v_tc, or 1 in the normaliser's column c = V.</summary>
    public readonly Real ValueOrOne(long row, int c) => c < Dv ? V[Value(row, c)] : Real.One;

    /// <summary>S, or z for the normaliser's column c = V.</summary>
    public readonly ArrayView<Real> StateOf(int c) => c < Dv ? S : Z;

    /// <summary>The index of S_ac of <paramref name="seq"/>'s state, head <paramref name="h"/>, or of z_a for c = V.</summary>
    public readonly long State(SequenceSlice seq, int h, int a, int c)
    {
        long za = ((long)seq.StateIndex * H + h) * F + a;
        return c < Dv ? za * Dv + c : za;
    }

    /// <summary>o, or den for the normaliser's column c = V.</summary>
    public readonly ArrayView<Real> OutputOf(int c) => c < Dv ? O : Den;

    /// <summary>The index of o_tc, or of den_t for c = V.</summary>
    public readonly long Output(long row, int c) => c < Dv ? Value(row, c) : row;

    /// <summary>LinearOptions.Output: o = scale · n, divided by scale · d + eps when normalised.</summary>
    public readonly Real Finish(Real numerator, Real denominator) =>
        Normalize != 0 ? Scale * numerator / (Scale * denominator + Eps) : Scale * numerator;
}

/// <summary>
/// One feature map call (FeatureMapKernels.cs): x [rows, K] to φ(x) [rows, F] (x̃ [rows, K] for taylor2), with
/// performer's ω = proj [M,K] and the constants of FeatureMaps.cs converted on the host.
/// </summary>
internal struct FeatureMapProblem<Real> where Real : unmanaged, INumber<Real>
{
    /// <summary>The key width K and the width of a stored row: the feature dimension F, or K for taylor2 (x̃).</summary>
    public int Dk, Width;

    /// <summary>The map (a <see cref="LinearFeatureMap"/>).</summary>
    public int Map;

    /// <summary>K^(1/4) (x̃ = x / K^(1/4)) and √M (performer), each computed in double and converted.</summary>
    public Real RootRootK, SqrtM;

    /// <summary>The rows x, their features φ(x), and performer's ω row after row.</summary>
    public ArrayView<Real> X, Φ, Proj;

    /// <summary>The (row, feature a) thread <paramref name="thread"/> of rows·Width threads computes.</summary>
    public readonly (long Row, int A) FeatureOf(long thread) => (thread / Width, (int)(thread % Width));

    /// <summary>The index of x_a of <paramref name="row"/>.</summary>
    public readonly long Input(long row, int a) => row * Dk + a;
}
