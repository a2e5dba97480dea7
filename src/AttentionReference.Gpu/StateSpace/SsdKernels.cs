using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The kernels of Forms/StateSpace/Ssd.cs, Mamba-2's SSD, same symbols (h head, p head-dim column, n state index):
/// <code>
///   Δ_t = dt_t + dt_bias_h (softplus if dt_softplus),  a_t = Δ_t A_h                              StepSizes
///   recurrent  h_t = exp(a_t) h_{t−1} + Δ_t x_t B_tᵀ,  y_t = h_t C_t                               Recurrent
///   chunked    ssd_minimal.py's steps over chunks of Q steps, cum_l = Σ_{r≤l} a_r from the chunk's start:
///              2. S_c = Σ_s exp(Σ_{r=s+1..end} a_r) Δ_s x_s B_sᵀ                                    ChunkEnds, ChunkStates
///              3. h_c = exp(Σ_chunk a) h_{c−1} + S_c, from h_{−1}                                   StatePass
///              1. Y_diag_l = Σ_{s≤l} (C_l·B_s) exp(segsum(l, s)) Δ_s x_s                             ChunkOutputs
///              4. Y_off_l = exp(cum_l) h_{c−1} C_l                                                  ChunkOutputs
///   quadratic  y_t = Σ_{s≤t} (C_t·B_s) exp(segsum(t, s)) Δ_s x_s + exp(segsum(t, −1)) h_{−1} C_t    QuadraticWeights, QuadraticOutput
///              and the final state, the same sums at the sequence's end against B                  QuadraticState
///   o_t = (y_t + D x_t) · silu(z_t)                                                                Output
/// </code>
/// Each sum is summed as the reference sums it: segsum(l, s) from r = l down in the chunked form, grown with t in the
/// quadratic one, the chunk's suffix sums from its end down; never a difference of cumulative sums, so strong decay only
/// underflows to 0. Recurrent is one thread per (sequence, h, p) that runs the state indices n one after another (each
/// h_t[p, n] needs only h_{t−1}[p, n]), adding h_t[p, n] C_t[n] to o_t in the order n = 0, 1, …. The chunked variant's
/// only sequential part is step 3, one thread per (sequence, h, p, n) over the chunks, which leaves the state entering
/// each chunk in place of the chunk's own state; steps 1 and 4 need no other state, so every output row of every chunk
/// runs at once: one group per (row, h), which computes the weights of step 1 for a tile of steps s into shared memory
/// (one s per thread), then adds the tile's values to o and finally step 4 (one column p per thread). The quadratic
/// variant keeps its weights W in a buffer of B·T·H·M values, quadratic in T as the form is.
/// </summary>
internal static class SsdKernels
{
    /// <summary>Δ_t and a_t at step t of batch entry b, head h (SsdOptions.StepSize).</summary>
    public static void StepSizes<Real>(Index1D row, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int h = row % x.H;
        Real Δ = x.Dt[row] + x.BiasOf(h);
        Δ = x.Softplus != 0 ? StateSpaceMath.Softplus(Δ) : Δ;
        x.Δ[row] = Δ;
        x.Log[row] = Δ * x.A[h];
    }

