using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms.StateSpace;

/// <summary>
/// Mamba's selective scan (Mamba-1, S6), with the arguments, names and layout of mamba's <c>selective_scan_ref</c>,
/// exact, in double.
/// <code>
/// Shapes (mamba's channel-first layout [B, D, L], accepted as mamba takes it: D channels, L steps, N state size):
///   u [B,D,L]   delta [B,D,L]   A [D,N]
///   B, C: [D,N] (time-invariant)  or  [B,N,L] (selective, shared by all channels)
///         or  [B,G,N,L] (selective, G groups; channel d uses group d / (D/G), mamba's 'B G N L -> B (G H) N L')
///   D [D] optional   z [B,D,L] optional   delta_bias [D] optional
///   cu_seqlens [S+1] optional (B = 1: sequences packed along L)   initial_state [S,D,N] optional (ours)
///   →  o [B,D,L] (selective_scan_ref's out)   final_state [S,D,N] (its last_state, always returned)
///   (S = B without cu_seqlens, the number of sequences with it)
///
/// Per batch entry b, channel d, state index n:
///   Δ_t = delta_t + delta_bias_d,  then Δ_t ← softplus(Δ_t) if delta_softplus     (softplus(x) = x for x > 20)
///   x_t[n] = exp(Δ_t A_dn) x_{t−1}[n] + Δ_t B_t[n] u_t       x_{−1} = initial_state (0 if absent)
///   (with cu_seqlens, every sequence starts afresh from its own initial_state row: selective_scan_ref sets
///   x = deltaB_u at each boundary, i.e. from 0)
///   y_t = Σ_n C_t[n] x_t[n] + D_d u_t
///   o_t = y_t · silu(z_t)  if z is given
///
/// Variants:
///   recurrent  the loop above (selective_scan_ref)
///   scan       each (b, d, n) is a first-order recurrence x_t = a_t x_{t−1} + b_t, and the pairs (a, b) compose
///              associatively: (a₁,b₁) then (a₂,b₂) = (a₂a₁, a₂b₁ + b₂). Blocked parallel scan with block size S:
///              1. each block scans its pairs locally from the identity (1, 0): (α_t, β_t)   (independent blocks)
///              2. the block carries combine in order: c_0 = x_{−1}, c_{j+1} = α_last(j) c_j + β_last(j)
///              3. every step is fixed up with its block's carry: x_t = α_t c_j + β_t   (independent steps)
///              α is a product of exp(Δ A) factors, never divided by, so strong decay only underflows to 0.
///
/// Arithmetic: each (sequence, channel) is one unit of work, computed start to end by one thread in a fixed order,
/// so results do not depend on the thread count. Its Δ, u and A_d are contiguous rows; the recurrence updates the
/// state vector x [N] per step through Numerics/VectorKernels.cs (exp(Δ_t A_d) for all n at once, B_t and C_t read
/// as contiguous rows: a selective B or C is transposed once to [B,G,L,N] for all channels); the scan runs each n
/// along contiguous series of steps (a selective B or C is already [.., N, L]).
/// </code>
/// Sources: state-spaces/mamba mamba_ssm/ops/selective_scan_interface.py, <c>selective_scan_ref(u, delta, A, B, C,
/// D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False)</c>: delta + delta_bias[..., None],
/// F.softplus, deltaA = exp(einsum('bdl,dn->bdln', delta, A)), deltaB_u = einsum('bdl,bnl,bdl->bdln', delta, B, u)
/// (grouped B repeated over channels), x = deltaA·x + deltaB_u, y = einsum('bdn,bn->bd', x, C), out = y + u·D,
/// out·silu(z), last_state = x after the last step; with cu_seqlens (B = 1) x restarts at every boundary. Softplus's threshold 20: torch's F.softplus default and
/// mamba's CUDA kernel (selective_scan_fwd_kernel.cuh).
/// Our choices: real A, B, C only (selective_scan_ref also takes complex ones, for S4D-style use: not supported
/// here); <c>initial_state</c> [B,D,N] is ours (selective_scan_ref has none; it enables state passing, and zero
/// reproduces the reference exactly); the final state is always returned, one row per sequence with cu_seqlens
/// (selective_scan_ref returns only the last sequence's, our last row); the output is named o and the state
/// final_state, as the other forms name them.
/// </summary>
public static class Mamba
{
    /// <summary>selective_scan_ref's loop over time: the definition.</summary>
    public static StateResult Recurrent(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, MambaOptions? options = null)
    {
        var p = Bind(u, delta, A, B, C, options);
        Projection bRows = p.StepRows(p.BIn, p.GroupsB), cRows = p.StepRows(p.CIn, p.GroupsC);
        return p.Run(channel =>
        {
            ReadOnlySpan<double> Δ = channel.Δ, u_d = channel.U, A_d = channel.A;
            Span<double> x = channel.X, y = channel.Y;
            var decay = new double[p.N]; // exp(Δ_t A_dn) for all n
            var ΔB = new double[p.N];    // Δ_t B_t[n] for all n
            for (int i = 0; i < channel.Length; i++)
            {
                int t = channel.Start + i;
                // x_t[n] = exp(Δ_t A_dn) x_{t−1}[n] + Δ_t B_t[n] u_t
                A_d.CopyTo(decay);
                VectorKernels.Scale(Δ[i], decay);
                VectorKernels.Exp(decay, decay);
                VectorKernels.Multiply(decay, x, x);
                bRows.Row(channel.Batch, channel.D, t).CopyTo(ΔB);
                VectorKernels.Scale(Δ[i], ΔB);
                VectorKernels.Axpy(u_d[i], ΔB, x);
                // y_t = Σ_n C_t[n] x_t[n]
                y[i] = VectorKernels.Dot(cRows.Row(channel.Batch, channel.D, t), x);
            }
        });
    }

