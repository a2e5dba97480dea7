using AttentionReference.Forms;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/H3.cl: binds the call through the CPU form's contract (and <see cref="DiagonalSsm.ReadRealA"/>), uploads, applies the shift SSM to k, discretises the diagonal SSM, then runs it as a recurrence or as a
/// direct causal convolution and contracts with q, and downloads. recurrent and convolution, with complex or real
/// (real_a) modes, D and shift_D.
/// </summary>
internal static class H3Kernels
{
    private static readonly HashSet<string> s_parameters = new(["real_a"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("h3", variant, ["recurrent", "convolution"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        double pairFactor = DiagonalSsm.ReadRealA(problem) ? 1 : 2;
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v");
        int B = problem["B"], T = problem["T"], H = problem["H"], d = problem["d"], M = problem["M"], N = problem["N"];
        long rows = (long)B * T * H * d;

        using var diagonal = DiagonalSsmBuffers.Upload(context, precision, problem, H, N);
        using DeviceBuffer qb = context.Upload(q.Data, precision), kb = context.Upload(k.Data, precision), vb = context.Upload(v.Data, precision),
            taps = context.Upload(problem.Input("shift_kernel").Data, precision),
            shiftD = context.UploadOrZeros(problem.Optional("shift_D")?.Data, H * d, precision),
            kTilde = context.Allocate((int)rows, precision), o = context.Zeros(checked((int)rows), precision);
        using (OpenClKernel kernel = context.Kernel("H3.cl", "h3_shift", precision))
        {
            kernel.Arg(0, kb).Arg(1, taps).Arg(2, shiftD).Arg(3, kTilde).Arg(4, B).Arg(5, T).Arg(6, H).Arg(7, d).Arg(8, M);
            context.Run(kernel, rows, local: 64);
        }
        if (variant == "recurrent")
        {
            using DeviceBuffer y = context.Allocate((int)rows, precision);
            using OpenClKernel kernel = context.Kernel("H3.cl", "h3_recurrent", precision);
            kernel.Arg(0, qb).Arg(1, kTilde).Arg(2, vb).Arg(3, diagonal.Disc).Arg(4, diagonal.CReal).Arg(5, diagonal.CImag)
                .Arg(6, diagonal.D).Arg(7, y).Arg(8, o).Arg(9, B).Arg(10, T).Arg(11, H).Arg(12, d).Arg(13, N).Arg(14, pairFactor, precision);
            context.Run(kernel, (long)B * H * d, local: 64);
        }
        else
        {
            using DeviceBuffer K = diagonal.ConvolutionKernel(context, precision, T, pairFactor);
            using OpenClKernel convolve = context.Kernel("H3.cl", "h3_convolve", precision);
            convolve.Arg(0, qb).Arg(1, kTilde).Arg(2, vb).Arg(3, K).Arg(4, diagonal.D).Arg(5, o).Arg(6, B).Arg(7, T).Arg(8, H).Arg(9, d);
            context.Run(convolve, rows, local: 64);
        }
        return new Dictionary<string, Tensor> { ["o"] = new Tensor([B, T, H, d], context.Download(o)) };
    }
}
