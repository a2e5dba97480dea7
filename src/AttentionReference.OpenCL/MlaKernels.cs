using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>Runs Kernels/Mla.cl: checks the inputs as the CPU form does, uploads, launches, downloads.</summary>
internal static class MlaKernels
{
    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        if (variant is not ("naive" or "absorbed"))
        {
            throw new InputException($"--backend opencl: unknown variant '{variant}' of mla; variants on opencl: naive, absorbed");
        }
        var (qNope, qPe, cKv, kPe) = (inputs["q_nope"], inputs["q_pe"], inputs["c_kv"], inputs["k_pe"]);
        var (wUk, wUv) = Weights(inputs, qNope);
        // The checks of Mla's MlaProblem.Bind, with its messages.
        var dims = new Dims();
        dims.Bind("q_nope", Dims.RequireFloat("q_nope", qNope), "B,Tq,H,Dn");
        dims.Bind("q_pe", Dims.RequireFloat("q_pe", qPe), "B,Tq,H,Dr");
        dims.Bind("c_kv", Dims.RequireFloat("c_kv", cKv), "B,Sk,Dc");
        dims.Bind("k_pe", Dims.RequireFloat("k_pe", kPe), "B,Sk,Dr");
        dims.Bind("w_uk", Dims.RequireFloat("w_uk", wUk), "H,Dn,Dc");
        dims.Bind("w_uv", Dims.RequireFloat("w_uv", wUv), "H,Dv,Dc");
        int batch = dims["B"], tq = dims["Tq"], sk = dims["Sk"], h = dims["H"], dn = dims["Dn"], dr = dims["Dr"], dc = dims["Dc"], dv = dims["Dv"];
        double scale = parameters.GetOptionalDouble("scale") ?? 1 / Math.Sqrt(dn + dr);
        int causal = parameters.GetBool("causal", false) ? 1 : 0;
        int rows = batch * tq * h;

        using DeviceBuffer qNopeBuffer = context.Upload(qNope.Data, precision), qPeBuffer = context.Upload(qPe.Data, precision),
            cBuffer = context.Upload(cKv.Data, precision), kPeBuffer = context.Upload(kPe.Data, precision),
            wUkBuffer = context.Upload(wUk.Data, precision), wUvBuffer = context.Upload(wUv.Data, precision),
            oBuffer = context.Allocate(rows * dv, precision), lseBuffer = context.Allocate(rows, precision);
        using OpenClKernel attend = context.Kernel("Mla.cl", "mla_rows", precision);
        attend.Arg(1, qPeBuffer).Arg(3, kPeBuffer).Arg(6, lseBuffer)
            .Arg(7, batch).Arg(8, tq).Arg(9, sk).Arg(10, h).Arg(13, dr).Arg(15, scale, precision).Arg(16, causal);
        if (variant == "naive")
        {
            // kn and v expanded per head once, then ordinary softmax attention over them.
            using DeviceBuffer kn = context.Allocate(batch * sk * h * dn, precision), v = context.Allocate(batch * sk * h * dv, precision);
            using (OpenClKernel expand = context.Kernel("Mla.cl", "mla_expand", precision))
            {
                expand.Arg(0, cBuffer).Arg(1, wUkBuffer).Arg(2, wUvBuffer).Arg(3, kn).Arg(4, v)
                    .Arg(5, batch).Arg(6, sk).Arg(7, h).Arg(8, dn).Arg(9, dc).Arg(10, dv);
                context.Run(expand, (long)batch * sk * h, local: 64);
            }
            attend.Arg(0, qNopeBuffer).Arg(2, kn).Arg(4, v).Arg(5, oBuffer).Arg(11, h).Arg(12, dn).Arg(14, dv);
            context.Run(attend, rows, local: 64);
        }
        else
        {
            // ql = W_UKᵀ q_nope, attention over the latent cache (keys and values alike), then o = W_UV ol.
            using DeviceBuffer ql = context.Allocate(rows * dc, precision), ol = context.Allocate(rows * dc, precision);
            using (OpenClKernel absorb = context.Kernel("Mla.cl", "mla_absorb_query", precision))
            {
                absorb.Arg(0, qNopeBuffer).Arg(1, wUkBuffer).Arg(2, ql).Arg(3, rows).Arg(4, h).Arg(5, dn).Arg(6, dc);
                context.Run(absorb, rows, local: 64);
            }
            attend.Arg(0, ql).Arg(2, cBuffer).Arg(4, cBuffer).Arg(5, ol).Arg(11, 1).Arg(12, dc).Arg(14, dc);
            context.Run(attend, rows, local: 64);
            using OpenClKernel up = context.Kernel("Mla.cl", "mla_up", precision);
            up.Arg(0, ol).Arg(1, wUvBuffer).Arg(2, oBuffer).Arg(3, rows).Arg(4, h).Arg(5, dc).Arg(6, dv);
            context.Run(up, rows, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([batch, tq, h, dv], context.Download(oBuffer)),
            ["lse"] = new Tensor([batch, tq, h], context.Download(lseBuffer)),
        };
    }

    /// <summary>w_uk and w_uv as given, or split from wkv_b at Dn; exactly one of the two ways (as MlaForm).</summary>
    private static (Tensor WUk, Tensor WUv) Weights(IReadOnlyDictionary<string, Tensor> inputs, Tensor qNope)
    {
        var (wUk, wUv, wkvB) = (inputs.GetValueOrDefault("w_uk"), inputs.GetValueOrDefault("w_uv"), inputs.GetValueOrDefault("wkv_b"));
        if (wkvB is not null)
        {
            return wUk is null && wUv is null
                ? Mla.SplitWkvB(wkvB, qNope.Rank == 4 ? qNope.Dim(3) : 0)
                : throw new InputException("give either wkv_b or w_uk and w_uv, not both", tensor: "wkv_b");
        }
        return (wUk ?? throw new InputException("missing (expected shape [H,Dn,Dc]; or give wkv_b [H,Dn+Dv,Dc])", tensor: "w_uk"),
                wUv ?? throw new InputException("missing (expected shape [H,Dv,Dc]; or give wkv_b [H,Dn+Dv,Dc])", tensor: "w_uv"));
    }
}
