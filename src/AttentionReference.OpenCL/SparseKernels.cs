using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>Runs Kernels/Sparse.cl: checks the inputs as the CPU form does (same order, same messages), uploads, launches, downloads.</summary>
internal static class SparseKernels
{
    private const int Block = 0, Longformer = 1, BigBird = 2;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        int pattern = variant switch
        {
            "block" => Block,
            "longformer" => Longformer,
            "bigbird" => BigBird,
            _ => throw new InputException($"--backend opencl: unknown variant '{variant}' of sparse; variants on opencl: block, longformer, bigbird"),
        };
        Tensor q = inputs["q"], k = inputs["k"], v = inputs["v"];
        int blockQ = parameters.GetInt("block_q", 64), blockK = parameters.GetInt("block_k", 64);
        int window = parameters.GetInt("window", 256), windowBlocks = parameters.GetInt("window_blocks", 1);
        var dims = new Dims();
        dims.Bind("q", Dims.RequireFloat("q", q), "B,Tq,Hq,K");
        dims.Bind("k", Dims.RequireFloat("k", k), "B,Tk,Hkv,K");
        dims.Bind("v", Dims.RequireFloat("v", v), "B,Tk,Hkv,V");
        int batch = dims["B"], tq = dims["Tq"], tk = dims["Tk"], hq = dims["Hq"], hkv = dims["Hkv"], dk = dims["K"], dv = dims["V"];
        if (hkv == 0 ? hq != 0 : hq % hkv != 0)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"the number of key/value heads Hkv = {hkv} must divide the number of query heads Hq = {hq} (GQA/MQA)"), tensor: "k");
        }
        if (blockQ < 1 || blockK < 1)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"block sizes must be ≥ 1, found block_q = {blockQ}, block_k = {blockK}"));
        }

        int[] layout = [0];
        int layoutHeads = 1, patternWindow = window;
        int[] global = new int[Math.Max(1, tk)];
        if (pattern == Longformer)
        {
            if (window < 0)
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture, $"window must be ≥ 0 (keys on each side), found {window}"));
            }
            GlobalTokens(inputs.GetValueOrDefault("global_tokens"), tk, global);
        }
        else
        {
            if (pattern == BigBird)
            {
                if (tq != tk || blockQ != blockK)
                {
                    throw new InputException(string.Create(CultureInfo.InvariantCulture,
                        $"bigbird is self-attention with one block size: needs Tq = Tk and block_q = block_k, found Tq = {tq}, Tk = {tk}, block_q = {blockQ}, block_k = {blockK}"));
                }
                if (windowBlocks < 0)
                {
                    throw new InputException(string.Create(CultureInfo.InvariantCulture, $"window_blocks must be ≥ 0 (blocks on each side), found {windowBlocks}"));
                }
                patternWindow = windowBlocks;
            }
            Tensor blockMask = inputs.GetValueOrDefault("block_mask")
                ?? throw new InputException($"missing: the {variant} variant needs it (expected shape [Hq,Nq,Nk] or [1,Nq,Nk])", tensor: "block_mask");
            layout = Layout(blockMask, tq, tk, hq, blockQ, blockK);
            layoutHeads = blockMask.Dim(0);
            if (pattern == BigBird)
            {
                GlobalTokens(inputs.GetValueOrDefault("global_tokens"), tk, global);
            }
        }

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), layoutBuffer = context.UploadInts(layout), globalBuffer = context.UploadInts(global),
            oBuffer = context.Allocate(batch * tq * hq * dv, precision), lseBuffer = context.Allocate(batch * tq * hq, precision);
        using OpenClKernel kernel = context.Kernel("Sparse.cl", "sparse_rows", precision);
        kernel.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, layoutBuffer).Arg(4, globalBuffer).Arg(5, oBuffer).Arg(6, lseBuffer)
            .Arg(7, batch).Arg(8, tq).Arg(9, tk).Arg(10, hq).Arg(11, hkv).Arg(12, dk).Arg(13, dv)
            .Arg(14, parameters.GetOptionalDouble("scale") ?? 1 / Math.Sqrt(dk), precision)
            .Arg(15, parameters.GetBool("causal", false) ? 1 : 0).Arg(16, pattern).Arg(17, blockQ).Arg(18, blockK)
            .Arg(19, layoutHeads).Arg(20, patternWindow);
        context.Run(kernel, (long)batch * tq * hq, local: 64);
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([batch, tq, hq, dv], context.Download(oBuffer)),
            ["lse"] = new Tensor([batch, tq, hq], context.Download(lseBuffer)),
        };
    }

    /// <summary>The 0/1 layout [Hq or 1, ceil(Tq/Bq), ceil(Tk/Bk)] as ints, checked as Sparse's BlockLayout.Bind.</summary>
    private static int[] Layout(Tensor layout, int tq, int tk, int hq, int blockQ, int blockK)
    {
        Dims.RequireInteger("block_mask", layout);
        int rows = (tq + blockQ - 1) / blockQ, columns = (tk + blockK - 1) / blockK;
        if (layout.Rank != 3 || (layout.Dim(0) != hq && layout.Dim(0) != 1) || layout.Dim(1) != rows || layout.Dim(2) != columns)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"expected shape [Hq,Nq,Nk] = [{hq},{rows},{columns}] or [1,{rows},{columns}] (Nq = ceil(Tq/block_q), Nk = ceil(Tk/block_k)), found {layout.ShapeString}"),
                tensor: "block_mask");
        }
        foreach (double cell in layout.Data)
        {
            if (cell is not (0 or 1))
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture, $"expected 0/1 entries, found {cell}"), tensor: "block_mask");
            }
        }
        return layout.Data.Select(cell => (int)cell).ToArray();
    }

    /// <summary>global_tokens [G] as a membership table over the Tk key positions, checked as Sparse's GlobalTokens.</summary>
    private static void GlobalTokens(Tensor? globalTokens, int tk, int[] global)
    {
        if (globalTokens is null)
        {
            return;
        }
        Dims.RequireInteger("global_tokens", globalTokens);
        if (globalTokens.Rank != 1)
        {
            throw new InputException($"expected shape [G], found {globalTokens.ShapeString}", tensor: "global_tokens");
        }
        foreach (double index in globalTokens.Data)
        {
            if (!(index >= 0 && index < tk))
            {
                throw new InputException(string.Create(CultureInfo.InvariantCulture,
                    $"token index {index} is outside [0, Tk) = [0, {tk})"), tensor: "global_tokens");
            }
            global[(int)index] = 1;
        }
    }
}
