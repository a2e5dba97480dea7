using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// Mamba-2's state space duality (SSD): a scalar-decay SSM per head with a matrix state, exact, in double.
/// <code>
/// Shapes ([B,T,H,...] layout, mamba_chunk_scan_combined's names; P head dim, N state size, G groups for B and C):
///   x [B,T,H,P]   dt [B,T,H]   A [H]   B [B,T,G,N]   C [B,T,G,N]   (head h uses group h / (H/G))
///   D [H] or [H,P] optional   z [B,T,H,P] optional   dt_bias [H] optional
///   initial_state [S,H,P,N] optional   cu_seqlens [S+1] optional (B = 1; S = B without it)
///   →  o [B,T,H,P] (the y below)   final_state [S,H,P,N]
///
/// Per sequence and head h (state h_t is P x N, mamba's orientation: transposed from the linear family's K x V):
///   Δ_t = dt_t + dt_bias_h,  then Δ_t ← softplus(Δ_t) if dt_softplus       (softplus(x) = x for x > 20)
///   a_t = Δ_t A_h                                                           (log decay of step t)
///   h_t = exp(a_t) h_{t−1} + Δ_t x_t B_tᵀ          h_{−1} = initial_state (0 if absent)
///   y_t = h_t C_t + D_h x_t,   then y_t ← y_t · silu(z_t) if z is given
///
/// Variants:
///   recurrent  the recurrence above, step by step
///   quadratic  the segment-sum (attention-like) form, with segsum(t, s) = Σ_{r=s+1..t} a_r summed directly
///              (ssd_minimal.py's stable segsum, never a difference of cumulative sums):
///              y_t = Σ_{s≤t} (C_t·B_s) exp(segsum(t, s)) Δ_s x_s + exp(segsum(t, −1)) h_{−1} C_t + D x_t
///   chunked    ssd_minimal.py's four steps over chunks of Q steps (Q any size ≥ 1; the last chunk may be short);
///              within chunk c, cum_l = Σ_{r≤l} a_r counts from the chunk's start:
///              1. intra-chunk outputs (diagonal blocks): Y_diag_l = Σ_{s≤l} (C_l·B_s) exp(segsum(l, s)) Δ_s x_s
///              2. each chunk's own state (B terms): S_c = Σ_s exp(Σ_{r=s+1..end} a_r) Δ_s x_s B_sᵀ
///              3. inter-chunk recurrence (A terms): h_c = exp(Σ_{chunk} a) h_{c−1} + S_c, from h_{−1}
///              4. state to output (C terms): Y_off_l = exp(cum_l) h_{c−1} C_l
///              The suffix sums of step 2 are summed directly too (ssd_minimal.py subtracts cumulative sums there;
///              same value, less roundoff when decays are strong).
/// </code>
/// Sources: Dao and Gu 2024, "Transformers are SSMs" (SSD, Mamba-2); state-spaces/mamba
/// mamba_ssm/modules/ssd_minimal.py (segsum, ssd_minimal_discrete(X·dt, A·dt, B, C, block_len, initial_states):
/// the four numbered steps, states of shape (b, c, h, p, n)) and mamba_ssm/ops/triton/ssd_combined.py
/// (mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens,
/// dt_softplus, ...): dt + dt_bias then softplus, D of shape (nheads, headdim) or (nheads,), y·silu(z) after D,
/// B and C of shape (batch, seqlen, ngroups, dstate) shared by nheads/ngroups heads; initial_states (batch, nheads,
/// headdim, dstate); varlen: seq_idx restarts the state at each boundary and, with cu_seqlens,
/// return_varlen_states gives one final state per sequence). Our choices: dt_limit (clamping Δ) is not supported;
/// the output is named o, as in every form here, the initial state initial_state (initial_states accepted); varlen goes through
/// Sequences.cs as in every stateful form here, with one initial_state row per sequence (as fla does, and as
/// vLLM's mamba_chunk_scan_combined takes initial_states (num_sequences, nheads, headdim, dstate)); upstream
/// mamba_ssm's seq_idx varlen restarts each sequence from zero: ours with zero initial states. ssd is simple_gla
/// with q = C, k = Δ·B, v = x, g = Δ·A, scale = 1, D = 0 and the state transposed (a tested law).
/// </summary>
public static class Ssd
{
    /// <summary>The recurrence, step by step: the definition.</summary>
    public static StateResult Recurrent(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, SsdOptions? options = null) =>
        Bind(x, dt, A, B, C, options).Run(head =>
        {
            double[,] h = head.H0;
            var y = new double[head.T][];
            for (int t = 0; t < head.T; t++)
            {
                double decay = Math.Exp(head.Log[t]);
                y[t] = new double[head.P];
                for (int p = 0; p < head.P; p++)
                {
                    for (int n = 0; n < head.N; n++)
                    {
                        h[p, n] = (decay * h[p, n]) + (head.Dt[t] * head.X[t][p] * head.B[t][n]);
                        y[t][p] += h[p, n] * head.C[t][n];
                    }
                }
            }
            return (y, h);
        });

