using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The host of mla (Forms/Softmax/Mla.cs): reads the call as the CPU form does (MlaOptions, Mla.WithUpProjections,
/// which splits wkv_b, with its errors), builds the concatenated queries and keys on the device (MlaKernels) and runs
/// softmax's tiled engine on them (FlashAttentionKernels.Forward), each batch entry one sequence, causal bottom-right
/// (key j for query i iff j ≤ i + Sk − Tq) or full:
/// <code>
///   naive     q' = [q_nope ; q_pe]  [B,Tq,H,Dn+Dr]   k' = [W_UK c ; k_pe]  [B,Sk,H,Dn+Dr]   v' = W_UV c  [B,Sk,H,Dv]
///             attention with Hq = Hkv = H, K = Dn+Dr, V = Dv                          →  o, lse
///   absorbed  q'' = [W_UKᵀ q_nope ; q_pe]  [B,Tq,H,Dc+Dr]   k'' = [c ; k_pe]  [B,Sk,1,Dc+Dr]   v'' = c  [B,Sk,1,Dc]
///             attention with Hq = H, Hkv = 1, K = Dc+Dr, V = Dc                      →  ol, lse;  o = W_UV ol
/// </code>
/// Both sum the score as one dot product over the concatenation, which differs from the reference's two only by rounding.
/// </summary>
internal static class MlaHost
{
    /// <summary>o and lse of <paramref name="variant"/> (naive, absorbed) of a bound mla call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var options = MlaOptions.Read(problem);
        problem = Mla.WithUpProjections(problem);
        int batch = problem["B"], tq = problem["Tq"], sk = problem["Sk"], h = problem["H"], dn = problem["Dn"], dr = problem["Dr"], dc = problem["Dc"], dv = problem["Dv"];
        long rows = (long)batch * tq * h, keys = (long)batch * sk; // query rows (b, i, h); cache rows (b, j)
        KeySequence[] sequences = Enumerable.Range(0, batch)
            .Select(b => KeyedAttention.Direct(b, 0, tq, 0, sk, sk - tq, b * sk)).ToArray();

        using DeviceBuffers buffers = device.Buffers();
        ArrayView<Real> qNope = buffers.Upload<Real>(problem.Input("q_nope")), qPe = buffers.Upload<Real>(problem.Input("q_pe"));
        ArrayView<Real> c = buffers.Upload<Real>(problem.Input("c_kv")), kPe = buffers.Upload<Real>(problem.Input("k_pe"));
        ArrayView<Real> wUk = buffers.Upload<Real>(problem.Input("w_uk")), wUv = buffers.Upload<Real>(problem.Input("w_uv"));
        var rowSequence = new int[batch * tq];
        for (int b = 0; b < batch; b++)
        {
            Array.Fill(rowSequence, b, b * tq, tq);
        }
        var x = new AttentionProblem<Real>
        {
            Tq = tq, Hq = h, Parts = 1, Sequences = buffers.Upload(sequences), RowSequence = buffers.Upload(rowSequence),
            O = buffers.Zeros<Real>(rows * dv), Lse = buffers.Zeros<Real>(rows),
            Scores = new ScoreRules<Real> { Scale = Real.CreateTruncating(options.Scale), WindowLeft = -1, WindowRight = options.Causal ? 0 : -1 },
        };
        if (variant == "naive")
        {
            int dk = dn + dr;
            (x.Hkv, x.Dk, x.Dv) = (h, dk, dv);
            (x.Q, x.K, x.V) = (buffers.Zeros<Real>(rows * dk), buffers.Zeros<Real>(keys * h * dk), buffers.Zeros<Real>(keys * h * dv));
            Place(device, x.Q, dk, 0, qNope, dn, rows, share: 1);
            Place(device, x.Q, dk, dn, qPe, dr, rows, share: 1);
            // kn_j = W_UK[h] c_j: x_h = c [B·Sk, Dc] for every head, w_h[e, n] = W_UK[h][n, e], into k'[(b, j, h), 0 ..].
            Project(device, new MlaProduct<Real> { X = c, W = wUk, Y = x.K, M = keys, N = dn, E = dc, XHead = 0, Ldx = dc,
                WHead = (long)dn * dc, WE = 1, WN = dc, YHead = dk, Ldy = (long)h * dk }, h);
            Place(device, x.K, dk, dn, kPe, dr, keys * h, share: h);
            // v_j = W_UV[h] c_j.
            Project(device, new MlaProduct<Real> { X = c, W = wUv, Y = x.V, M = keys, N = dv, E = dc, XHead = 0, Ldx = dc,
                WHead = (long)dv * dc, WE = 1, WN = dc, YHead = dv, Ldy = (long)h * dv }, h);
            Attend(device, buffers, x, sequences);
            return KeyedAttention.Outputs(device, x, batch);
        }

        int dl = dc + dr;
        ArrayView<Real> o = x.O;
        (x.Hkv, x.Dk, x.Dv) = (1, dl, dc);
        (x.Q, x.K, x.V, x.O) = (buffers.Zeros<Real>(rows * dl), buffers.Zeros<Real>(keys * dl), c, buffers.Zeros<Real>(rows * dc));
        // ql_i = W_UK[h]ᵀ q_nope_i: x_h = q_nope[(b, i), h, ..] [B·Tq, Dn], w_h[e, n] = W_UK[h][e, n], into q''[(b, i, h), 0 ..].
        Project(device, new MlaProduct<Real> { X = qNope, W = wUk, Y = x.Q, M = (long)batch * tq, N = dc, E = dn, XHead = dn, Ldx = (long)h * dn,
            WHead = (long)dn * dc, WE = dc, WN = 1, YHead = dl, Ldy = (long)h * dl }, h);
        Place(device, x.Q, dl, dc, qPe, dr, rows, share: 1);
        Place(device, x.K, dl, 0, c, dc, keys, share: 1);
        Place(device, x.K, dl, dc, kPe, dr, keys, share: 1);
        Attend(device, buffers, x, sequences);
        // o_i = W_UV[h] ol_i: x_h = ol[(b, i), h, ..] [B·Tq, Dc], w_h[e, n] = W_UV[h][n, e].
        Project(device, new MlaProduct<Real> { X = x.O, W = wUv, Y = o, M = (long)batch * tq, N = dv, E = dc, XHead = dc, Ldx = (long)h * dc,
            WHead = (long)dv * dc, WE = 1, WN = dc, YHead = dv, Ldy = (long)h * dv }, h);
        x.O = o;
        x.Dv = dv;
        return KeyedAttention.Outputs(device, x, batch);
    }

    private static void Attend<Real>(GpuDevice device, DeviceBuffers buffers, AttentionProblem<Real> x, KeySequence[] sequences)
        where Real : unmanaged, IFloatingPointIeee754<Real> =>
        KeyedAttention.Tiled(device, buffers, x, sequences, FlashAttentionKernels.Forward, (seq, first, last) =>
        {
            var (from, end) = x.Scores.Reach(seq, first, last);
            return end - from;
        });

    private static void Project<Real>(GpuDevice device, MlaProduct<Real> product, int heads) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        device.Launch(MlaKernels.Project, heads * product.M * product.N, product);

    private static void Place<Real>(GpuDevice device, ArrayView<Real> destination, int destinationWidth, int offset, ArrayView<Real> source,
        int width, long rows, int share) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        device.Launch(MlaKernels.Place, rows * width, new MlaPlacement<Real>
        {
            Destination = destination, DestinationWidth = destinationWidth, Offset = offset, Source = source, Width = width, Share = share,
        });
}
