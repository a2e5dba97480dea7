using AttentionReference.Forms;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/H3.cl: reads the inputs with the CPU form's own wiring, checks them with <see cref="H3"/>'s own
/// binding, uploads, applies the shift SSM to k, discretises the diagonal SSM, then runs it as a recurrence or as a
/// direct causal convolution and contracts with q, and downloads. recurrent and convolution, with complex or real
/// (real_a) modes, D and shift_D.
/// </summary>
internal static class H3Kernels
{
    private static readonly HashSet<string> s_parameters = new(["real_a"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("h3", variant, ["recurrent", "convolution"], parameters, s_parameters);
        DiagonalSsm ssm = DiagonalSsmWiring.Read(inputs, parameters);
        var shift = new H3Shift(inputs["shift_kernel"], inputs.GetValueOrDefault("shift_D"));
        Tensor q = inputs["q"], k = inputs["k"], v = inputs["v"];
        Dims dims = H3.Bind(q, k, v, shift, ssm);
        int B = dims["B"], T = dims["T"], H = dims["H"], d = dims["d"], M = dims["M"], N = dims["N"];
        long rows = (long)B * T * H * d;

        using var diagonal = DiagonalSsmBuffers.Upload(context, precision, ssm, H, N);
        using DeviceBuffer qb = context.Upload(q.Data, precision), kb = context.Upload(k.Data, precision), vb = context.Upload(v.Data, precision),
            taps = context.Upload(shift.Kernel.Data, precision), shiftD = context.UploadOrZeros(shift.D?.Data, H * d, precision),
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
                .Arg(6, diagonal.D).Arg(7, y).Arg(8, o).Arg(9, B).Arg(10, T).Arg(11, H).Arg(12, d).Arg(13, N).Arg(14, ssm.PairFactor, precision);
            context.Run(kernel, (long)B * H * d, local: 64);
        }
        else
        {
            using DeviceBuffer K = diagonal.ConvolutionKernel(context, precision, T, ssm.PairFactor);
            using OpenClKernel convolve = context.Kernel("H3.cl", "h3_convolve", precision);
            convolve.Arg(0, qb).Arg(1, kTilde).Arg(2, vb).Arg(3, K).Arg(4, diagonal.D).Arg(5, o).Arg(6, B).Arg(7, T).Arg(8, H).Arg(9, d);
            context.Run(convolve, rows, local: 64);
        }
        return new Dictionary<string, Tensor> { ["o"] = new Tensor([B, T, H, d], context.Download(o)) };
    }
}
