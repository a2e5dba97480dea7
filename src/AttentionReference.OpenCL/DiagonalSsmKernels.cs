using AttentionReference.Forms;

namespace AttentionReference.OpenCL;

/// <summary>
/// The diagonal SSM of S4D and H3 on the device (Kernels/DiagonalSsm.cl, the twin of Forms/StateSpace/DiagonalSsm.cs):
/// its parameters (A_imag, C_imag as zeros with real_a, D as zeros if absent: the reference's arithmetic with those
/// zeros is the real arithmetic exactly), the discretisation disc [H,N,8] (dtA, Ā, B̄, C·B̄) and, for the convolution
/// variants, the kernel K [L,H].
/// </summary>
internal sealed class DiagonalSsmBuffers : IDisposable
{
    private readonly int _h, _n;

    private DiagonalSsmBuffers(DeviceBuffer cReal, DeviceBuffer cImag, DeviceBuffer d, DeviceBuffer disc, int h, int n) =>
        (CReal, CImag, D, Disc, _h, _n) = (cReal, cImag, d, disc, h, n);

    public DeviceBuffer CReal { get; }
    public DeviceBuffer CImag { get; }
    public DeviceBuffer D { get; }
    public DeviceBuffer Disc { get; }

    /// <summary>Uploads the diagonal SSM of a bound call (H channels of N modes) and discretises it.</summary>
    public static DiagonalSsmBuffers Upload(OpenClContext context, Precision precision, Problem problem, int H, int N)
    {
        using DeviceBuffer logDt = context.Upload(problem.Input("log_dt").Data, precision), aReal = context.Upload(problem.Input("A_real").Data, precision),
            aImag = context.UploadOrZeros(problem.Optional("A_imag")?.Data, H * N, precision);
        var buffers = new DiagonalSsmBuffers(context.Upload(problem.Input("C_real").Data, precision),
            context.UploadOrZeros(problem.Optional("C_imag")?.Data, H * N, precision),
            context.UploadOrZeros(problem.Optional("D")?.Data, H, precision), context.Allocate(H * N * 8, precision), H, N);
        try
        {
            using OpenClKernel kernel = context.Kernel("DiagonalSsm.cl", "diagonal_ssm_discretise", precision);
            kernel.Arg(0, logDt).Arg(1, aReal).Arg(2, aImag).Arg(3, buffers.CReal).Arg(4, buffers.CImag).Arg(5, buffers.Disc).Arg(6, H).Arg(7, N);
            context.Run(kernel, (long)H * N, local: 64);
            return buffers;
        }
        catch
        {
            buffers.Dispose();
            throw;
        }
    }

    /// <summary>K_l = Σ_n f·Re(C_n B̄_n exp(l·dtA_n)) for l &lt; <paramref name="length"/>, stored [L,H]; f = <paramref name="pairFactor"/>.</summary>
    public DeviceBuffer ConvolutionKernel(OpenClContext context, Precision precision, int length, double pairFactor)
    {
        DeviceBuffer K = context.Allocate(length * _h, precision);
        try
        {
            using OpenClKernel kernel = context.Kernel("DiagonalSsm.cl", "diagonal_ssm_convolution_kernel", precision);
            kernel.Arg(0, Disc).Arg(1, K).Arg(2, _h).Arg(3, _n).Arg(4, length).Arg(5, pairFactor, precision);
            context.Run(kernel, (long)length * _h, local: 64);
            return K;
        }
        catch
        {
            K.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        CReal.Dispose();
        CImag.Dispose();
        D.Dispose();
        Disc.Dispose();
    }
}
