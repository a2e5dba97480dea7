using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The kernels of Forms/StateSpace/H3.cs, after DiagonalSsmKernels.Discretise (and ConvolutionKernel for the convolution
/// variant), in the doc comment's steps, per batch entry b and head h (i key channel, j value channel):
/// <code>
///   1. k̃_t[i] = Σ_{m=0..min(M−1,t)} shift_kernel_m k_{t−m}[i] + shift_D_i k_t[i]                   Shift
///   2. kv_t[i,j] = k̃_t[i] v_t[j]
///   3. y_t[i,j] = Σ_n f·Re(C_n s_{t,n}),  s_t = Ā s_{t−1} + B̄ kv_t   (recurrent)                    Recurrent
///      y_t[i,j] = Σ_{l=0..t} K_l kv_{t−l}[i,j]                      (convolution)                   Convolution
///   4. o_t[j] = Σ_i q_t[i] (y_t[i,j] + D_h kv_t[i,j])
/// </code>
/// Shift is one thread per (b, t, h, i): the shift register's state at t is k_t … k_{t−M+1} (zeros before the start),
/// read from k, which is also the direct convolution with the taps padded by zeros; both variants share it. Recurrent is
/// one thread per (b, h, j) that runs the channels i in order, each channel (i, j) mode by mode as s4d's recurrence,
/// its response y over the steps kept in a column of the scratch y (T values per thread), then adds step 4's term to
/// o. Convolution is one thread per (b, t, h, j), summing over i and the lags in the reference's order. Neither holds
/// H3's N·d·d state per head: only the modes of one channel (i, j) at a time.
/// </summary>
internal static class H3Kernels
{
    /// <summary>Step 1 for step t of batch entry b, head h, key channel i.</summary>
    public static void Shift<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int i = thread % x.Dh, h = thread / x.Dh % x.H, t = thread / x.Dh / x.H % x.T, b = thread / x.Dh / x.H / x.T;
        Real y = Real.Zero;
        for (int m = 0; m < x.M && m <= t; m++)
        {
            y += x.Taps[x.Tap(h, i, m)] * x.K[x.Row(b, t - m, h, i)];
        }
        Real skip = x.ShiftD.Length > 0 ? x.ShiftD[(h * x.Dh) + i] : Real.Zero;
        x.KShifted[x.Row(b, t, h, i)] = y + (skip * x.K[x.Row(b, t, h, i)]);
    }

    /// <summary>Steps 2–4 of the recurrent variant for value column j of batch entry b, head h.</summary>
    public static void Recurrent<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int j = thread % x.Dh, h = thread / x.Dh % x.H, b = thread / x.Dh / x.H;
        for (int i = 0; i < x.Dh; i++)
        {
            for (int t = 0; t < x.T; t++)
            {
                x.Y[x.Response(thread, t)] = Real.Zero;
            }
            // 3. the diagonal SSM on channel (i, j), mode by mode (S4d.Respond)
            for (int n = 0; n < x.N; n++)
            {
                int hn = x.Mode(h, n);
                Complex<Real> ABar = x.ABar[hn], BBar = x.BBar[hn], C = x.C[hn], state = Complex<Real>.Zero;
                for (int t = 0; t < x.T; t++)
                {
                    state = (ABar * state) + (BBar * KeyValue(x, b, t, h, i, j));
                    x.Y[x.Response(thread, t)] += x.PairFactor * (C * state).Re;
                }
            }
            // 4. o_t[j] += q_t[i] (y_t[i,j] + D kv_t[i,j])
            for (int t = 0; t < x.T; t++)
            {
                x.O[x.Row(b, t, h, j)] += x.Q[x.Row(b, t, h, i)] * (x.Y[x.Response(thread, t)] + (x.Skip(h) * KeyValue(x, b, t, h, i, j)));
            }
        }
    }

    /// <summary>Steps 2–4 of the convolution variant for step t, value column j of batch entry b, head h.</summary>
    public static void Convolution<Real>(Index1D thread, DiagonalSsmProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int j = thread % x.Dh, h = thread / x.Dh % x.H, t = thread / x.Dh / x.H % x.T, b = thread / x.Dh / x.H / x.T;
        Real o = Real.Zero;
        for (int i = 0; i < x.Dh; i++)
        {
            Real y = Real.Zero;
            for (int l = 0; l <= t; l++)
            {
                y += x.Kernel[x.Lag(l, h)] * KeyValue(x, b, t - l, h, i, j);
            }
            o += x.Q[x.Row(b, t, h, i)] * (y + (x.Skip(h) * KeyValue(x, b, t, h, i, j)));
        }
        x.O[x.Row(b, t, h, j)] = o;
    }

    /// <summary>Step 2: kv_t[i,j] = k̃_t[i] v_t[j].</summary>
    private static Real KeyValue<Real>(DiagonalSsmProblem<Real> x, int b, int t, int h, int i, int j) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        x.KShifted[x.Row(b, t, h, i)] * x.V[x.Row(b, t, h, j)];
}