    /// <summary>The segment-sum (quadratic) form.</summary>
    public static StateResult Quadratic(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, SsdOptions? options = null) =>
        Bind(x, dt, A, B, C, options).Run(head =>
        {
            var y = new double[head.T][];
            var segsum = new double[head.T + 1]; // segsum[s + 1] = Σ_{r=s+1..t} a_r for the current t, s = −1..t
            for (int t = 0; t < head.T; t++)
            {
                for (int s = -1; s < t; s++)
                {
                    segsum[s + 1] += head.Log[t];
                }
                segsum[t + 1] = 0;
                y[t] = new double[head.P];
                for (int s = 0; s <= t; s++)
                {
                    double weight = Dot(head.C[t], head.B[s]) * Math.Exp(segsum[s + 1]) * head.Dt[s];
                    for (int p = 0; p < head.P; p++)
                    {
                        y[t][p] += weight * head.X[s][p];
                    }
                }
                AddStateOutput(y[t], head.H0, head.C[t], Math.Exp(segsum[0]));
            }
            // the final state is the same sum read at t = T − 1 against B instead of C
            var h = new double[head.P, head.N];
            for (int s = -1; s < head.T; s++)
            {
                double w = s < 0 ? Math.Exp(segsum[0]) : Math.Exp(segsum[s + 1]) * head.Dt[s];
                for (int p = 0; p < head.P; p++)
                {
                    for (int n = 0; n < head.N; n++)
                    {
                        h[p, n] += w * (s < 0 ? head.H0[p, n] : head.X[s][p] * head.B[s][n]);
                    }
                }
            }
            return (y, h);
        });