    /// <summary>The blocked associative scan with blocks of <paramref name="blockSize"/> steps (any S ≥ 1).</summary>
    public static StateResult Scan(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, int blockSize, MambaOptions? options = null)
    {
        if (blockSize < 1)
        {
            throw new InputException($"parameter 'block_size': expected an integer ≥ 1, found {blockSize}");
        }
        var p = Bind(u, delta, A, B, C, options);
        Projection bSeries = p.StepSeries(p.BIn, p.GroupsB), cSeries = p.StepSeries(p.CIn, p.GroupsC);
        return p.Run(channel =>
        {
            int length = channel.Length;
            ReadOnlySpan<double> Δ = channel.Δ, u_d = channel.U, A_d = channel.A;
            Span<double> state = channel.X, y = channel.Y; // x_{−1}[n] in, x_{L−1}[n] out
            // per state index n: a_t = exp(Δ_t A_dn), b_t = Δ_t B_t[n] u_t, and the scan's scratch
            double[] a = new double[length], bu = new double[length], x = new double[length], c = new double[length];
            double[] alpha = new double[length], beta = new double[length], carry = new double[length];
            for (int n = 0; n < p.N; n++)
            {
                Δ.CopyTo(a);
                VectorKernels.Scale(A_d[n], a);
                VectorKernels.Exp(a, a);
                VectorKernels.Multiply(Δ, bSeries.Series(channel.Batch, channel.D, n, channel.Start, bu), bu);
                VectorKernels.Multiply(bu, u_d, bu);
                BlockedScan(a, bu, state[n], blockSize, alpha, beta, carry, x);
                // y_t += C_t[n] x_t[n]
                VectorKernels.Multiply(cSeries.Series(channel.Batch, channel.D, n, channel.Start, c), x, c);
                VectorKernels.Axpy(1, c, y);
                if (length > 0)
                {
                    state[n] = x[length - 1];
                }
            }
        });
    }

