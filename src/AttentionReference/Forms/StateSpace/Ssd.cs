using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Numerics;
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
///
/// Arithmetic: each (sequence, head) is one unit of work, computed start to end by one thread in a fixed order, so
/// results do not depend on the thread count. Its steps' x, B and C are gathered once as contiguous [T,P], [T,N],
/// [T,N] blocks and the state is P x N row-major; every row update, dot product and weighted sum of rows goes
/// through Numerics/VectorKernels.cs and DenseMatrix.cs, and the exps of a row of segment sums are taken at once.
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
            double[] h = head.H0; // P x N, row p = h[p, :]
            for (int t = 0; t < head.T; t++)
            {
                double decay = Math.Exp(head.Log[t]);
                for (int p = 0; p < head.P; p++)
                {
                    // h_t[p, :] = exp(a_t) h_{t−1}[p, :] + Δ_t x_t[p] B_t
                    Span<double> row = h.AsSpan(p * head.N, head.N);
                    VectorKernels.Scale(decay, row);
                    VectorKernels.Axpy(head.Dt[t] * head.X(t)[p], head.B(t), row);
                }
                // y_t = h_t C_t
                DenseMatrix.TimesTransposed(head.C(t), h, head.Y(t));
            }
            return h;
        });

    /// <summary>The segment-sum (quadratic) form.</summary>
    public static StateResult Quadratic(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, SsdOptions? options = null) =>
        Bind(x, dt, A, B, C, options).Run(head =>
        {
            var segsum = new double[head.T + 1]; // segsum[s + 1] = Σ_{r=s+1..t} a_r for the current t, s = −1..t
            var decay = new double[head.T + 1];  // exp(segsum)
            var weight = new double[head.T];     // (C_t·B_s) exp(segsum(t, s)) Δ_s for s = 0..t
            var hC = new double[head.P];
            for (int t = 0; t < head.T; t++)
            {
                for (int s = -1; s < t; s++)
                {
                    segsum[s + 1] += head.Log[t];
                }
                segsum[t + 1] = 0;
                Span<double> w = weight.AsSpan(0, t + 1), e = decay.AsSpan(0, t + 2);
                VectorKernels.Exp(segsum.AsSpan(0, t + 2), e);
                DenseMatrix.TimesTransposed(head.C(t), head.BRows(0, t + 1), w);
                VectorKernels.Multiply(w, e[1..], w);
                VectorKernels.Multiply(w, head.Dt.AsSpan(0, t + 1), w);
                // y_t = Σ_{s≤t} w_s x_s + exp(segsum(t, −1)) h_{−1} C_t
                DenseMatrix.AddWeightedRows(w, head.XRows(0, t + 1), head.Y(t));
                AddStateOutput(head.Y(t), head.H0, head.C(t), e[0], hC);
            }
            // the final state is the same sum read at t = T − 1 against B instead of C
            var h = new double[head.P * head.N];
            VectorKernels.Exp(segsum, decay);
            VectorKernels.Axpy(decay[0], head.H0, h);
            for (int s = 0; s < head.T; s++)
            {
                double w = decay[s + 1] * head.Dt[s];
                for (int p = 0; p < head.P; p++)
                {
                    VectorKernels.Axpy(w * head.X(s)[p], head.B(s), h.AsSpan(p * head.N, head.N));
                }
            }
            return h;
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
            double[] h = head.H0; // h_{c−1}: the state entering the chunk, P x N
            int Q = Math.Min(chunkSize, head.T);
            double[] cum = new double[Q], segsum = new double[Q], weight = new double[Q];
            double[] chunkState = new double[head.P * head.N], hC = new double[head.P];
            for (int start = 0; start < head.T; start += chunkSize)
            {
                int length = Math.Min(chunkSize, head.T - start);
                for (int l = 0; l < length; l++)
                {
                    cum[l] = (l == 0 ? 0 : cum[l - 1]) + head.Log[start + l];
                }
                // 1. intra-chunk outputs (diagonal blocks), with the stable segsum within the chunk
                for (int l = 0; l < length; l++)
                {
                    double sum = 0; // segsum(l, s) = Σ_{r=s+1..l} a_r, grown as s goes down from l
                    for (int s = l; s >= 0; s--)
                    {
                        segsum[s] = sum;
                        sum += head.Log[start + s];
                    }
                    Span<double> w = weight.AsSpan(0, l + 1), e = segsum.AsSpan(0, l + 1);
                    VectorKernels.Exp(e, e);
                    DenseMatrix.TimesTransposed(head.C(start + l), head.BRows(start, l + 1), w);
                    VectorKernels.Multiply(w, e, w);
                    VectorKernels.Multiply(w, head.Dt.AsSpan(start, l + 1), w);
                    DenseMatrix.AddWeightedRows(w, head.XRows(start, l + 1), head.Y(start + l));
                }
                // 4. state to output (C terms), from the state entering the chunk
                for (int l = 0; l < length; l++)
                {
                    AddStateOutput(head.Y(start + l), h, head.C(start + l), Math.Exp(cum[l]), hC);
                }
                // 2. the chunk's own state (B terms), decays to the chunk's end summed directly
                Array.Clear(chunkState);
                double toEnd = 0; // Σ_{r=s+1..end} a_r
                for (int s = length - 1; s >= 0; s--)
                {
                    double w = Math.Exp(toEnd) * head.Dt[start + s];
                    for (int p = 0; p < head.P; p++)
                    {
                        VectorKernels.Axpy(w * head.X(start + s)[p], head.B(start + s), chunkState.AsSpan(p * head.N, head.N));
                    }
                    toEnd += head.Log[start + s];
                }
                // 3. inter-chunk recurrence (A terms): toEnd now is the chunk's whole log decay
                VectorKernels.Scale(Math.Exp(toEnd), h);
                VectorKernels.Axpy(1, chunkState, h);
            }
            return h;
        });
    }

    /// <summary>y += w · h C for h [P,N] row-major; <paramref name="hC"/> (P values) is scratch.</summary>
    private static void AddStateOutput(Span<double> y, ReadOnlySpan<double> h, ReadOnlySpan<double> c, double w, Span<double> hC)
    {
        DenseMatrix.TimesTransposed(c, h, hC);
        VectorKernels.Axpy(w, hC, y);
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
        return new Problem(x, dt, A, B, C, options, slices, dims["T"], dims["H"], dims["P"], dims["N"], dims["G"]);
    }

    /// <summary>
    /// One (sequence, head): Δ and a = Δ·A_h per step, its steps' x, B and C gathered as contiguous rows ([T,P], [T,N],
    /// [T,N]), its initial state h_{−1} [P,N] row-major (a copy the variant may update), and y [T,P] for the variant to
    /// write (zeros on entry).
    /// </summary>
    internal sealed class Head(int t, int p, int n, double[] dt, double[] log, double[] x, double[] b, double[] c, double[] h0)
    {
        private readonly double[] _x = x, _b = b, _c = c, _y = new double[t * p];

        public int T { get; } = t;
        public int P { get; } = p;
        public int N { get; } = n;
        public double[] Dt { get; } = dt;
        public double[] Log { get; } = log;
        public double[] H0 { get; } = h0;

        public ReadOnlySpan<double> X(int s) => _x.AsSpan(s * P, P);
        public ReadOnlySpan<double> XRows(int from, int count) => _x.AsSpan(from * P, count * P);
        public ReadOnlySpan<double> B(int s) => _b.AsSpan(s * N, N);
        public ReadOnlySpan<double> BRows(int from, int count) => _b.AsSpan(from * N, count * N);
        public ReadOnlySpan<double> C(int s) => _c.AsSpan(s * N, N);
        public Span<double> Y(int s) => _y.AsSpan(s * P, P);
        public ReadOnlySpan<double> YRows => _y;
    }

    internal sealed record Problem(Tensor X, Tensor DtIn, Tensor A, Tensor BIn, Tensor CIn, SsdOptions Options,
        IReadOnlyList<SequenceSlice> Slices, int Steps, int Heads, int P, int N, int Groups)
    {
        /// <summary>Runs every (sequence, head), each by one thread start to end, then adds D x and the z gate.</summary>
        public StateResult Run(Func<Head, double[]> variant)
        {
            var y = Tensor.Zeros(X.ShapeArray());
            var final = Tensor.Zeros(Slices.Count, Heads, P, N);
            System.Threading.Tasks.Parallel.For(0, Slices.Count * Heads, index =>
            {
                var slice = Slices[index / Heads];
                int h = index % Heads, g = h / (Heads / Groups), b = slice.Batch, length = slice.Length;
                var dt = new double[length];
                var log = new double[length];
                for (int i = 0; i < length; i++)
                {
                    dt[i] = Delta(b, slice.Start + i, h);
                    log[i] = dt[i] * A.Data[h];
                }
                double[] h0 = Options.InitialState is null
                    ? new double[P * N]
                    : Options.InitialState.Data.AsSpan(((slice.StateIndex * Heads) + h) * P * N, P * N).ToArray();
                var head = new Head(length, P, N, dt, log,
                    Gather(X, b, slice, Heads, h, P), Gather(BIn, b, slice, Groups, g, N), Gather(CIn, b, slice, Groups, g, N), h0);
                double[] state = variant(head);
                ReadOnlySpan<double> rows = head.YRows;
                for (int i = 0; i < length; i++)
                {
                    int offset = (((b * Steps) + slice.Start + i) * Heads + h) * P;
                    for (int p = 0; p < P; p++)
                    {
                        double skip = Options.D is null ? 0 : Options.D.Rank == 1 ? Options.D.Data[h] : Options.D.Data[(h * P) + p];
                        double value = rows[(i * P) + p] + (skip * head.X(i)[p]);
                        y.Data[offset + p] = Options.Z is null ? value : value * StateSpaceMath.Silu(Options.Z.Data[offset + p]);
                    }
                }
                state.CopyTo(final.Data, ((slice.StateIndex * Heads) + h) * P * N);
            });
            return new StateResult(y, final);
        }

        private double Delta(int b, int t, int h)
        {
            double dt = DtIn.Data[(((b * Steps) + t) * Heads) + h] + (Options.DtBias?.Data[h] ?? 0);
            return Options.DtSoftplus ? StateSpaceMath.Softplus(dt) : dt;
        }

        /// <summary>The rows x[b, t, j, :] (each <paramref name="width"/> wide) of one sequence's steps, as one [T, width] block.</summary>
        private double[] Gather(Tensor x, int b, SequenceSlice slice, int count, int j, int width)
        {
            var rows = new double[slice.Length * width];
            for (int i = 0; i < slice.Length; i++)
            {
                Array.Copy(x.Data, ((((b * Steps) + slice.Start + i) * count) + j) * width, rows, i * width, width);
            }
            return rows;
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
