using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
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
        return p.Run((s, d) =>
        {
            var x = p.InitialState(s.StateIndex, d);
            var y = new double[s.Length];
            int b = s.Batch;
            for (int i = 0; i < s.Length; i++)
            {
                int t = s.Start + i;
                double dt = p.Delta(b, d, t);
                for (int n = 0; n < p.N; n++)
                {
                    x[n] = Math.Exp(dt * A[d, n]) * x[n] + dt * p.B(b, d, n, t) * u[b, d, t];
                    y[i] += p.C(b, d, n, t) * x[n];
                }
            }
            return (y, x);
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
        return p.Run((s, d) =>
        {
            double[] x0 = p.InitialState(s.StateIndex, d), last = new double[p.N], y = new double[s.Length];
            var a = new double[s.Length];
            var bu = new double[s.Length];
            int b = s.Batch;
            for (int n = 0; n < p.N; n++)
            {
                for (int i = 0; i < s.Length; i++)
                {
                    int t = s.Start + i;
                    double dt = p.Delta(b, d, t);
                    a[i] = Math.Exp(dt * A[d, n]);
                    bu[i] = dt * p.B(b, d, n, t) * u[b, d, t];
                }
                double[] x = BlockedScan(a, bu, x0[n], blockSize);
                for (int i = 0; i < s.Length; i++)
                {
                    y[i] += p.C(b, d, n, s.Start + i) * x[i];
                }
                last[n] = s.Length == 0 ? x0[n] : x[s.Length - 1];
            }
            return (y, last);
        });
    }

    /// <summary>x_t = a_t x_{t−1} + b_t from x_{−1} = <paramref name="x0"/>, by the three steps of the doc comment.</summary>
    internal static double[] BlockedScan(double[] a, double[] b, double x0, int blockSize)
    {
        int length = a.Length;
        // A block longer than the sequence is one block: clamping keeps (j + 1)·blockSize from overflowing int.
        blockSize = Math.Min(blockSize, Math.Max(length, 1));
        int blocks = (length + blockSize - 1) / blockSize;
        var alpha = new double[length];
        var beta = new double[length];
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
        var carry = new double[blocks];
        double c = x0;
        for (int j = 0; j < blocks; j++)
        {
            carry[j] = c;
            int lastStep = Math.Min(length, (j + 1) * blockSize) - 1;
            c = (alpha[lastStep] * c) + beta[lastStep];
        }
        // 3. fix-up
        var x = new double[length];
        for (int t = 0; t < length; t++)
        {
            x[t] = (alpha[t] * carry[t / blockSize]) + beta[t];
        }
        return x;
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
        return new Problem(u, delta, B, C, groupsB, groupsC, options, slices, dims["B"], dims["D"], dims["N"], dims["L"]);
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

    /// <summary>The bound inputs and the per-(b, d) driver.</summary>
    internal sealed record Problem(Tensor U, Tensor DeltaIn, Tensor BIn, Tensor CIn, int GroupsB, int GroupsC, MambaOptions Options, IReadOnlyList<SequenceSlice> Slices, int Batch, int Channels, int N, int L)
    {
        public double Delta(int b, int d, int t)
        {
            double dt = DeltaIn[b, d, t] + (Options.DeltaBias?.Data[d] ?? 0);
            return Options.DeltaSoftplus ? StateSpaceMath.Softplus(dt) : dt;
        }

        public double B(int b, int d, int n, int t) => Projection(BIn, GroupsB, b, d, n, t);

        public double C(int b, int d, int n, int t) => Projection(CIn, GroupsC, b, d, n, t);

        private double Projection(Tensor x, int groups, int b, int d, int n, int t) => groups switch
        {
            0 => x[d, n],
            -1 => x[b, n, t],
            _ => x[b, d / (Channels / groups), n, t],
        };

        public double[] InitialState(int row, int d) => Options.InitialState is null
            ? new double[N]
            : Enumerable.Range(0, N).Select(n => Options.InitialState[row, d, n]).ToArray();

        /// <summary>Runs every (sequence, channel) pair (each by one thread, start to end) and adds D u and the z gate.</summary>
        public StateResult Run(Func<SequenceSlice, int, (double[] Y, double[] Last)> channel)
        {
            var o = Tensor.Zeros(Batch, Channels, L);
            var last = Tensor.Zeros(Slices.Count, Channels, N);
            System.Threading.Tasks.Parallel.For(0, Slices.Count * Channels, index =>
            {
                var s = Slices[index / Channels];
                int b = s.Batch, d = index % Channels;
                var (y, x) = channel(s, d);
                for (int i = 0; i < s.Length; i++)
                {
                    int t = s.Start + i;
                    double value = y[i] + ((Options.D?.Data[d] ?? 0) * U[b, d, t]);
                    o.Data[o.Offset(b, d, t)] = Options.Z is null ? value : value * StateSpaceMath.Silu(Options.Z[b, d, t]);
                }
                x.CopyTo(last.Data, last.Offset(s.StateIndex, d, 0));
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
