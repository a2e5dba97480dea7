using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.GatedLinear;

/// <summary>
/// The kernel of Forms/GatedLinear/Gla.cs's definition, the recurrence token by token (the recurrent variant of gla and,
/// through their reductions in DiagonalDecay.cs, of simple_gla, retention and hgrn2):
/// <code>
///   S_t = Diag(exp(gk_t)) S_{t−1} Diag(exp(gv_t)) + k_t v_tᵀ,   o_t = scale · S_tᵀ q_t   (no gv: gv = 0)
/// </code>
/// One thread per (sequence, head, value column c): column c of S depends on column c alone (S_ac is decayed by
/// gk_ta and gv_tc and grows by k_ta v_tc), so the thread owns it and streams over t.
/// </summary>
internal static class GlaKernels
{
    /// <summary>Gla.Recurrent for column c of one pair's state: the rows of S updated in the CPU's order, a = 0..K−1.</summary>
    public static void Recurrent<Real>(Index1D thread, DecayProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var (n, h, c) = DecayProblem<Real>.ChannelOf(thread, x.H, x.Dv);
        SequenceSlice seq = x.Sequences[n];
        for (int t = 0; t < seq.Length; t++)
        {
            long row = x.Row(seq, t, h);
            Real valueDecay = x.HasGv ? GpuMath.Exp(x.Gv[x.Value(row, c)]) : Real.One; // exp(gv_tc)
            Real vtc = x.V[x.Value(row, c)];
            Real otc = Real.Zero;
            for (int a = 0; a < x.Dk; a++)
            {
                long ac = x.State(seq, h, a, c);
                // S_t[a, c] = exp(gk_ta) · S_{t−1}[a, c] · exp(gv_tc) + k_ta · v_tc
                x.S[ac] = GpuMath.Exp(x.Gk[x.KeyGate(row, a)]) * x.S[ac] * valueDecay + x.K[x.Key(row, a)] * vtc;
                // o_tc = Σ_a scale · q_ta · S_t[a, c]
                otc += x.Scale * x.Q[x.Key(row, a)] * x.S[ac];
            }
            x.O[x.Value(row, c)] = otc;
        }
    }
}
