using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>
/// The host of the diagonal-SSM bank (DiagonalSsmKernels.cs, S4dKernels.cs, H3Kernels.cs): s4d (a bank of H channels)
/// and h3 (a bank of H heads, after the shift SSM), from the call bound by the form's own contract and
/// <see cref="DiagonalSsm.ReadRealA"/>; then upload, discretise, launch, download.
/// <code>
///   s4d recurrent    Discretise, S4dKernels.Recurrent
///   s4d convolution  Discretise, ConvolutionKernel, S4dKernels.Convolution
///   s4d fft          Discretise, ConvolutionKernel, S4dKernels.FftTwiddles, S4dKernels.FftConvolution
///   h3 recurrent     H3Kernels.Shift, Discretise, H3Kernels.Recurrent
///   h3 convolution   H3Kernels.Shift, Discretise, ConvolutionKernel, H3Kernels.Convolution
/// </code>
/// Absent tensors (A_imag and C_imag with real_a, D, shift_D) are empty views, read as 0, as the reference reads them.
/// The convolution variants are quadratic in T by their definition (compute, not memory: K is [T,H]); fft's transforms
/// take 2·n complex values per (b, h), n the power of two ≥ 2T; h3 recurrent's scratch is T values per (b, h, j).
/// </summary>
internal static class DiagonalSsmBank
{
    /// <summary>The forms this engine runs.</summary>
    public static IReadOnlySet<string> Forms { get; } = new HashSet<string>(["s4d", "h3"], StringComparer.Ordinal);

    /// <summary>The output o of <paramref name="variant"/> of a call of s4d or h3.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string form, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        bool realA = DiagonalSsm.ReadRealA(problem);
        var (B, T, H, N) = (problem["B"], problem["T"], problem["H"], problem["N"]);
        using DeviceBuffers buffers = device.Buffers();
        var x = new DiagonalSsmProblem<Real>
        {
            B = B, T = T, H = H, N = N,
            PairFactor = realA ? Real.One : Real.One + Real.One,
            LogDt = buffers.Upload<Real>(problem.Input("log_dt")), AReal = buffers.Upload<Real>(problem.Input("A_real")),
            AImag = buffers.UploadOptional<Real>(problem, "A_imag"), CReal = buffers.Upload<Real>(problem.Input("C_real")),
            CImag = buffers.UploadOptional<Real>(problem, "C_imag"), D = buffers.UploadOptional<Real>(problem, "D"),
            DtA = buffers.Zeros<Complex<Real>>((long)H * N), ABar = buffers.Zeros<Complex<Real>>((long)H * N),
            BBar = buffers.Zeros<Complex<Real>>((long)H * N), C = buffers.Zeros<Complex<Real>>((long)H * N),
            CB = buffers.Zeros<Complex<Real>>((long)H * N),
        };
        int[] outputShape;
        if (form == "s4d")
        {
            x.U = buffers.Upload<Real>(problem.Input("u"));
            outputShape = [B, T, H];
        }
        else
        {
            (x.Dh, x.M) = (problem["d"], problem["M"]);
            (x.Q, x.K, x.V) = (buffers.Upload<Real>(problem.Input("q")), buffers.Upload<Real>(problem.Input("k")), buffers.Upload<Real>(problem.Input("v")));
            (x.Taps, x.ShiftD) = (buffers.Upload<Real>(problem.Input("shift_kernel")), buffers.UploadOptional<Real>(problem, "shift_D"));
            x.KShifted = buffers.Zeros<Real>(x.K.Length);
            outputShape = [B, T, H, x.Dh];
            device.Launch(H3Kernels.Shift, x.K.Length, x);                                                     // 1.
        }
        x.O = buffers.Zeros<Real>(outputShape.Aggregate(1L, (n, extent) => n * extent));
        device.Launch(DiagonalSsmKernels.Discretise, (long)H * N, x);
        if (variant != "recurrent")
        {
            x.Kernel = buffers.Zeros<Real>((long)T * H);
            device.Launch(DiagonalSsmKernels.ConvolutionKernel, (long)T * H, x);
        }
        switch ((form, variant))
        {
            case ("s4d", "recurrent"):
                device.Launch(S4dKernels.Recurrent, (long)B * H, x);
                break;
            case ("s4d", "convolution"):
                device.Launch(S4dKernels.Convolution, (long)B * T * H, x);
                break;
            case ("s4d", _):
                x.FftLength = FftLength(T);
                x.Twiddles = buffers.Zeros<Complex<Real>>(x.FftLength);
                x.UF = buffers.Zeros<Complex<Real>>((long)B * H * x.FftLength);
                x.KF = buffers.Zeros<Complex<Real>>((long)B * H * x.FftLength);
                device.Launch(S4dKernels.FftTwiddles, x.FftLength / 2, x);
                device.Launch(S4dKernels.FftConvolution, (long)B * H, x);
                break;
            case (_, "recurrent"):
                x.Y = buffers.Zeros<Real>((long)B * H * x.Dh * T);
                device.Launch(H3Kernels.Recurrent, (long)B * H * x.Dh, x);                                      // 2.–4.
                break;
            default:
                device.Launch(H3Kernels.Convolution, x.O.Length, x);                                             // 2.–4.
                break;
        }
        device.Synchronize();
        return new Dictionary<string, Tensor> { ["o"] = DeviceBuffers.Download(x.O, outputShape) };
    }

    /// <summary>The transform length of FftConvolution: the smallest power of two ≥ 2·max(T, 1), so no wrap-around.</summary>
    private static int FftLength(int T)
    {
        int n = 1;
        while (n < 2 * Math.Max(T, 1))
        {
            n <<= 1;
        }
        return n;
    }
}
