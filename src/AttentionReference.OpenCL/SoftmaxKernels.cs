using AttentionReference.Forms;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>Runs Kernels/Softmax.cl: checks the inputs as the CPU form does, uploads, launches, downloads.</summary>
internal static class SoftmaxKernels
{
    /// <summary>Options the kernel implements; anything else is refused rather than silently ignored.</summary>
    private static readonly HashSet<string> s_supported =
        new(["scale", "causal", "causal_align", "window_left", "window_right", "softcap",
             // The CPU tiled variant's block sizes change only its summation order; the kernel's tiles are its own.
             "block_q", "block_k"], StringComparer.Ordinal);

    // Softmax.cl's softmax_tiled: BR query rows × BC keys per work-group, ≤ 16 output columns per work-item.
    private const int TileRows = 16, TileKeys = 8, MaxTiledV = TileKeys * 16;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        if (variant is not ("naive" or "tiled"))
        {
            throw new InputException($"--backend opencl: softmax variant '{variant}' has no OpenCL kernel yet; variants on opencl: naive, tiled");
        }
        foreach (string key in parameters.Values.Keys.Where(key => !s_supported.Contains(key)))
        {
            throw new InputException($"--backend opencl: softmax parameter '{key}' is not supported by the OpenCL kernel yet");
        }
        foreach (string name in inputs.Keys.Where(n => n is not ("q" or "k" or "v" or "alibi_slopes")))
        {
            throw new InputException($"--backend opencl: softmax input '{name}' is not supported by the OpenCL kernel yet");
        }
        Tensor q = inputs["q"], k = inputs["k"], v = inputs["v"];
        Tensor? slopes = inputs.GetValueOrDefault("alibi_slopes");
        var dims = new Dims();
        dims.Bind("q", q, "B,Tq,Hq,K");
        dims.Bind("k", k, "B,Tk,Hkv,K");
        dims.Bind("v", v, "B,Tk,Hkv,V");
        if (slopes is not null)
        {
            dims.Bind("alibi_slopes", slopes, slopes.Rank == 2 ? "B,Hq" : "Hq");
        }
        int batch = dims["B"], tq = dims["Tq"], tk = dims["Tk"], hq = dims["Hq"], hkv = dims["Hkv"], dk = dims["K"], dv = dims["V"];
        if (hkv == 0 || hq % hkv != 0)
        {
            throw new InputException($"the number of key/value heads Hkv = {hkv} must divide the number of query heads Hq = {hq} (GQA/MQA)", tensor: "k");
        }
        bool causal = parameters.GetBool("causal", false);
        bool topLeft = parameters.GetChoice("causal_align", "bottom_right", "bottom_right", "top_left") == "top_left";
        int windowLeft = parameters.GetInt("window_left", -1);
        int windowRight = causal ? 0 : parameters.GetInt("window_right", -1);

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), slopeBuffer = context.Upload(slopes?.Data ?? [], precision),
            oBuffer = context.Allocate(batch * tq * hq * dv, precision), lseBuffer = context.Allocate(batch * tq * hq, precision);
        int size = OpenClContext.ElementSize(precision);
        long localBytes = (long)size * (TileRows * (dk + 1) + TileKeys * (dk + 1) + TileKeys * dv + TileRows * TileKeys);
        // The tiled kernel keeps a row's output columns in registers (V ≤ 128) and a Q block plus one K and V tile
        // in local memory; where either does not fit, the streaming row kernel computes the same function.
        bool tiled = variant == "tiled" && dv <= MaxTiledV && localBytes <= context.Device.LocalMemoryBytes;
        using OpenClKernel kernel = context.Kernel("Softmax.cl", tiled ? "softmax_tiled" : "softmax_rows", precision);
        kernel.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, slopeBuffer).Arg(4, oBuffer).Arg(5, lseBuffer)
            .Arg(6, batch).Arg(7, tq).Arg(8, tk).Arg(9, hq).Arg(10, hkv).Arg(11, dk).Arg(12, dv)
            .Arg(13, parameters.GetDouble("scale", 1 / Math.Sqrt(dk)), precision)
            .Arg(14, parameters.GetDouble("softcap", 0), precision)
            .Arg(15, slopes is null ? 0 : 1).Arg(16, slopes?.Rank == 2 ? 1 : 0)
            .Arg(17, topLeft ? 0 : tk - tq).Arg(18, windowLeft).Arg(19, windowRight);
        if (tiled)
        {
            kernel.LocalArg(20, (long)size * TileRows * (dk + 1)).LocalArg(21, (long)size * TileKeys * (dk + 1))
                .LocalArg(22, (long)size * Math.Max(1, TileKeys * dv)).LocalArg(23, (long)size * TileRows * TileKeys);
            long groups = (long)batch * hq * ((tq + TileRows - 1) / TileRows);
            context.Run(kernel, groups * TileRows * TileKeys, local: TileRows * TileKeys);
        }
        else
        {
            context.Run(kernel, (long)batch * tq * hq, local: 64);
        }

        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([batch, tq, hq, dv], context.Download(oBuffer)),
            ["lse"] = new Tensor([batch, tq, hq], context.Download(lseBuffer)),
        };
    }
}
