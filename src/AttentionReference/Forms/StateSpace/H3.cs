using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// H3 (Hungry Hungry Hippos): per head, o = q · SSM_diag(SSM_shift(k) ⊗ v), exact, in double. The projections
/// (q_proj, k_proj, v_proj, output_linear) are outside the form: it starts from q, k, v and both SSMs' parameters.
/// <code>
/// Shapes (H heads of head_dim d, d_model = H·d split as H3's 'b (h d) l'; M shift taps; N diagonal modes):
///   q, k, v [B,T,H,d]
///   shift_kernel [H,d,M]   shift_D [H,d] optional          the shift SSM, one per d_model channel
///   log_dt [H]  A_real, A_imag, C_real, C_imag [H,N]  D [H] optional     the diagonal SSM (S4D), one per head
///   →  o [B,T,H,d]
///
/// 1. Shift SSM on k, per channel (h, i): the state holds the last M inputs (A = shift matrix, B = e_0), so its
///    kernel is its C read as taps:  k̃_t = Σ_{m=0..M−1} shift_kernel_m k_{t−m} + shift_D k_t   (k_{&lt;0} = 0)
/// 2. Outer product per head and step:  kv_t[i,j] = k̃_t[i] v_t[j]                     (i, j = 0..d−1)
/// 3. Diagonal SSM of head h on each of the d·d channels kv[i,j] (the same parameters for all of them), as s4d:
///    s_t = Ā s_{t−1} + B̄ kv_t,  y_t[i,j] = 2·Re(C s_t) + D_h kv_t[i,j]     (Ā, B̄ by ZOH, see S4d.cs)
/// 4. o_t[j] = Σ_i q_t[i] y_t[i,j]
///
/// Variants: recurrent (both SSMs step by step: a shift register and the complex diagonal state) and convolution
/// (both as causal convolutions: the shift kernel padded with zeros, and s4d's K_l = 2·Re(C B̄ Ā^l)).
/// </code>
/// Sources: Fu, Dao, Saab, Thomas, Rudra, Ré 2022, "Hungry Hungry Hippos: Towards Language Modeling with State Space
/// Models" (H3 layer: Q ⊙ SSM_diag(SSM_shift(K) ⊙ V), multi-head with the outer product K Vᵀ per head), and its
/// reference HazyResearch/H3 src/models/ssm/h3.py (H3.forward: ssm_k_kernel (mode 'shift', d_model channels) and
/// ssm_k_D on k; kv = rearrange(k, 'b (h d1) l -> b d1 1 h l') * rearrange(v, 'b (h d2) l -> b 1 d2 h l'); the
/// diagonal kernel (H = d_model/head_dim channels) and D per head shared over (d1, d2); y = (y·q).sum over d1).
/// Our choices: both SSM kernels' parameters are given inputs — the shift SSM as its taps (its kernel, which for a
/// shift SSM is its C vector), the diagonal SSM in S4D's parameterisation (SSKernel's default for H3 is diagonal
/// with ZOH); the output is [B,T,H,d] per head, whereas h3.py flattens it as '(d2 h)' before output_linear (a
/// fixed permutation of channels); no inference state.
/// </summary>
public static class H3
{
    /// <summary>Both SSMs step by step: the definition.</summary>
    public static Tensor Recurrent(Tensor q, Tensor k, Tensor v, H3Shift shift, DiagonalSsm ssm) =>
        Run(q, k, v, shift, ssm, recurrent: true);

    /// <summary>Both SSMs as direct causal convolutions with their kernels.</summary>
    public static Tensor Convolution(Tensor q, Tensor k, Tensor v, H3Shift shift, DiagonalSsm ssm) =>
        Run(q, k, v, shift, ssm, recurrent: false);