    /// <summary>ssd_minimal.py's chunked algorithm with chunks of <paramref name="chunkSize"/> steps.</summary>
    public static StateResult Chunked(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, int chunkSize, SsdOptions? options = null)
    {
        if (chunkSize < 1)
        {
            throw new InputException($"parameter 'chunk_size': expected an integer ≥ 1, found {chunkSize}");
        }
        return Bind(x, dt, A, B, C, options).Run(head =>
        {
            var y = new double[head.T][];
            double[,] h = head.H0; // h_{c−1}: the state entering the chunk
            for (int start = 0; start < head.T; start += chunkSize)
            {
                int length = Math.Min(chunkSize, head.T - start);
                var cum = new double[length];
                for (int l = 0; l < length; l++)
                {
                    cum[l] = (l == 0 ? 0 : cum[l - 1]) + head.Log[start + l];
                }
                // 1. intra-chunk outputs (diagonal blocks), with the stable segsum within the chunk
                for (int l = 0; l < length; l++)
                {
                    y[start + l] = new double[head.P];
                    double segsum = 0; // Σ_{r=s+1..l} a_r, grown as s goes down from l
                    for (int s = l; s >= 0; s--)
                    {
                        double weight = Dot(head.C[start + l], head.B[start + s]) * Math.Exp(segsum) * head.Dt[start + s];
                        for (int p = 0; p < head.P; p++)
                        {
                            y[start + l][p] += weight * head.X[start + s][p];
                        }
                        segsum += head.Log[start + s];
                    }
                }
                // 4. state to output (C terms), from the state entering the chunk
                for (int l = 0; l < length; l++)
                {
                    AddStateOutput(y[start + l], h, head.C[start + l], Math.Exp(cum[l]));
                }
                // 2. the chunk's own state (B terms), decays to the chunk's end summed directly
                var chunkState = new double[head.P, head.N];
                double toEnd = 0; // Σ_{r=s+1..end} a_r
                for (int s = length - 1; s >= 0; s--)
                {
                    double w = Math.Exp(toEnd) * head.Dt[start + s];
                    for (int p = 0; p < head.P; p++)
                    {
                        for (int n = 0; n < head.N; n++)
                        {
                            chunkState[p, n] += w * head.X[start + s][p] * head.B[start + s][n];
                        }
                    }
                    toEnd += head.Log[start + s];
                }
                // 3. inter-chunk recurrence (A terms): toEnd now is the chunk's whole log decay
                double chunkDecay = Math.Exp(toEnd);
                var next = new double[head.P, head.N];
                for (int p = 0; p < head.P; p++)
                {
                    for (int n = 0; n < head.N; n++)
                    {
                        next[p, n] = (chunkDecay * h[p, n]) + chunkState[p, n];
                    }
                }
                h = next;
            }
            return (y, h);
        });
    }

    /// <summary>y += w · h C.</summary>
    private static void AddStateOutput(double[] y, double[,] h, double[] c, double w)
    {
        for (int p = 0; p < y.Length; p++)
        {
            double sum = 0;
            for (int n = 0; n < c.Length; n++)
            {
                sum += h[p, n] * c[n];
            }
            y[p] += w * sum;
        }
    }

