using AttentionReference.Forms;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/S4d.cl (and DiagonalSsm.cl, through <see cref="DiagonalSsmBuffers"/>): binds the call through the CPU
/// form's contract (and <see cref="DiagonalSsm.ReadRealA"/>), uploads, discretises per (channel, mode), then runs the
/// recurrence or the direct causal convolution, and downloads. recurrent and convolution, with complex or real (real_a) modes and D.
/// fft is refused as unsupported: it has no kernel (the convolution variant computes the same o directly); s4d has no
/// initial state and no varlen, so there is none to carry.
/// </summary>
internal static class S4dKernels
{
    private static readonly HashSet<string> s_parameters = new(["real_a"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("s4d", variant, ["recurrent", "convolution"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        double pairFactor = DiagonalSsm.ReadRealA(problem) ? 1 : 2;
        Tensor u = problem.Input("u");
        int B = problem["B"], T = problem["T"], H = problem["H"], N = problem["N"];

        using var diagonal = DiagonalSsmBuffers.Upload(context, precision, problem, H, N);
        using DeviceBuffer ub = context.Upload(u.Data, precision), o = context.Zeros(B * T * H, precision);
        if (variant == "recurrent")
        {
            using OpenClKernel kernel = context.Kernel("S4d.cl", "s4d_recurrent", precision);
            kernel.Arg(0, ub).Arg(1, diagonal.Disc).Arg(2, diagonal.CReal).Arg(3, diagonal.CImag).Arg(4, diagonal.D).Arg(5, o)
                .Arg(6, B).Arg(7, T).Arg(8, H).Arg(9, N).Arg(10, pairFactor, precision);
            context.Run(kernel, (long)B * H, local: 64);
        }
        else
        {
            using DeviceBuffer K = diagonal.ConvolutionKernel(context, precision, T, pairFactor);
            using OpenClKernel convolve = context.Kernel("S4d.cl", "s4d_convolve", precision);
            convolve.Arg(0, ub).Arg(1, K).Arg(2, diagonal.D).Arg(3, o).Arg(4, B).Arg(5, T).Arg(6, H);
            context.Run(convolve, (long)B * T * H, local: 64);
        }
        return new Dictionary<string, Tensor> { ["o"] = new Tensor([B, T, H], context.Download(o)) };
    }
}