    /// <summary>x_t = a_t x_{t−1} + b_t from x_{−1} = <paramref name="x0"/>, by the three steps of the doc comment.</summary>
    internal static double[] BlockedScan(double[] a, double[] b, double x0, int blockSize)
    {
        int length = a.Length;
        var x = new double[length];
        BlockedScan(a, b, x0, blockSize, new double[length], new double[length], new double[length], x);
        return x;
    }

    /// <summary>
    /// <see cref="BlockedScan(double[], double[], double, int)"/> into <paramref name="x"/>, with the local scans α, β and
    /// the block carries in caller-owned scratch (each at least as long as a).
    /// </summary>
    internal static void BlockedScan(ReadOnlySpan<double> a, ReadOnlySpan<double> b, double x0, int blockSize,
        Span<double> alpha, Span<double> beta, Span<double> carry, Span<double> x)
    {
        int length = a.Length;
        // A block longer than the sequence is one block: clamping keeps (j + 1)·blockSize from overflowing int.
        blockSize = Math.Min(blockSize, Math.Max(length, 1));
        int blocks = (length + blockSize - 1) / blockSize;
        // 1. local inclusive scans, each block from the identity (1, 0)
        for (int j = 0; j < blocks; j++)
        {
            double accA = 1, accB = 0;
            for (int t = j * blockSize; t < Math.Min(length, (j + 1) * blockSize); t++)
            {
                (accA, accB) = (a[t] * accA, (a[t] * accB) + b[t]);
                (alpha[t], beta[t]) = (accA, accB);
            }
        }
        // 2. block carries, in order
        double c = x0;
        for (int j = 0; j < blocks; j++)
        {
            carry[j] = c;
            int lastStep = Math.Min(length, (j + 1) * blockSize) - 1;
            c = (alpha[lastStep] * c) + beta[lastStep];
        }
        // 3. fix-up
        for (int t = 0; t < length; t++)
        {
            x[t] = (alpha[t] * carry[t / blockSize]) + beta[t];
        }
    }

    /// <summary>Every check of the form (shared with the OpenCL host), and the bound problem.</summary>
    internal static Problem Bind(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, MambaOptions? options)
    {
        options ??= new MambaOptions();
        var dims = new Dims();
        dims.Bind("u", Dims.RequireFloat("u", u), "B,D,L");
        dims.Bind("delta", Dims.RequireFloat("delta", delta), "B,D,L");
        dims.Bind("A", Dims.RequireFloat("A", A), "D,N");
        int groupsB = BindProjection(dims, "B", B), groupsC = BindProjection(dims, "C", C);
        if (options.D is not null)
        {
            dims.Bind("D", Dims.RequireFloat("D", options.D), "D");
        }
        if (options.Z is not null)
        {
            dims.Bind("z", Dims.RequireFloat("z", options.Z), "B,D,L");
        }
        if (options.DeltaBias is not null)
        {
            dims.Bind("delta_bias", Dims.RequireFloat("delta_bias", options.DeltaBias), "D");
        }
        var slices = Sequences.Slices(dims["B"], dims["L"], options.CuSeqlens);
        if (options.InitialState is not null)
        {
            dims.Set("S", slices.Count);
            dims.Bind("initial_state", Dims.RequireFloat("initial_state", options.InitialState), "S,D,N");
        }
        return new Problem(u, delta, A, B, C, groupsB, groupsC, options, slices, dims["B"], dims["D"], dims["N"], dims["L"]);
    }

    /// <summary>Binds B or C and returns its kind: 0 for [D,N], −1 for [B,N,L], the group count G for [B,G,N,L].</summary>
    private static int BindProjection(Dims dims, string name, Tensor x)
    {
        Dims.RequireFloat(name, x);
        switch (x.Rank)
        {
            case 2:
                dims.Bind(name, x, "D,N");
                return 0;
            case 3:
                dims.Bind(name, x, "B,N,L");
                return -1;
            default:
                dims.Bind(name, x, "B,G,N,L");
                int groups = x.Dim(1);
                return groups > 0 && dims["D"] % groups == 0
                    ? groups
                    : throw new InputException($"the group count G = {groups} must divide the channel count D = {dims["D"]}", tensor: name);
        }
    }