    private static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }
        return sum;
    }

    /// <summary>Every check of the form (shared with the OpenCL host), and the bound problem.</summary>
    internal static Problem Bind(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, SsdOptions? options)
    {
        options ??= new SsdOptions();
        var dims = new Dims();
        dims.Bind("x", Dims.RequireFloat("x", x), "B,T,H,P");
        dims.Bind("dt", Dims.RequireFloat("dt", dt), "B,T,H");
        dims.Bind("A", Dims.RequireFloat("A", A), "H");
        dims.Bind("B", Dims.RequireFloat("B", B), "B,T,G,N");
        dims.Bind("C", Dims.RequireFloat("C", C), "B,T,G,N");
        if (dims["G"] == 0 || dims["H"] % dims["G"] != 0)
        {
            throw new InputException($"the group count G = {dims["G"]} must divide the head count H = {dims["H"]}", tensor: "B");
        }
        if (options.D is not null)
        {
            dims.Bind("D", Dims.RequireFloat("D", options.D), options.D.Rank == 1 ? "H" : "H,P");
        }
        if (options.Z is not null)
        {
            dims.Bind("z", Dims.RequireFloat("z", options.Z), "B,T,H,P");
        }
        if (options.DtBias is not null)
        {
            dims.Bind("dt_bias", Dims.RequireFloat("dt_bias", options.DtBias), "H");
        }
        var slices = Sequences.Slices(dims["B"], dims["T"], options.CuSeqlens);
        if (options.InitialState is not null)
        {
            dims.Set("S", slices.Count);
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", options.InitialState), "S,H,P,N");
        }
        return new Problem(x, dt, A, B, C, options, slices, dims["H"], dims["P"], dims["N"], dims["G"]);
    }

    /// <summary>One (sequence, head): its steps' inputs gathered, Δ and a = Δ·A_h computed, and its initial state.</summary>
    internal sealed record Head(int T, int P, int N, double[] Dt, double[] Log, double[][] X, double[][] B, double[][] C, double[,] H0);

    internal sealed record Problem(Tensor X, Tensor DtIn, Tensor A, Tensor BIn, Tensor CIn, SsdOptions Options,
        IReadOnlyList<SequenceSlice> Slices, int Heads, int P, int N, int Groups)
    {
        /// <summary>Runs every (sequence, head), each by one thread start to end, then adds D x and the z gate.</summary>
        public StateResult Run(Func<Head, (double[][] Y, double[,] Final)> variant)
        {
            var y = Tensor.Zeros(X.ShapeArray());
            var final = Tensor.Zeros(Slices.Count, Heads, P, N);
            System.Threading.Tasks.Parallel.For(0, Slices.Count * Heads, index =>
            {
                var slice = Slices[index / Heads];
                int h = index % Heads, g = h / (Heads / Groups), b = slice.Batch;
                int[] steps = Enumerable.Range(slice.Start, slice.Length).ToArray();
                double[] dt = steps.Select(t => Delta(b, t, h)).ToArray();
                var head = new Head(slice.Length, P, N, dt,
                    dt.Select(d => d * A.Data[h]).ToArray(),
                    steps.Select(t => Row(X, b, t, h, P)).ToArray(),
                    steps.Select(t => Row(BIn, b, t, g, N)).ToArray(),
                    steps.Select(t => Row(CIn, b, t, g, N)).ToArray(),
                    InitialState(slice.StateIndex, h));
                var (rows, state) = variant(head);
                for (int i = 0; i < steps.Length; i++)
                {
                    for (int p = 0; p < P; p++)
                    {
                        double skip = Options.D is null ? 0 : Options.D.Rank == 1 ? Options.D.Data[h] : Options.D[h, p];
                        double value = rows[i][p] + (skip * head.X[i][p]);
                        y.Data[y.Offset(b, steps[i], h, p)] = Options.Z is null ? value : value * StateSpaceMath.Silu(Options.Z[b, steps[i], h, p]);
                    }
                }
                for (int p = 0; p < P; p++)
                {
                    for (int n = 0; n < N; n++)
                    {
                        final.Data[final.Offset(slice.StateIndex, h, p, n)] = state[p, n];
                    }
                }
            });
            return new StateResult(y, final);
        }

        private double Delta(int b, int t, int h)
        {
            double dt = DtIn[b, t, h] + (Options.DtBias?.Data[h] ?? 0);
            return Options.DtSoftplus ? StateSpaceMath.Softplus(dt) : dt;
        }

        private static double[] Row(Tensor x, int b, int t, int h, int width)
        {
            var row = new double[width];
            Array.Copy(x.Data, x.Offset(b, t, h, 0), row, 0, width);
            return row;
        }

        private double[,] InitialState(int row, int h)
        {
            var state = new double[P, N];
            if (Options.InitialState is not null)
            {
                for (int p = 0; p < P; p++)
                {
                    for (int n = 0; n < N; n++)
                    {
                        state[p, n] = Options.InitialState[row, h, p, n];
                    }
                }
            }
            return state;
        }
    }
}

/// <summary>mamba_chunk_scan_combined's optional arguments (less dt_limit), with varlen through cu_seqlens.</summary>
public sealed record SsdOptions
{
    /// <summary>Skip D [H] or [H,P]; none if null.</summary>
    public Tensor? D { get; init; }

    /// <summary>Gate z [B,T,H,P]: y ← y·silu(z) after D; none if null.</summary>
    public Tensor? Z { get; init; }

    /// <summary>dt_bias [H], added to dt before the softplus.</summary>
    public Tensor? DtBias { get; init; }

    /// <summary>Whether Δ = softplus(dt + dt_bias).</summary>
    public bool DtSoftplus { get; init; }

    /// <summary>h_{−1} [S,H,P,N]; zeros if null.</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>Varlen boundaries [S+1] (B = 1).</summary>
    public Tensor? CuSeqlens { get; init; }
}
