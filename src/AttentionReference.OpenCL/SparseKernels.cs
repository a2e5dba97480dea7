using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Sparse.cl on a call bound to sparse's contract, with the options and the checked layout and global
/// tokens the CPU form reads (same errors); uploads, launches, downloads.
/// </summary>
internal static class SparseKernels
{
    private const int Block = 0, Longformer = 1, BigBird = 2;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        int pattern = variant switch
        {
            "block" => Block,
            "longformer" => Longformer,
            "bigbird" => BigBird,
            _ => throw new InputException($"--backend opencl: unknown variant '{variant}' of sparse; variants on opencl: block, longformer, bigbird"),
        };
        Problem problem = form.Contract.Bind(inputs, parameters);
        var options = SparseOptions.Read(problem);
        int batch = problem["B"], tq = problem["Tq"], tk = problem["Tk"], hq = problem["Hq"], dv = problem["V"];
        // The CPU form's checks, in its order: the pattern's own (bigbird's shapes), the layout, the global tokens.
        _ = pattern switch
        {
            Block => Sparse.Block(problem, options),
            Longformer => Sparse.Longformer(problem, options),
            _ => Sparse.BigBird(problem, options),
        };
        BlockLayout? layout = pattern == Longformer ? null : BlockLayout.Read(problem, options, variant);
        var global = new int[Math.Max(1, tk)]; // membership over the Tk key positions
        if (pattern != Block)
        {
            bool[] tokens = Sparse.GlobalTokens(problem);
            for (int j = 0; j < tk; j++)
            {
                global[j] = tokens[j] ? 1 : 0;
            }
        }

        using DeviceBuffer qBuffer = context.Upload(problem.Input("q").Data, precision), kBuffer = context.Upload(problem.Input("k").Data, precision),
            vBuffer = context.Upload(problem.Input("v").Data, precision),
            layoutBuffer = context.UploadInts(layout?.Cells.Select(cell => (int)cell).ToArray() ?? [0]), globalBuffer = context.UploadInts(global),
            oBuffer = context.Allocate(batch * tq * hq * dv, precision), lseBuffer = context.Allocate(batch * tq * hq, precision);
        using OpenClKernel kernel = context.Kernel("Sparse.cl", "sparse_rows", precision);
        kernel.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, layoutBuffer).Arg(4, globalBuffer).Arg(5, oBuffer).Arg(6, lseBuffer)
            .Arg(7, batch).Arg(8, tq).Arg(9, tk).Arg(10, hq).Arg(11, problem["Hkv"]).Arg(12, problem["K"]).Arg(13, dv)
            .Arg(14, options.Scale, precision)
            .Arg(15, options.Causal ? 1 : 0).Arg(16, pattern).Arg(17, options.BlockQ).Arg(18, options.BlockK)
            .Arg(19, layout?.Heads ?? 1).Arg(20, pattern == BigBird ? options.WindowBlocks : options.WindowKeys);
        context.Run(kernel, (long)batch * tq * hq, local: 64);
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([batch, tq, hq, dv], context.Download(oBuffer)),
            ["lse"] = new Tensor([batch, tq, hq], context.Download(lseBuffer)),
        };
    }
}
