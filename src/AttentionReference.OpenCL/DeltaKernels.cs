using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/WyChunkwise.cl (delta_rule, gated_delta_rule, kda) and Kernels/Rwkv7.cl (rwkv7): binds the call through
/// the form's contract and reads the same options as the CPU form (<see cref="DeltaOptions"/>), uploads, launches,
/// downloads o and final_state.
/// </summary>
internal static class DeltaKernels
{
    /// <summary>Options the kernels implement; anything else is refused rather than silently ignored.</summary>
    private static readonly HashSet<string> s_supported = new(["scale", "use_qk_l2norm_in_kernel", "chunk_size"], StringComparer.Ordinal);
    private static readonly HashSet<string> s_supportedRwkv7 = new(["scale", "chunk_size"], StringComparer.Ordinal);

    private static readonly Dictionary<string, string> s_noKernelBecause = new(StringComparer.Ordinal)
    {
        ["parallel"] = "its single triangular solve over the whole sequence needs T x T scratch; the chunked kernel computes the same function: --variant chunked",
    };

    // Work-items per group of the chunked kernels: value columns, key channels and Gram entries are shared out.
    private const int GroupSize = 64;

    /// <summary>Runs <paramref name="form"/> (one of the four above) on the device.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(form);
        KernelSupport.Require(form.Name, variant, ["recurrent", "chunked"], parameters,
            form.Name == "rwkv7" ? s_supportedRwkv7 : s_supported, s_noKernelBecause);
        Problem problem = form.Contract.Bind(inputs, parameters);
        return form.Name == "rwkv7"
            ? RunRwkv7(context, precision, variant, problem)
            : RunDelta(context, precision, variant, problem);
    }

    private static Dictionary<string, Tensor> RunDelta(OpenClContext context, Precision precision, string variant, Problem problem)
    {
        DeltaOptions options = DeltaOptions.Read(problem);
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v"), beta = problem.Input("beta");
        Tensor? g = problem.Optional("g"), gk = problem.Optional("gk"), initialState = problem.Optional("initial_state");
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        int n = slices.Count, hv = problem["HV"], dk = problem["K"], dv = problem["V"];
        bool betaPerValue = problem.ShapeOf("beta").Length == 4;
        int mode = g is not null ? 1 : gk is not null ? 2 : 0;
        int c = Math.Max(1, Math.Min(options.ChunkSize, slices.Select(s => s.Length).DefaultIfEmpty(1).Max()));
        int[] oShape = [problem["B"], problem["T"], hv, dv];
        int oLength = (int)Tensor.ElementCount(oShape);
        if ((long)n * hv * dk * dv == 0 || oLength == 0 && initialState is null)
        {
            return Results(Tensor.Zeros(oShape), initialState?.Clone() ?? Tensor.Zeros(n, hv, dk, dv));
        }

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), betaBuffer = context.Upload(beta.Data, precision),
            gBuffer = context.Upload(g?.Data ?? gk?.Data ?? [], precision),
            s0Buffer = context.Upload(initialState?.Data ?? [], precision),
            seqBuffer = context.UploadInts(Sequences(slices)),
            oBuffer = context.Zeros(oLength, precision), sBuffer = context.Allocate(n * hv * dk * dv, precision);
        if (options.UseQkL2Norm)
        {
            using OpenClKernel l2 = context.Kernel("WyChunkwise.cl", "l2_normalise_rows", precision);
            foreach (DeviceBuffer x in new[] { qBuffer, kBuffer })
            {
                int rows = x.Length / Math.Max(1, dk);
                l2.Arg(0, x).Arg(1, rows).Arg(2, dk).Arg(3, QkL2Norm.Epsilon, precision);
                context.Run(l2, rows, local: 0);
            }
        }
        bool chunked = variant == "chunked";
        int nb = betaPerValue ? dv : 1;
        long scratchLength = chunked ? (long)n * hv * ((long)c * dk + 2L * c * c + (long)nb * c * c + (long)nb * c * dk + (long)c * dv) : 1;
        using DeviceBuffer scratch = context.Allocate(checked((int)scratchLength), precision);
        using OpenClKernel kernel = context.Kernel("WyChunkwise.cl", chunked ? "delta_chunked" : "delta_recurrent", precision);
        kernel.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, betaBuffer)
            .Arg(4, gBuffer).Arg(5, gBuffer).Arg(6, s0Buffer).Arg(7, seqBuffer).Arg(8, oBuffer).Arg(9, sBuffer);
        uint next = 10;
        if (chunked)
        {
            kernel.Arg(next++, scratch);
        }
        kernel.Arg(next++, n).Arg(next++, problem["T"]).Arg(next++, problem["H"]).Arg(next++, hv).Arg(next++, dk).Arg(next++, dv)
            .Arg(next++, betaPerValue ? 1 : 0).Arg(next++, mode).Arg(next++, initialState is null ? 0 : 1)
            .Arg(next++, options.Scale, precision);
        if (chunked)
        {
            kernel.Arg(next, c);
            context.Run(kernel, (long)n * hv * GroupSize, local: GroupSize);
        }
        else
        {
            context.Run(kernel, (long)n * hv * dv, local: 0);
        }
        return Results(new Tensor(oShape, context.Download(oBuffer)), new Tensor([n, hv, dk, dv], context.Download(sBuffer)));
    }

    private static Dictionary<string, Tensor> RunRwkv7(OpenClContext context, Precision precision, string variant, Problem problem)
    {
        var (scale, chunkSize) = ScaleAndChunk.Read(problem);
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v");
        Tensor a = problem.Input("a"), b = problem.Input("b"), gk = problem.Input("gk");
        Tensor? initialState = problem.Optional("initial_state");
        int batch = problem["B"], time = problem["T"], heads = problem["H"], dk = problem["K"], dv = problem["V"];
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        int n = slices.Count;
        int c = Math.Max(1, Math.Min(chunkSize, slices.Select(s => s.Length).DefaultIfEmpty(1).Max()));
        int[] oShape = [batch, time, heads, dv];
        int oLength = (int)Tensor.ElementCount(oShape);
        if ((long)n * heads * dk * dv == 0 || oLength == 0 && initialState is null)
        {
            return Results(Tensor.Zeros(oShape), initialState?.Clone() ?? Tensor.Zeros(n, heads, dk, dv));
        }

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), aBuffer = context.Upload(a.Data, precision),
            bBuffer = context.Upload(b.Data, precision), gkBuffer = context.Upload(gk.Data, precision),
            s0Buffer = context.Upload(initialState?.Data ?? [], precision),
            seqBuffer = context.UploadInts(Sequences(slices)),
            oBuffer = context.Zeros(oLength, precision), sBuffer = context.Allocate(n * heads * dk * dv, precision);
        bool chunked = variant == "chunked";
        long scratchLength = chunked ? (long)n * heads * (3L * c * dk + 5L * c * c + 2L * c * dv) : 1;
        using DeviceBuffer scratch = context.Allocate(checked((int)scratchLength), precision);
        using OpenClKernel kernel = context.Kernel("Rwkv7.cl", chunked ? "rwkv7_chunked" : "rwkv7_recurrent", precision);
        kernel.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, aBuffer).Arg(4, bBuffer).Arg(5, gkBuffer)
            .Arg(6, s0Buffer).Arg(7, seqBuffer).Arg(8, oBuffer).Arg(9, sBuffer);
        uint next = 10;
        if (chunked)
        {
            kernel.Arg(next++, scratch);
        }
        kernel.Arg(next++, n).Arg(next++, time).Arg(next++, heads).Arg(next++, dk).Arg(next++, dv)
            .Arg(next++, initialState is null ? 0 : 1).Arg(next++, scale, precision);
        if (chunked)
        {
            kernel.Arg(next, c);
            context.Run(kernel, (long)n * heads * GroupSize, local: GroupSize);
        }
        else
        {
            context.Run(kernel, (long)n * heads * dv, local: 0);
        }
        return Results(new Tensor(oShape, context.Download(oBuffer)), new Tensor([n, heads, dk, dv], context.Download(sBuffer)));
    }

    /// <summary>(batch, start, length) per sequence, as the kernels read them.</summary>
    private static int[] Sequences(IReadOnlyList<SequenceSlice> slices)
    {
        var packed = new int[3 * slices.Count];
        for (int i = 0; i < slices.Count; i++)
        {
            (packed[3 * i], packed[3 * i + 1], packed[3 * i + 2]) = (slices[i].Batch, slices[i].Start, slices[i].Length);
        }
        return packed;
    }

    private static Dictionary<string, Tensor> Results(Tensor o, Tensor finalState) =>
        new() { ["o"] = o, ["final_state"] = finalState };
}