    /// <summary>
    /// B or C read the way a variant walks it. Time-invariant ([D,N]): row d at every step, or B_dn repeated along
    /// the steps. Selective ([B,N,L] or [B,G,N,L], kind −1 or G): the steps of (b, group, n) are contiguous as given,
    /// and for step rows the tensor is transposed once to [B,G,L,N] (G = 1 for [B,N,L]), shared by every channel.
    /// </summary>
    internal sealed class Projection
    {
        private readonly double[] _data;
        private readonly int _kind, _channels, _n, _l, _groups;
        private readonly bool _stepRows;

        public Projection(Tensor x, int kind, int channels, int n, int l, bool stepRows)
        {
            (_kind, _channels, _n, _l, _stepRows) = (kind, channels, n, l, stepRows);
            _groups = kind > 0 ? kind : 1;
            _data = x.Data;
            if (kind != 0 && stepRows)
            {
                // [B,G,N,L] → [B,G,L,N]
                int batchGroups = x.Length / (n * l == 0 ? 1 : n * l);
                _data = new double[x.Length];
                for (int bg = 0; bg < batchGroups; bg++)
                {
                    for (int k = 0; k < n; k++)
                    {
                        for (int t = 0; t < l; t++)
                        {
                            _data[(((bg * l) + t) * n) + k] = x.Data[(((bg * n) + k) * l) + t];
                        }
                    }
                }
            }
        }

        private int Group(int b, int d) => (b * _groups) + (d / (_channels / _groups));

        /// <summary>(B_t[0], …, B_t[N−1]) for channel d (a view, step rows only).</summary>
        public ReadOnlySpan<double> Row(int b, int d, int t) => _kind == 0
            ? _data.AsSpan(d * _n, _n)
            : _data.AsSpan(((Group(b, d) * _l) + t) * _n, _n);

        /// <summary>
        /// (B_t[n] for t = start, start + 1, …, start + scratch.Length − 1) for channel d: a view of the tensor when
        /// selective, <paramref name="scratch"/> filled with B_dn when time-invariant.
        /// </summary>
        public ReadOnlySpan<double> Series(int b, int d, int n, int start, Span<double> scratch)
        {
            if (_kind != 0)
            {
                return _data.AsSpan((((Group(b, d) * _n) + n) * _l) + start, scratch.Length);
            }
            scratch.Fill(_data[(d * _n) + n]);
            return scratch;
        }
    }

    /// <summary>
    /// One (sequence, channel d) as a variant sees it: Δ for its steps, its u and the row A_d (views), the state x
    /// (x_{−1} on entry; the variant leaves x_{L−1} in it) and y (zeros on entry; the variant writes Σ_n C_t[n] x_t[n]).
    /// </summary>
    internal sealed class Channel
    {
        private readonly Problem _p;
        private readonly SequenceSlice _slice;

        public Channel(Problem p, SequenceSlice slice, int d)
        {
            (_p, _slice, D) = (p, slice, d);
            Δ = p.DeltaSeries(slice, d);
            X = p.InitialState(slice.StateIndex, d);
            Y = new double[slice.Length];
        }

        public int Batch => _slice.Batch;
        public int D { get; }
        public int Start => _slice.Start;
        public int Length => _slice.Length;
        public double[] Δ { get; }
        public ReadOnlySpan<double> U => _p.U.Data.AsSpan(_p.Offset(Batch, D, Start), Length);
        public ReadOnlySpan<double> A => _p.AIn.Data.AsSpan(D * _p.N, _p.N);
        public double[] X { get; }
        public double[] Y { get; }
    }