    /// <summary>Ssd.Recurrent for row p of one head's state: the state indices n one after another, y_t[p] summed into o.</summary>
    public static void Recurrent<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int p = thread % x.P, h = thread / x.P % x.H;
        SequenceSlice seq = x.Sequences[thread / x.P / x.H];
        for (int n = 0; n < x.N; n++)
        {
            long at = x.State(seq.StateIndex, h, p, n);
            Real state = x.S[at];
            for (int t = seq.Start; t < seq.Start + seq.Length; t++)
            {
                long row = x.Row(seq.Batch, t, h);
                // h_t[p, n] = exp(Δ_t A) h_{t−1}[p, n] + Δ_t x_t[p] B_t[n],   y_t[p] += h_t[p, n] C_t[n]
                state = (state * GpuMath.Exp(x.Log[row])) + (x.B[x.Projection(seq.Batch, t, h, n)] * (x.Δ[row] * x.X[x.Value(row, p)]));
                x.O[x.Value(row, p)] += state * x.C[x.Projection(seq.Batch, t, h, n)];
            }
            x.S[at] = state;
        }
    }

    /// <summary>
    /// Chunked, for chunk c and head h, from the chunk's end down: w_s = exp(Σ_{r=s+1..end} a_r) Δ_s (step 2's weights)
    /// and the chunk's decay exp(Σ_chunk a) (step 3's).
    /// </summary>
    public static void ChunkEnds<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int h = thread % x.H, c = thread / x.H;
        var (chunk, seq) = ChunkOf(x, c);
        Real toEnd = Real.Zero; // Σ_{r=s+1..end} a_r
        for (int s = chunk.Length - 1; s >= 0; s--)
        {
            long row = x.Row(seq.Batch, seq.Start + chunk.First + s, h);
            x.WEnd[row] = GpuMath.Exp(toEnd) * x.Δ[row];
            toEnd += x.Log[row];
        }
        x.ChunkDecay[thread] = GpuMath.Exp(toEnd);
    }

    /// <summary>Step 2 for chunk c, head h, state entry (p, n): S_c[p, n] = Σ_s (w_s x_s[p]) B_s[n], s from the chunk's end down.</summary>
    public static void ChunkStates<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int n = thread % x.N, p = thread / x.N % x.P, h = thread / x.N / x.P % x.H, c = thread / x.N / x.P / x.H;
        var (chunk, seq) = ChunkOf(x, c);
        Real own = Real.Zero;
        for (int s = chunk.Length - 1; s >= 0; s--)
        {
            int t = seq.Start + chunk.First + s;
            long row = x.Row(seq.Batch, t, h);
            own += x.B[x.Projection(seq.Batch, t, h, n)] * (x.WEnd[row] * x.X[x.Value(row, p)]);
        }
        x.ChunkState[x.State(c, h, p, n)] = own;
    }

    /// <summary>
    /// Step 3 for one sequence, head h, state entry (p, n), chunk after chunk: the state entering chunk c replaces S_c
    /// (step 4 reads it), h ← exp(Σ_c a) h + S_c; the last h is the final state.
    /// </summary>
    public static void StatePass<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int n = thread % x.N, p = thread / x.N % x.P, h = thread / x.N / x.P % x.H, s = thread / x.N / x.P / x.H;
        long at = x.State(x.Sequences[s].StateIndex, h, p, n);
        Real state = x.S[at];
        for (int c = x.FirstChunk[s]; c < x.FirstChunk[s + 1]; c++)
        {
            long own = x.State(c, h, p, n);
            Real Sc = x.ChunkState[own];
            x.ChunkState[own] = state;
            state = (state * x.ChunkDecay[(c * x.H) + h]) + Sc;
        }
        x.S[at] = state;
    }

    /// <summary>
    /// Steps 1 and 4 for one output row l and head h (one group; shared memory: one weight per thread):
    /// o_l += Σ_{s≤l} W_ls x_s in the order s = 0..l, a tile of W_ls = (C_l·B_s) exp(segsum(l, s)) Δ_s at a time, then
    /// o_l += exp(cum_l) h_{c−1} C_l with the state entering the chunk (after StatePass).
    /// </summary>
    public static void ChunkOutputs<Real>(SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long bt = Grid.IdxX / x.H; // the group's row b·T + t of the time axis, and its head
        int h = Grid.IdxX % x.H, c = x.RowChunk[bt];
        if (c < 0)
        {
            return; // a row no sequence covers: o stays 0
        }
        var (chunk, seq) = ChunkOf(x, c);
        int first = seq.Start + chunk.First, l = (int)(bt % x.T) - first; // steps first + 0 … first + l of the chunk
        long rowL = x.Row(seq.Batch, first + l, h);
        ArrayView<Real> W = SharedMemory.GetDynamic<Real>(); // W_ls for the tile s0 ≤ s < s0 + group size
        // 1. intra-chunk outputs (diagonal blocks)
        for (int s0 = 0; s0 <= l; s0 += Group.DimX)
        {
            int s = s0 + Group.IdxX;
            if (s <= l)
            {
                W[Group.IdxX] = Weight(x, seq.Batch, first, l, s, h);
            }
            Group.Barrier();
            int tile = Math.Min(Group.DimX, l - s0 + 1);
            for (int p = Group.IdxX; p < x.P; p += Group.DimX)
            {
                Real y = x.O[x.Value(rowL, p)];
                for (int i = 0; i < tile; i++)
                {
                    y += W[i] * x.X[x.Value(x.Row(seq.Batch, first + s0 + i, h), p)];
                }
                x.O[x.Value(rowL, p)] = y;
            }
            Group.Barrier();
        }
        // 4. state to output (C terms), from the state entering the chunk
        Real cum = Real.Zero; // Σ_{r=0..l} a_r from the chunk's start
        for (int r = 0; r <= l; r++)
        {
            cum += x.Log[x.Row(seq.Batch, first + r, h)];
        }
        Real decay = GpuMath.Exp(cum);
        for (int p = Group.IdxX; p < x.P; p += Group.DimX)
        {
            Real hC = Real.Zero;
            for (int n = 0; n < x.N; n++)
            {
                hC += x.C[x.Projection(seq.Batch, first + l, h, n)] * x.ChunkState[x.State(c, h, p, n)];
            }
            x.O[x.Value(rowL, p)] += hC * decay;
        }
    }

    /// <summary>
    /// Quadratic, for one sequence, head h and step s (s = −1 for the initial state), walking t from s to the end with
    /// segsum(t, s) = Σ_{r=s+1..t} a_r grown as t grows: W_ts = (C_t·B_s) exp(segsum(t, s)) Δ_s, or E_t =
    /// exp(segsum(t, −1)) for s = −1; at the end the final state's weight exp(segsum(end, s)) Δ_s (exp(segsum(end, −1))).
    /// </summary>
    public static void QuadraticWeights<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int s = (thread % (x.Q + 1)) - 1, h = thread / (x.Q + 1) % x.H, q = thread / (x.Q + 1) / x.H;
        SequenceSlice seq = x.Sequences[q];
        if (s >= seq.Length)
        {
            return;
        }
        Real segsum = Real.Zero;
        if (s < 0)
        {
            for (int t = 0; t < seq.Length; t++)
            {
                long row = x.Row(seq.Batch, seq.Start + t, h);
                segsum += x.Log[row];
                x.E[row] = GpuMath.Exp(segsum);
            }
            x.WFinal0[(q * x.H) + h] = GpuMath.Exp(segsum);
            return;
        }
        long rowS = x.Row(seq.Batch, seq.Start + s, h);
        for (int t = s; t < seq.Length; t++)
        {
            long rowT = x.Row(seq.Batch, seq.Start + t, h);
            if (t > s)
            {
                segsum += x.Log[rowT];
            }
            Real dot = Real.Zero;
            for (int n = 0; n < x.N; n++)
            {
                dot += x.C[x.Projection(seq.Batch, seq.Start + t, h, n)] * x.B[x.Projection(seq.Batch, seq.Start + s, h, n)];
            }
            x.W[(rowT * x.Q) + s] = dot * GpuMath.Exp(segsum) * x.Δ[rowS];
        }
        x.WFinal[rowS] = GpuMath.Exp(segsum) * x.Δ[rowS];
    }

    /// <summary>Quadratic y_t[p] = Σ_{s=0..t} W_ts x_s[p] + E_t h_{−1}[p, :] C_t at step t of batch entry b, head h, column p.</summary>
    public static void QuadraticOutput<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int p = thread % x.P, h = thread / x.P % x.H;
        long bt = thread / x.P / x.H;
        int c = x.RowChunk[bt];
        if (c < 0)
        {
            return;
        }
        var (_, seq) = ChunkOf(x, c);
        int t = (int)(bt % x.T);
        long rowT = x.Row(seq.Batch, t, h);
        Real y = Real.Zero;
        for (int s = 0; s <= t - seq.Start; s++)
        {
            y += x.W[(rowT * x.Q) + s] * x.X[x.Value(x.Row(seq.Batch, seq.Start + s, h), p)];
        }
        Real hC = Real.Zero;
        for (int n = 0; n < x.N; n++)
        {
            hC += x.C[x.Projection(seq.Batch, t, h, n)] * x.S[x.State(seq.StateIndex, h, p, n)];
        }
        x.O[x.Value(rowT, p)] = y + (hC * x.E[rowT]);
    }

    /// <summary>
    /// Quadratic final state of one sequence, head h, entry (p, n), after QuadraticOutput has read the initial one:
    /// h[p, n] = exp(segsum(end, −1)) h_{−1}[p, n] + Σ_s (exp(segsum(end, s)) Δ_s x_s[p]) B_s[n].
    /// </summary>
    public static void QuadraticState<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int n = thread % x.N, p = thread / x.N % x.P, h = thread / x.N / x.P % x.H, q = thread / x.N / x.P / x.H;
        SequenceSlice seq = x.Sequences[q];
        long at = x.State(seq.StateIndex, h, p, n);
        Real state = x.S[at] * x.WFinal0[(q * x.H) + h];
        for (int s = 0; s < seq.Length; s++)
        {
            long row = x.Row(seq.Batch, seq.Start + s, h);
            state += x.B[x.Projection(seq.Batch, seq.Start + s, h, n)] * (x.WFinal[row] * x.X[x.Value(row, p)]);
        }
        x.S[at] = state;
    }

    /// <summary>o_t[p] = (y_t[p] + D x_t[p]) · silu(z_t[p]) (y is o on entry).</summary>
    public static void Output<Real>(Index1D thread, SsdProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int p = thread % x.P, h = thread / x.P % x.H;
        Real value = x.O[thread] + (x.SkipOf(h, p) * x.X[thread]);
        x.O[thread] = x.Z.Length > 0 ? value * StateSpaceMath.Silu(x.Z[thread]) : value;
    }

    /// <summary>W_ls = (C_l·B_s) exp(segsum(l, s)) Δ_s of a chunk starting at step <paramref name="first"/>, segsum summed from r = l down.</summary>
    private static Real Weight<Real>(SsdProblem<Real> x, int b, int first, int l, int s, int h) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real segsum = Real.Zero;
        for (int r = l; r > s; r--)
        {
            segsum += x.Log[x.Row(b, first + r, h)];
        }
        Real dot = Real.Zero;
        for (int n = 0; n < x.N; n++)
        {
            dot += x.C[x.Projection(b, first + l, h, n)] * x.B[x.Projection(b, first + s, h, n)];
        }
        return dot * GpuMath.Exp(segsum) * x.Δ[x.Row(b, first + s, h)];
    }

    /// <summary>Chunk c and its sequence.</summary>
    private static (StepBlock Chunk, SequenceSlice Sequence) ChunkOf<Real>(SsdProblem<Real> x, int c) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        StepBlock chunk = x.Chunks[c];
        return (chunk, x.Sequences[chunk.Sequence]);
    }
}
