using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>Runs Kernels/Forgetting.cl (naive: the streaming row kernel; tiled: the FA2-blocked kernel where it fits) on a call bound to forgetting's contract: uploads, launches, downloads.</summary>
internal static class ForgettingKernels
{
    // Forgetting.cl's forgetting_tiled: BR query rows × BC keys per work-group, ≤ 16 output columns per work-item.
    private const int TileRows = 16, TileKeys = 8, MaxTiledV = TileKeys * 16;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        if (variant is not ("naive" or "tiled"))
        {
            throw new InputException($"--backend opencl: unknown variant '{variant}' of forgetting; variants on opencl: naive, tiled");
        }
        // The CPU form's binding (shapes, GQA, cu_seqlens, block sizes), with its messages.
        Problem problem = form.Contract.Bind(inputs, parameters);
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v"), g = problem.Input("g");
        int batch = problem["B"], t = problem["T"], hq = problem["Hq"], hkv = problem["Hkv"], dk = problem["K"], dv = problem["V"];
        var sequences = problem.Sequences.Select(s => new SequenceSlice(s.Batch, s.Steps("T").Start, s.Steps("T").Length, s.Index)).ToArray();
        double scale = SoftmaxSpecs.ScaleOf(problem);
        var sequenceStart = new int[t];
        foreach (SequenceSlice sequence in sequences)
        {
            Array.Fill(sequenceStart, sequence.Start, sequence.Start, sequence.Length);
        }

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), gBuffer = context.Upload(g.Data, precision),
            oBuffer = context.Allocate(batch * t * hq * dv, precision), lseBuffer = context.Allocate(batch * t * hq, precision);
        int size = OpenClContext.ElementSize(precision);
        long localBytes = (long)size * (TileRows * (dk + 1) + TileKeys * (dk + 1) + TileKeys * dv + TileRows * TileKeys);
        // The tiled kernel keeps a row's output columns in registers (V ≤ 128) and a Q block plus one K and V tile in
        // local memory; where either does not fit, the streaming row kernel computes the same function.
        if (variant == "tiled" && dv <= MaxTiledV && localBytes <= context.Device.LocalMemoryBytes)
        {
            var blocks = new List<int>();
            foreach (SequenceSlice sequence in sequences)
            {
                for (int q0 = 0; q0 < sequence.Length; q0 += TileRows)
                {
                    blocks.AddRange([sequence.Batch, sequence.Start, sequence.Length, q0]);
                }
            }
            using DeviceBuffer blockBuffer = context.UploadInts(blocks.ToArray());
            using OpenClKernel tiled = context.Kernel("Forgetting.cl", "forgetting_tiled", precision);
            int blockCount = blocks.Count / 4;
            tiled.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, gBuffer).Arg(4, oBuffer).Arg(5, lseBuffer).Arg(6, blockBuffer)
                .Arg(7, blockCount).Arg(8, t).Arg(9, hq).Arg(10, hkv).Arg(11, dk).Arg(12, dv).Arg(13, scale, precision)
                .LocalArg(14, (long)size * TileRows * (dk + 1)).LocalArg(15, (long)size * TileKeys * (dk + 1))
                .LocalArg(16, (long)size * Math.Max(1, TileKeys * dv)).LocalArg(17, (long)size * TileRows * TileKeys);
            context.Run(tiled, (long)blockCount * hq * TileRows * TileKeys, local: TileRows * TileKeys);
        }
        else
        {
            using DeviceBuffer startBuffer = context.UploadInts(sequenceStart);
            using OpenClKernel kernel = context.Kernel("Forgetting.cl", "forgetting_rows", precision);
            kernel.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, gBuffer).Arg(4, oBuffer).Arg(5, lseBuffer).Arg(6, startBuffer)
                .Arg(7, batch).Arg(8, t).Arg(9, hq).Arg(10, hkv).Arg(11, dk).Arg(12, dv).Arg(13, scale, precision);
            context.Run(kernel, (long)batch * t * hq, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([batch, t, hq, dv], context.Download(oBuffer)),
            ["lse"] = new Tensor([batch, t, hq], context.Download(lseBuffer)),
        };
    }
}
