using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Based.cl: binds the call through the form's contract and reads the same options as the CPU form
/// (<see cref="BasedOptions"/>, same errors). parallel is one tiled kernel for both branches plus the state kernel;
/// chunked is the window branch by the tiled kernel, then the linear branch chunk by chunk (two launches per chunk
/// index, every sequence and head at once), the state advanced in place. recurrent is refused: it updates and reads
/// the (1 + K + K²) × V Taylor state at every step (16513 × 128 per head at K = V = 128), which on a device is T pairs
/// of launches each touching the whole state; parallel and chunked compute the same function.
/// </summary>
internal static class BasedKernels
{
    // Based.cl's based_tiled: BR query rows × BC keys per work-group, column blocks of BC·16 values.
    private const int TileRows = 16, TileKeys = 8, ColumnBlock = TileKeys * 16;

    // Based.cl's based_state: SA features × SC columns of [S | z] per work-group, time tiles of TT steps.
    private const int StateFeatures = 8, StateColumns = 16, StateSteps = 16;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("based", variant, ["parallel", "chunked"], parameters, implemented: null,
            new Dictionary<string, string>(StringComparer.Ordinal) { ["recurrent"] = "it reads the (1 + K + K²) × V Taylor state at every step, 16513 × 128 per head at K = V = 128; parallel and chunked compute the same function" });
        Problem problem = form.Contract.Bind(inputs, parameters); // every check of the CPU form, with its messages
        BasedOptions options = BasedOptions.Read(problem);
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v");
        Tensor? S0 = problem.Optional("initial_state"), z0 = problem.Optional("initial_normalizer");

        var (B, T, H, K, V, F) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"], problem["F"]);
        int N = slices.Count;
        long stateElements = (long)N * H * F * V;
        if (stateElements > int.MaxValue)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: based's final_state has {stateElements} elements, more than one buffer holds"));
        }
        int size = OpenClContext.ElementSize(precision);
        long localBytes = (long)size * (TileRows * (K + 1) + TileKeys * (K + 1) + TileKeys * ColumnBlock + 2 * TileRows * TileKeys);
        if (localBytes > context.Device.LocalMemoryBytes)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: based's tiled kernel needs {localBytes} bytes of local memory at K = {K}, the device has {context.Device.LocalMemoryBytes}")) { Unsupported = true };
        }
        bool hasS0 = S0 is not null, hasZ0 = z0 is not null;
        int longest = Math.Max(1, slices.Select(s => s.Length).DefaultIfEmpty(0).Max());
        bool chunked = variant == "chunked";
        int C = chunked ? Math.Min(options.ChunkSize, longest) : longest;

        // S and z start as the initial state (zeros if absent) and are advanced in place; the tiled kernel of the
        // parallel variant reads them before they move.
        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision),
            S = context.UploadOrZeros(S0?.Data, checked((int)stateElements), precision),
            z = context.UploadOrZeros(z0?.Data, N * H * F, precision),
            seqs = context.UploadInts(GatedLinearKernels.SequenceTable(slices)), o = context.Allocate(B * T * H * V, precision);

        int[] blocks = PowerKernels.Blocks(slices, TileRows);
        int blockCount = blocks.Length / 2, columnBlocks = Math.Max(1, (V + ColumnBlock - 1) / ColumnBlock);
        using (DeviceBuffer blockBuffer = context.UploadInts(blocks))
        using (OpenClKernel tiled = context.Kernel("Based.cl", "based_tiled", precision))
        {
            tiled.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, S).Arg(4, z).Arg(5, o).Arg(6, seqs).Arg(7, blockBuffer)
                .Arg(8, blockCount).Arg(9, T).Arg(10, H).Arg(11, K).Arg(12, V).Arg(13, F).Arg(14, options.Window)
                .Arg(15, options.Scale, precision).Arg(16, options.LinearScale, precision).Arg(17, options.Eps, precision)
                .Arg(18, chunked ? 0 : 1).Arg(19, hasS0 ? 1 : 0).Arg(20, hasZ0 ? 1 : 0)
                .LocalArg(21, (long)size * TileRows * (K + 1)).LocalArg(22, (long)size * TileKeys * (K + 1))
                .LocalArg(23, (long)size * TileKeys * ColumnBlock).LocalArg(24, (long)size * TileRows * TileKeys)
                .LocalArg(25, (long)size * TileRows * TileKeys);
            context.Run(tiled, (long)blockCount * H * columnBlocks * TileRows * TileKeys, local: TileRows * TileKeys);
        }

        using OpenClKernel state = context.Kernel("Based.cl", "based_state", precision);
        state.Arg(0, kBuffer).Arg(1, vBuffer).Arg(2, S).Arg(3, z).Arg(4, seqs).Arg(5, N).Arg(6, T).Arg(7, H).Arg(8, K).Arg(9, V)
            .Arg(10, F).Arg(11, C)
            .LocalArg(13, (long)size * Math.Max(1, StateSteps * K)).LocalArg(14, (long)size * StateSteps * StateFeatures)
            .LocalArg(15, (long)size * StateSteps * StateColumns);
        long stateItems = (long)N * H * ((F + StateFeatures - 1) / StateFeatures) * ((V + 1 + StateColumns - 1) / StateColumns)
            * StateFeatures * StateColumns;
        if (!chunked)
        {
            state.Arg(12, 0);
            context.Run(state, stateItems, local: StateFeatures * StateColumns);
        }
        else
        {
            using DeviceBuffer num = context.Allocate(B * T * H * V, precision), den = context.Allocate(B * T * H, precision);
            using (OpenClKernel output = context.Kernel("Based.cl", "based_chunk_output", precision))
            {
                output.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, S).Arg(4, z).Arg(5, num).Arg(6, den).Arg(7, seqs)
                    .Arg(8, N).Arg(9, T).Arg(10, H).Arg(11, K).Arg(12, V).Arg(13, F).Arg(14, C);
                for (int ci = 0; (long)ci * C < longest; ci++)
                {
                    output.Arg(15, ci);
                    context.Run(output, (long)N * H * C * (V + 1), local: 64);
                    state.Arg(12, ci);
                    context.Run(state, stateItems, local: StateFeatures * StateColumns);
                }
            }
            using OpenClKernel finish = context.Kernel("Based.cl", "based_finish", precision);
            finish.Arg(0, o).Arg(1, num).Arg(2, den).Arg(3, B * T * H).Arg(4, V)
                .Arg(5, options.LinearScale, precision).Arg(6, options.Eps, precision);
            context.Run(finish, (long)B * T * H * V, local: 64);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, V], context.Download(o)),
            ["final_state"] = new Tensor([N, H, F, V], context.Download(S)),
            ["final_normalizer"] = new Tensor([N, H, F], context.Download(z)),
        };
    }
}