    private static Tensor Run(Tensor q, Tensor k, Tensor v, H3Shift shift, DiagonalSsm ssm, bool recurrent)
    {
        var dims = Bind(q, k, v, shift, ssm);
        int batch = dims["B"], time = dims["T"], heads = dims["H"], d = dims["d"], taps = dims["M"];
        var o = Tensor.Zeros(batch, time, heads, d);
        Parallel.For(0, batch * heads, index =>
        {
            int b = index / heads, h = index % heads;
            // x[b, :, h, i] for every i, as d contiguous series of T steps
            double[][] Series(Tensor x)
            {
                var series = new double[d][];
                for (int i = 0; i < d; i++)
                {
                    series[i] = new double[time];
                    for (int t = 0; t < time; t++)
                    {
                        series[i][t] = x.Data[(((((b * time) + t) * heads) + h) * d) + i];
                    }
                }
                return series;
            }
            double[][] qh = Series(q), kh = Series(k), vh = Series(v);

            // 1. k̃ = SSM_shift(k), per channel i
            var kShifted = new double[d][];
            for (int i = 0; i < d; i++)
            {
                double[] taps_i = shift.Kernel.Data.AsSpan(((h * d) + i) * taps, taps).ToArray();
                kShifted[i] = recurrent ? ShiftRegister(taps_i, kh[i]) : StateSpaceMath.DirectConvolve(Padded(taps_i, time), kh[i]);
                double skip = shift.D is null ? 0 : shift.D.Data[(h * d) + i];
                for (int t = 0; t < time; t++)
                {
                    kShifted[i][t] += skip * kh[i][t];
                }
            }
            double[]? kernel = recurrent ? null : ssm.Kernel(h, time);
            var kv = new double[time];
            var oh = new double[time]; // o[b, :, h, j] for the current j
            for (int j = 0; j < d; j++)
            {
                Array.Clear(oh);
                for (int i = 0; i < d; i++)
                {
                    // 2. kv[i,j], 3. the diagonal SSM on it, 4. summed against q[i]
                    for (int t = 0; t < time; t++)
                    {
                        kv[t] = kShifted[i][t] * vh[j][t];
                    }
                    double[] y = kernel is null ? ssm.Recur(h, kv) : StateSpaceMath.DirectConvolve(kernel, kv);
                    for (int t = 0; t < time; t++)
                    {
                        oh[t] += qh[i][t] * (y[t] + ssm.Skip(h) * kv[t]);
                    }
                }
                for (int t = 0; t < time; t++)
                {
                    o.Data[(((((b * time) + t) * heads) + h) * d) + j] = oh[t];
                }
            }
        });
        return o;
    }

    /// <summary>Checks every input's shape; the bound symbols B, T, H, d, M, N.</summary>
    internal static Dims Bind(Tensor q, Tensor k, Tensor v, H3Shift shift, DiagonalSsm ssm)
    {
        ArgumentNullException.ThrowIfNull(shift);
        ArgumentNullException.ThrowIfNull(ssm);
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,T,H,d");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,T,H,d");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,T,H,d");
        dims.Bind("shift_kernel", Dims.RequireFloat("shift_kernel", shift.Kernel), "H,d,M");
        if (shift.D is not null)
        {
            dims.Bind("shift_D", Dims.RequireFloat("shift_D", shift.D), "H,d");
        }
        ssm.Bind(dims);
        return dims;
    }

    /// <summary>The shift SSM step by step: s_t = (k_t, s_{t−1,0}, …, s_{t−1,M−2}), k̃_t = Σ_m taps_m s_{t,m}.</summary>
    private static double[] ShiftRegister(double[] taps, double[] k)
    {
        var state = new double[taps.Length];
        var y = new double[k.Length];
        for (int t = 0; t < k.Length; t++)
        {
            for (int m = taps.Length - 1; m > 0; m--)
            {
                state[m] = state[m - 1];
            }
            if (taps.Length > 0)
            {
                state[0] = k[t];
            }
            for (int m = 0; m < taps.Length; m++)
            {
                y[t] += taps[m] * state[m];
            }
        }
        return y;
    }

    /// <summary>The taps as a kernel of <paramref name="length"/> steps (zeros past M, cut at T).</summary>
    private static double[] Padded(double[] taps, int length)
    {
        var kernel = new double[length];
        Array.Copy(taps, kernel, Math.Min(taps.Length, length));
        return kernel;
    }
}

/// <summary>H3's shift SSM on k: its taps (kernel) [H,d,M] and its skip shift_D [H,d] (zero if absent).</summary>
public sealed record H3Shift(Tensor Kernel, Tensor? D = null);
