using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs MLA on the device: checks the inputs as the CPU form does, uploads, builds the concatenated queries and keys
/// with Kernels/Mla.cl, and hands them to Softmax.cl's tiled attention (<see cref="SoftmaxKernels.AttendDense"/>).
/// Both variants are plain softmax attention over keys with the RoPE part appended, q'·k' = q_nope·kn + q_pe·k_pe:
/// naive over the per-head expanded keys [kn ; k_pe] (Hkv = H, K = Dn+Dr) and values W_UV c (V = Dv); absorbed over
/// the latent cache [c ; k_pe] as one key head shared by every query head (Hkv = 1, K = Dc+Dr), values c (V = Dc),
/// then o = W_UV ol (Mla.cl's header has the buffers; the up-projections are tiled matrix products). Why: one
/// register-blocked kernel, already measured and held to the CPU laws, instead of a second attention kernel; its
/// lse and empty-row conventions (o = 0, lse = −∞) are the CPU form's. Its cost here: value columns go in passes of
/// 128, each recomputing the scores, so absorbed at Dc = 512, Dr = 64 does 4·576 + 512 FMAs per query–key pair
/// where the algorithm needs 576 + 512 (≈ 2.6×); naive (K = 192, V = 128) runs one pass.
/// </summary>
internal static class MlaKernels
{
    // Mla.cl's mla_project: a work-group of 256 items per 64 × 64 tile of the product.
    private const int ProjectTile = 64, ProjectGroup = 256;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        if (variant is not ("naive" or "absorbed"))
        {
            throw new InputException($"--backend opencl: unknown variant '{variant}' of mla; variants on opencl: naive, absorbed");
        }
        // The CPU form's binding, options and up-projections (wkv_b split as it splits it), with its messages.
        Problem problem = form.Contract.Bind(inputs, parameters);
        var options = MlaOptions.Read(problem);
        problem = Mla.WithUpProjections(problem);
        var (qNope, qPe, cKv, kPe, wUk, wUv) = (problem.Input("q_nope"), problem.Input("q_pe"), problem.Input("c_kv"), problem.Input("k_pe"),
            problem.Input("w_uk"), problem.Input("w_uv"));
        int batch = problem["B"], tq = problem["Tq"], sk = problem["Sk"], h = problem["H"], dn = problem["Dn"], dr = problem["Dr"], dc = problem["Dc"], dv = problem["Dv"];
        var (scale, causal) = (options.Scale, options.Causal);
        int rows = checked(batch * tq * h), keys = checked(batch * sk); // query rows (b, i, h); cache rows (b, j)

