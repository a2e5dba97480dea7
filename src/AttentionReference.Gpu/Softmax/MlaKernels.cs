using System.Numerics;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The kernels of Forms/Softmax/Mla.cs beyond the attention itself, which is softmax's tiled engine
/// (FlashAttentionKernels.Forward) once the RoPE part is appended to the other part of the score,
/// q'·k' = q_nope·kn + q_pe·k_pe (MlaHost has the buffers):
/// <code>
///   naive:    kn_j = W_UK[h] c_j,  v_j = W_UV[h] c_j                         Project
///             q' = [q_nope ; q_pe],  k' = [kn ; k_pe]                         Place
///   absorbed: ql_i = W_UK[h]ᵀ q_nope_i                                        Project
///             q'' = [ql ; q_pe],  k'' = [c ; k_pe] (one key head for all H)   Place
///             o_i = W_UV[h] ol_i                                              Project
/// </code>
/// </summary>
internal static class MlaKernels
{
    /// <summary>
    /// y_h = x_h w_h for every head h, one thread per output: y_h[m, n] = Σ_e x_h[m, e] · w_h[e, n], summed over e in
    /// order (the up-projections W c and W ol, and the absorbed query Wᵀ q_nope).
    /// </summary>
    public static void Project<Real>(Index1D item, MlaProduct<Real> p) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long n = item % p.N, m = item / p.N % p.M, h = item / p.N / p.M;
        long x = h * p.XHead + m * p.Ldx, w = h * p.WHead + n * p.WN;
        Real y = Real.Zero;
        for (int e = 0; e < p.E; e++)
        {
            y += p.X[x + e] * p.W[w + e * p.WE];
        }
        p.Y[h * p.YHead + m * p.Ldy + n] = y;
    }

    /// <summary>
    /// One part of concatenated rows: dst[r, offset + d] = src[r / share, d] for d &lt; width (share = H gives each of
    /// the H heads of key j the one row k_pe_j; share = 1 copies row for row).
    /// </summary>
    public static void Place<Real>(Index1D item, MlaPlacement<Real> p) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long r = item / p.Width;
        int d = (int)(item % p.Width);
        p.Destination[r * p.DestinationWidth + p.Offset + d] = p.Source[r / p.Share * p.Width + d];
    }
}

/// <summary>
/// A product per head for <see cref="MlaKernels.Project"/>: x_h[m, e] = X[h·XHead + m·Ldx + e],
/// w_h[e, n] = W[h·WHead + e·WE + n·WN], y_h[m, n] = Y[h·YHead + m·Ldy + n], for m &lt; M, n &lt; N, e &lt; E.
/// </summary>
internal struct MlaProduct<Real> where Real : unmanaged
{
    public ArrayView<Real> X, W, Y;
    public long M, N, E, XHead, Ldx, WHead, WE, WN, YHead, Ldy;
}

/// <summary>Columns [Offset, Offset + Width) of Destination's rows of DestinationWidth from Source's rows of Width (<see cref="MlaKernels.Place"/>).</summary>
internal struct MlaPlacement<Real> where Real : unmanaged
{
    public ArrayView<Real> Destination, Source;
    public int DestinationWidth, Offset, Width, Share;
}
