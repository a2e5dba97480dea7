using System.Numerics;
using AttentionReference.Forms.Common;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The kernels of Forms/StateSpace/Mamba.cs, selective_scan_ref's recurrence, same symbols (b batch entry, d channel,
/// n state index, t step):
/// <code>
///   Δ_t = delta_t + delta_bias_d,  Δ_t ← softplus(Δ_t) if delta_softplus                           StepSizes
///   x_t[n] = exp(Δ_t A_dn) x_{t−1}[n] + Δ_t B_t[n] u_t,   x_{−1} = initial_state                 Recurrent, or the scan:
///      1. each block's pairs (a_t, b_t) = (exp(Δ_t A_dn), Δ_t B_t[n] u_t) composed from (1, 0)    ScanBlocks
///      2. the carries c_0 = x_{−1}, c_{j+1} = α_last(j) c_j + β_last(j)                            ScanCarries
///      3. x_t = α_t c_j + β_t                                                                     ScanFixUp
///   y_t = Σ_n C_t[n] x_t[n],   o_t = (y_t + D_d u_t) · silu(z_t)                                 (the kernels above), Output
/// </code>
/// Each state index n is its own first-order recurrence, so a thread may run the n one after another (x_t[n] needs
/// only x_{t−1}[n]), adding C_t[n] x_t[n] to o_t in the order n = 0, 1, …: Recurrent is one thread per (sequence, d)
/// doing that, and ScanFixUp one thread per (block, d). ScanBlocks and ScanCarries are one thread per (block, d, n) and
/// (sequence, d, n). ScanFixUp recomputes each block's local scan (the same operations as step 1, so the same α_t, β_t)
/// rather than storing them for every (t, n). Nothing is divided by a product of decays: strong decay only underflows to
/// 0, as in the reference.
/// </summary>
internal static class MambaKernels
{
    /// <summary>Δ at step t of channel d of batch entry b (MambaOptions.StepSize).</summary>
    public static void StepSizes<Real>(Index1D thread, SelectiveScanProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real Δ = x.Delta[thread] + x.BiasOf(thread / x.L % x.D);
        x.Δ[thread] = x.Softplus != 0 ? StateSpaceMath.Softplus(Δ) : Δ;
    }

    /// <summary>Mamba.Recurrent for channel d of one sequence: the states n one after another, y_t summed into o in order.</summary>
    public static void Recurrent<Real>(Index1D thread, SelectiveScanProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        SequenceSlice seq = x.Sequences[thread / x.D];
        int d = thread % x.D, b = seq.Batch;
        for (int n = 0; n < x.N; n++)
        {
            Real A = x.A[x.Mode(d, n)], state = x.S[x.State(seq, d, n)];
            for (int t = seq.Start; t < seq.Start + seq.Length; t++)
            {
                long row = x.Row(b, d, t);
                Real Δ = x.Δ[row];
                // x_t[n] = exp(Δ_t A_dn) x_{t−1}[n] + Δ_t B_t[n] u_t,   y_t += C_t[n] x_t[n]
                state = (GpuMath.Exp(A * Δ) * state) + (x.BAt(b, d, n, t) * Δ * x.U[row]);
                x.O[row] += x.CAt(b, d, n, t) * state;
            }
            x.S[x.State(seq, d, n)] = state;
        }
    }

    /// <summary>Scan step 1 for (block j, d, n): its pairs composed from the identity, (α, β) of its last step kept.</summary>
    public static void ScanBlocks<Real>(Index1D thread, SelectiveScanProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int n = thread % x.N, d = thread / x.N % x.D, j = thread / x.N / x.D;
        var (α, β) = LocalScan(x, j, d, n, Real.Zero, last: true);
        x.AlphaEnd[x.BlockEnd(j, d, n)] = α;
        x.BetaEnd[x.BlockEnd(j, d, n)] = β;
    }

    /// <summary>Scan step 2 for (sequence, d, n): the carry entering each block, in order; the last one is the final state.</summary>
    public static void ScanCarries<Real>(Index1D thread, SelectiveScanProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int n = thread % x.N, d = thread / x.N % x.D, s = thread / x.N / x.D;
        SequenceSlice seq = x.Sequences[s];
        Real c = x.S[x.State(seq, d, n)];
        for (int j = x.FirstBlock[s]; j < x.FirstBlock[s + 1]; j++)
        {
            long at = x.BlockEnd(j, d, n);
            x.Carry[at] = c;
            c = (x.AlphaEnd[at] * c) + x.BetaEnd[at];
        }
        x.S[x.State(seq, d, n)] = c;
    }

    /// <summary>Scan step 3 for (block j, d): x_t = α_t c_j + β_t for each n in order, y_t += C_t[n] x_t into o.</summary>
    public static void ScanFixUp<Real>(Index1D thread, SelectiveScanProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int d = thread % x.D, j = thread / x.D;
        for (int n = 0; n < x.N; n++)
        {
            LocalScan(x, j, d, n, x.Carry[x.BlockEnd(j, d, n)], last: false);
        }
    }

    /// <summary>o_t = (y_t + D_d u_t) · silu(z_t) at step t of channel d of batch entry b (y_t is o_t on entry).</summary>
    public static void Output<Real>(Index1D thread, SelectiveScanProblem<Real> x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real y = x.O[thread] + (x.SkipOf(thread / x.L % x.D) * x.U[thread]);
        x.O[thread] = x.Z.Length > 0 ? y * StateSpaceMath.Silu(x.Z[thread]) : y;
    }

    /// <summary>
    /// Block j's local scan of (d, n): (α, β) ← (a_t α, a_t β + b_t) from (1, 0) with a_t = exp(Δ_t A_dn) and
    /// b_t = Δ_t B_t[n] u_t (BlockedScan step 1). The last (α, β) where <paramref name="last"/>; else step 3 as it goes:
    /// x_t = α_t c + β_t, y_t += C_t[n] x_t.
    /// </summary>
    private static (Real Alpha, Real Beta) LocalScan<Real>(SelectiveScanProblem<Real> x, int j, int d, int n, Real c, bool last)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        StepBlock block = x.Blocks[j];
        SequenceSlice seq = x.Sequences[block.Sequence];
        int b = seq.Batch;
        Real A = x.A[x.Mode(d, n)], α = Real.One, β = Real.Zero;
        for (int t = seq.Start + block.First; t < seq.Start + block.First + block.Length; t++)
        {
            long row = x.Row(b, d, t);
            Real Δ = x.Δ[row], a = GpuMath.Exp(Δ * A);
            (α, β) = (a * α, (a * β) + (Δ * x.BAt(b, d, n, t) * x.U[row]));
            if (!last)
            {
                x.O[row] += x.CAt(b, d, n, t) * ((α * c) + β);
            }
        }
        return (α, β);
    }
}