    /// <summary>The bound inputs and the per-(b, d) driver.</summary>
    internal sealed record Problem(Tensor U, Tensor DeltaIn, Tensor AIn, Tensor BIn, Tensor CIn, int GroupsB, int GroupsC, MambaOptions Options, IReadOnlyList<SequenceSlice> Slices, int Batch, int Channels, int N, int L)
    {
        /// <summary>The offset of [b, d, t] in a [B,D,L] tensor.</summary>
        public int Offset(int b, int d, int t) => (((b * Channels) + d) * L) + t;

        /// <summary>Δ_t = delta_t + delta_bias_d (softplus'd if asked) for the steps of one sequence and channel.</summary>
        public double[] DeltaSeries(SequenceSlice s, int d)
        {
            var Δ = new double[s.Length];
            double bias = Options.DeltaBias?.Data[d] ?? 0;
            int offset = Offset(s.Batch, d, s.Start);
            for (int i = 0; i < s.Length; i++)
            {
                double dt = DeltaIn.Data[offset + i] + bias;
                Δ[i] = Options.DeltaSoftplus ? StateSpaceMath.Softplus(dt) : dt;
            }
            return Δ;
        }

        /// <summary>B or C as rows per step (the recurrence).</summary>
        public Projection StepRows(Tensor x, int kind) => new(x, kind, Channels, N, L, stepRows: true);

        /// <summary>B or C as series along the steps per state index (the scan).</summary>
        public Projection StepSeries(Tensor x, int kind) => new(x, kind, Channels, N, L, stepRows: false);

        public double[] InitialState(int row, int d) => Options.InitialState is null
            ? new double[N]
            : Options.InitialState.Data.AsSpan(((row * Channels) + d) * N, N).ToArray();

        /// <summary>Runs every (sequence, channel) pair (each by one thread, start to end) and adds D u and the z gate.</summary>
        public StateResult Run(Action<Channel> variant)
        {
            var o = Tensor.Zeros(Batch, Channels, L);
            var last = Tensor.Zeros(Slices.Count, Channels, N);
            System.Threading.Tasks.Parallel.For(0, Slices.Count * Channels, index =>
            {
                var s = Slices[index / Channels];
                int d = index % Channels;
                var channel = new Channel(this, s, d);
                variant(channel);
                double skip = Options.D?.Data[d] ?? 0;
                int offset = Offset(s.Batch, d, s.Start);
                for (int i = 0; i < s.Length; i++)
                {
                    double value = channel.Y[i] + (skip * U.Data[offset + i]);
                    o.Data[offset + i] = Options.Z is null ? value : value * StateSpaceMath.Silu(Options.Z.Data[offset + i]);
                }
                channel.X.CopyTo(last.Data, ((s.StateIndex * Channels) + d) * N);
            });
            return new StateResult(o, last);
        }
    }
}

/// <summary>selective_scan_ref's optional arguments, plus an initial state.</summary>
public sealed record MambaOptions
{
    /// <summary>Skip D [D]; none if null.</summary>
    public Tensor? D { get; init; }

    /// <summary>Gate z [B,D,L]: o = y·silu(z); none if null.</summary>
    public Tensor? Z { get; init; }

    /// <summary>delta_bias [D], added to delta before the softplus.</summary>
    public Tensor? DeltaBias { get; init; }

    /// <summary>Whether Δ = softplus(delta + delta_bias).</summary>
    public bool DeltaSoftplus { get; init; }

    /// <summary>x_{−1} [S,D,N]; zeros if null (selective_scan_ref has no such argument).</summary>
    public Tensor? InitialState { get; init; }

    /// <summary>Varlen boundaries [S+1] along L (B = 1), as selective_scan_ref's cu_seqlens.</summary>
    public Tensor? CuSeqlens { get; init; }
}
