using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Linear;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Linear.cl: binds the call through the form's contract and reads the same options as the CPU form
/// (<see cref="LinearOptions"/>), applies the feature map on the host (<see cref="FeatureMaps.Apply"/>, row by row: every
/// map, identity to performer), uploads φ(q), φ(k), launches, downloads. recurrent, chunked (any C ≥ 1) and parallel,
/// which is the chunked kernels with one chunk per sequence (the reference's parallel form term for term; its score
/// buffer is quadratic in T, as the form is).
/// </summary>
internal static class LinearKernels
{
    private static readonly HashSet<string> s_parameters =
        new(["scale", "chunk_size", "feature_map", "normalize", "eps", "causal"], StringComparer.Ordinal);

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("linear", variant, ["recurrent", "parallel", "chunked"], parameters, s_parameters);
        Problem problem = form.Contract.Bind(inputs, parameters);
        LinearOptions options = LinearOptions.Read(problem);
        var (B, T, H, V, F) = (problem["B"], problem["T"], problem["H"], problem["V"], problem["F"]);
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        int N = slices.Count;
        double scale = options.Scale;
        // Modes of Linear.cl: 0 recurrent causal, 1 not causal (recurrent, chunked), 2 chunked causal or parallel.
        int mode = variant == "parallel" ? 2 : !options.Causal ? 1 : variant == "recurrent" ? 0 : 2;
        int C = GatedLinearKernels.ChunkLength(variant, options.ChunkSize, slices);
        int allKeys = variant == "parallel" && !options.Causal ? 1 : 0;
        double[] proj = problem.Optional("proj")?.Data ?? [];
        Tensor v = problem.Input("v");

        using DeviceBuffer seqs = context.UploadInts(GatedLinearKernels.SequenceTable(slices)),
            rowSlice = context.UploadInts(GatedLinearKernels.RowSlices(slices, B, T)),
            phiQ = context.Upload(Features(problem.Input("q"), options.Map, F, proj), precision),
            phiK = context.Upload(Features(problem.Input("k"), options.Map, F, proj), precision),
            vBuffer = context.Upload(v.Data, precision),
            S = context.UploadOrZeros(problem.Optional("initial_state")?.Data, N * H * F * V, precision),
            z = context.UploadOrZeros(problem.Optional("initial_normalizer")?.Data, N * H * F, precision),
            o = context.Zeros(B * T * H * V, precision), den = context.Zeros(B * T * H, precision);
        using (OpenClKernel state = context.Kernel("Linear.cl", "linear_state", precision))
        {
            state.Arg(0, phiQ).Arg(1, phiK).Arg(2, vBuffer).Arg(3, S).Arg(4, o).Arg(5, seqs)
                .Arg(6, N).Arg(7, T).Arg(8, H).Arg(9, F).Arg(10, V).Arg(11, mode).Arg(12, C);
            context.Run(state, (long)N * H * V, local: 64);
        }
        using (OpenClKernel normalizer = context.Kernel("Linear.cl", "linear_normalizer", precision))
        {
            normalizer.Arg(0, phiQ).Arg(1, phiK).Arg(2, z).Arg(3, den).Arg(4, seqs)
                .Arg(5, N).Arg(6, T).Arg(7, H).Arg(8, F).Arg(9, mode).Arg(10, C);
            context.Run(normalizer, (long)N * H, local: 64);
        }
        if (mode != 2)
        {
            using OpenClKernel finish = context.Kernel("Linear.cl", "linear_finish", precision);
            finish.Arg(0, o).Arg(1, den).Arg(2, rowSlice).Arg(3, B).Arg(4, T).Arg(5, H).Arg(6, V)
                .Arg(7, scale, precision).Arg(8, options.Normalize ? 1 : 0).Arg(9, options.Eps, precision);
            context.Run(finish, (long)B * T * H * V, local: 64);
        }
        else
        {
            using DeviceBuffer A = context.Allocate(GatedLinearKernels.ScoreBufferLength("linear", variant, B, T, H, C), precision);
            using (OpenClKernel scores = context.Kernel("Linear.cl", "linear_scores", precision))
            {
                scores.Arg(0, phiQ).Arg(1, phiK).Arg(2, A).Arg(3, seqs).Arg(4, rowSlice)
                    .Arg(5, B).Arg(6, T).Arg(7, H).Arg(8, F).Arg(9, C).Arg(10, allKeys);
                context.Run(scores, (long)B * T * H * C, local: 64);
            }
            using OpenClKernel intra = context.Kernel("Linear.cl", "linear_intra", precision);
            intra.Arg(0, vBuffer).Arg(1, A).Arg(2, den).Arg(3, o).Arg(4, seqs).Arg(5, rowSlice)
                .Arg(6, B).Arg(7, T).Arg(8, H).Arg(9, V).Arg(10, C).Arg(11, allKeys)
                .Arg(12, scale, precision).Arg(13, options.Normalize ? 1 : 0).Arg(14, options.Eps, precision);
            context.Run(intra, (long)B * T * H * V, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, V], context.Download(o)),
            ["final_state"] = new Tensor([N, H, F, V], context.Download(S)),
            ["final_normalizer"] = new Tensor([N, H, F], context.Download(z)),
        };
    }

    /// <summary>
    /// φ(x) [B,T,H,F] of x [B,T,H,K], row by row with the reference's feature map, into one array of its final size;
    /// the identity map is x's own data (uploaded as it is, no copy).
    /// </summary>
    private static double[] Features(Tensor x, LinearFeatureMap map, int F, double[] proj)
    {
        if (map == LinearFeatureMap.Identity)
        {
            return x.Data;
        }
        int K = x.Dim(3), rows = x.Length / Math.Max(1, K);
        var φ = new double[checked(rows * F)];
        for (int r = 0; r < rows; r++)
        {
            FeatureMaps.Apply(map, x.Data.AsSpan(r * K, K), φ.AsSpan(r * F, F), proj);
        }
        return φ;
    }
}