        using DeviceBuffer qNopeBuffer = context.Upload(qNope.Data, precision), qPeBuffer = context.Upload(qPe.Data, precision),
            cBuffer = context.Upload(cKv.Data, precision), kPeBuffer = context.Upload(kPe.Data, precision),
            wUkBuffer = context.Upload(wUk.Data, precision), wUvBuffer = context.Upload(wUv.Data, precision),
            oBuffer = context.Allocate(checked(rows * dv), precision), lseBuffer = context.Allocate(rows, precision);
        if (variant == "naive")
        {
            // q' = [q_nope ; q_pe], k' = [W_UK c ; k_pe] per head, v = W_UV c per head; then softmax attention.
            int dk = dn + dr;
            using DeviceBuffer q1 = context.Allocate(checked(rows * dk), precision), k1 = context.Allocate(checked(keys * h * dk), precision),
                v1 = context.Allocate(checked(keys * h * dv), precision);
            Place(context, precision, q1, dk, 0, qNopeBuffer, dn, rows, share: 1);
            Place(context, precision, q1, dk, dn, qPeBuffer, dr, rows, share: 1);
            // kn_j = W_UK[h] c_j: x = c [B·Sk, Dc] for every head, w_h[e, n] = W_UK[h][n, e], into k'[(b, j, h), 0 ..].
            Project(context, precision, cBuffer, wUkBuffer, k1, keys, dn, dc, h, xHead: 0, ldx: dc,
                wHead: checked(dn * dc), wE: 1, wN: dc, yHead: dk, ldy: checked(h * dk));
            Place(context, precision, k1, dk, dn, kPeBuffer, dr, keys * h, share: h);
            // v_j = W_UV[h] c_j.
            Project(context, precision, cBuffer, wUvBuffer, v1, keys, dv, dc, h, xHead: 0, ldx: dc,
                wHead: checked(dv * dc), wE: 1, wN: dc, yHead: dv, ldy: checked(h * dv));
            SoftmaxKernels.AttendDense(context, precision, new DenseAttention(batch, tq, sk, h, h, dk, dv, scale, causal),
                q1, k1, v1, oBuffer, lseBuffer);
        }
        else
        {
            // q'' = [W_UKᵀ q_nope ; q_pe], k'' = [c ; k_pe] shared by all heads, values c; then o = W_UV ol.
            int dk = dc + dr;
            using DeviceBuffer q2 = context.Allocate(checked(rows * dk), precision), k2 = context.Allocate(checked(keys * dk), precision),
                ol = context.Allocate(checked(rows * dc), precision);
            // ql_i = W_UK[h]ᵀ q_nope_i: x_h = q_nope[(b, i), h, ..] [B·Tq, Dn], w_h[e, n] = W_UK[h][e, n], into q''[(b, i, h), 0 ..].
            Project(context, precision, qNopeBuffer, wUkBuffer, q2, batch * tq, dc, dn, h, xHead: dn, ldx: checked(h * dn),
                wHead: checked(dn * dc), wE: dc, wN: 1, yHead: dk, ldy: checked(h * dk));
            Place(context, precision, q2, dk, dc, qPeBuffer, dr, rows, share: 1);
            Place(context, precision, k2, dk, 0, cBuffer, dc, keys, share: 1);
            Place(context, precision, k2, dk, dc, kPeBuffer, dr, keys, share: 1);
            SoftmaxKernels.AttendDense(context, precision, new DenseAttention(batch, tq, sk, h, 1, dk, dc, scale, causal),
                q2, k2, cBuffer, ol, lseBuffer);
            // o_i = W_UV[h] ol_i: x_h = ol[(b, i), h, ..] [B·Tq, Dc], w_h[e, n] = W_UV[h][n, e].
            Project(context, precision, ol, wUvBuffer, oBuffer, batch * tq, dv, dc, h, xHead: dc, ldx: checked(h * dc),
                wHead: checked(dv * dc), wE: 1, wN: dc, yHead: dv, ldy: checked(h * dv));
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([batch, tq, h, dv], context.Download(oBuffer)),
            ["lse"] = new Tensor([batch, tq, h], context.Download(lseBuffer)),
        };
    }

    /// <summary>mla_project: y_h = x_h w_h [M, N] for each of the <paramref name="heads"/> heads (strides as Mla.cl states them).</summary>
    private static void Project(OpenClContext context, Precision precision, DeviceBuffer x, DeviceBuffer w, DeviceBuffer y,
        int m, int n, int e, int heads, int xHead, int ldx, int wHead, int wE, int wN, int yHead, int ldy)
    {
        using OpenClKernel project = context.Kernel("Mla.cl", "mla_project", precision);
        project.Arg(0, x).Arg(1, w).Arg(2, y).Arg(3, m).Arg(4, n).Arg(5, e).Arg(6, heads)
            .Arg(7, xHead).Arg(8, ldx).Arg(9, wHead).Arg(10, wE).Arg(11, wN).Arg(12, yHead).Arg(13, ldy);
        long tiles = (long)heads * ((m + ProjectTile - 1) / ProjectTile) * ((n + ProjectTile - 1) / ProjectTile);
        context.Run(project, tiles * ProjectGroup, local: ProjectGroup);
    }

    /// <summary>mla_place: width columns of src rows into columns [offset, offset + width) of dst's rows of ldd (row r from src row r / share).</summary>
    private static void Place(OpenClContext context, Precision precision, DeviceBuffer dst, int ldd, int offset, DeviceBuffer src,
        int width, int rows, int share)
    {
        using OpenClKernel place = context.Kernel("Mla.cl", "mla_place", precision);
        place.Arg(0, dst).Arg(1, ldd).Arg(2, offset).Arg(3, src).Arg(4, width).Arg(5, rows).Arg(6, share);
        context.Run(place, (long)rows * width, local: 64);
    }
}
