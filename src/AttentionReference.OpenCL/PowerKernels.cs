using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Power.cl: binds the call through the form's contract and reads the same options as the CPU form
/// (<see cref="PowerOptions"/>, same errors); the symmetric power terms are the reference's table
/// (<see cref="SymmetricPower"/>), so φ is the same function entry by entry. quadratic is the tiled kernel plus
/// the state kernel (final_state, final_normalizer); chunked takes the chunks one after another (two launches per
/// chunk index, every sequence and head at once), the state advanced in place. recurrent is refused: it updates the
/// D×V state (D = C(K+p−1, p): 8256×128 per head at K = V = 128, p = 2) and reads it through φ(q_t) at every step,
/// which on a device is T pairs of launches each touching the whole state; chunked computes the same function with
/// one pair per chunk.
/// </summary>
internal static class PowerKernels
{
    // Power.cl's power_quadratic: BR query rows × BC keys per work-group, column blocks of BC·16 values.
    private const int TileRows = 16, TileKeys = 8, ColumnBlock = TileKeys * 16;

    // Power.cl's power_state: SA features × SC columns of [S | z] per work-group, time tiles of TT steps.
    private const int StateFeatures = 8, StateColumns = 16, StateSteps = 16;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, Form form, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        KernelSupport.Require("power", variant, ["quadratic", "chunked"], parameters, implemented: null,
            new Dictionary<string, string>(StringComparer.Ordinal) { ["recurrent"] = "it updates and reads a C(K+deg−1, deg) × V state at every step, 8256 × 128 per head at K = V = 128, deg = 2; quadratic and chunked compute the same function" });
        Problem problem = form.Contract.Bind(inputs, parameters); // every check of the CPU form, with its messages
        PowerOptions options = PowerOptions.Read(problem);
        Tensor q = problem.Input("q"), k = problem.Input("k"), v = problem.Input("v");
        Tensor? g = problem.Optional("g"), S0 = problem.Optional("initial_state"), z0 = problem.Optional("initial_normalizer");

        var shape = new Shape(problem["B"], problem["T"], problem["H"], problem["K"], problem["V"], options.Degree, problem["D"]);
        var (B, T, H, _, V, _, D) = shape;
        IReadOnlyList<SequenceSlice> slices = GatedLinearKernels.Slices(problem);
        int N = slices.Count;
        int stateLength = BufferLength("final_state", (long)N * H * D * V);
        int[] indices = options.Map.Indices.ToArray();
        double[] coefficients = options.Map.Coefficients.ToArray();
        var flags = new Flags(g is not null, S0 is not null, z0 is not null);

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), gBuffer = context.Upload(g?.Data ?? [], precision),
            idx = context.UploadInts(indices), coef = context.Upload(coefficients, precision),
            seqs = context.UploadInts(GatedLinearKernels.SequenceTable(slices)), o = context.Allocate(B * T * H * V, precision);
        if (variant == "quadratic")
        {
            RequireLocalMemory(context, precision, shape.K);
        }
        // quadratic writes S and z once at the end; chunked advances them in place from the initial state (zeros if absent).
        using DeviceBuffer S = variant == "quadratic" ? context.Allocate(stateLength, precision) : context.UploadOrZeros(S0?.Data, stateLength, precision),
            z = variant == "quadratic" ? context.Allocate(N * H * D, precision) : context.UploadOrZeros(z0?.Data, N * H * D, precision);
        if (variant == "quadratic")
        {
            using DeviceBuffer S0Buffer = context.Upload(S0?.Data ?? [], precision), z0Buffer = context.Upload(z0?.Data ?? [], precision);
            Quadratic(context, precision, qBuffer, kBuffer, vBuffer, gBuffer, S0Buffer, z0Buffer, o, idx, coef, seqs, slices, shape, options, flags);
            FinalState(context, precision, kBuffer, vBuffer, gBuffer, S0Buffer, z0Buffer, S, z, idx, coef, seqs, N, shape, flags);
        }
        else
        {
            int longest = Math.Max(1, slices.Select(s => s.Length).DefaultIfEmpty(0).Max());
            Chunked(context, precision, qBuffer, kBuffer, vBuffer, gBuffer, S, z, o, idx, coef, seqs, N, Math.Min(options.ChunkSize, longest), longest, shape, options, flags);
        }
        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, V], context.Download(o)),
            ["final_state"] = new Tensor([N, H, D, V], context.Download(S)),
            ["final_normalizer"] = new Tensor([N, H, D], context.Download(z)),
        };
    }

    /// <summary>power_quadratic keeps a block of queries and a tile of keys and values in local memory; refused where they do not fit.</summary>
    private static void RequireLocalMemory(OpenClContext context, Precision precision, int K)
    {
        long localBytes = (long)OpenClContext.ElementSize(precision) * (TileRows * (K + 1) + TileKeys * (K + 1) + TileKeys * ColumnBlock + TileRows * TileKeys + TileKeys);
        if (localBytes > context.Device.LocalMemoryBytes)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: power's tiled kernel needs {localBytes} bytes of local memory at K = {K}, the device has {context.Device.LocalMemoryBytes}; use the chunked variant")) { Unsupported = true };
        }
    }

    /// <summary>The symbols of one call: B, T, H, K, V, the degree p and D = C(K+p−1, p).</summary>
    private readonly record struct Shape(int B, int T, int H, int K, int V, int P, int D);

    /// <summary>Which optional inputs the call has: gates, initial state, initial normaliser.</summary>
    private readonly record struct Flags(bool Gate, bool S0, bool Z0);

    /// <summary>power_quadratic over every block of BR query rows and every column block.</summary>
    private static void Quadratic(OpenClContext context, Precision precision, DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer g,
        DeviceBuffer S0, DeviceBuffer z0, DeviceBuffer o, DeviceBuffer idx, DeviceBuffer coef, DeviceBuffer seqs,
        IReadOnlyList<SequenceSlice> slices, Shape shape, PowerOptions options, Flags flags)
    {
        var (_, T, H, K, V, p, D) = shape;
        int size = OpenClContext.ElementSize(precision);
        int[] blocks = Blocks(slices, TileRows);
        int blockCount = blocks.Length / 2, columnBlocks = Math.Max(1, (V + ColumnBlock - 1) / ColumnBlock);
        using DeviceBuffer blockBuffer = context.UploadInts(blocks);
        using OpenClKernel quadratic = context.Kernel("Power.cl", "power_quadratic", precision);
        quadratic.Arg(0, q).Arg(1, k).Arg(2, v).Arg(3, g).Arg(4, S0).Arg(5, z0).Arg(6, o)
            .Arg(7, idx).Arg(8, coef).Arg(9, seqs).Arg(10, blockBuffer).Arg(11, blockCount)
            .Arg(12, T).Arg(13, H).Arg(14, K).Arg(15, V).Arg(16, D).Arg(17, p).Arg(18, options.Scale, precision)
            .Arg(19, options.Normalize ? 1 : 0).Arg(20, options.Eps, precision).Arg(21, flags.Gate ? 1 : 0)
            .Arg(22, flags.S0 ? 1 : 0).Arg(23, flags.Z0 ? 1 : 0)
            .LocalArg(24, (long)size * TileRows * (K + 1)).LocalArg(25, (long)size * TileKeys * (K + 1))
            .LocalArg(26, (long)size * TileKeys * ColumnBlock).LocalArg(27, (long)size * TileRows * TileKeys)
            .LocalArg(28, (long)size * TileKeys);
        context.Run(quadratic, (long)blockCount * H * columnBlocks * TileRows * TileKeys, local: TileRows * TileKeys);
    }

    /// <summary>
    /// The chunked variant: the within-chunk log decays b, then chunk by chunk the output rows (reading the state
    /// entering the chunk) and the state's advance over the chunk, then the division by the normaliser.
    /// </summary>
    private static void Chunked(OpenClContext context, Precision precision, DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer g,
        DeviceBuffer S, DeviceBuffer z, DeviceBuffer o, DeviceBuffer idx, DeviceBuffer coef, DeviceBuffer seqs,
        int N, int C, int longest, Shape shape, PowerOptions options, Flags flags)
    {
        var (B, T, H, K, V, p, D) = shape;
        int size = OpenClContext.ElementSize(precision);
        using DeviceBuffer b = context.Allocate(B * T * H, precision), den = context.Allocate(B * T * H, precision);
        using (OpenClKernel gates = context.Kernel("Power.cl", "power_chunk_gates", precision))
        {
            gates.Arg(0, g).Arg(1, b).Arg(2, seqs).Arg(3, N).Arg(4, T).Arg(5, H).Arg(6, C).Arg(7, flags.Gate ? 1 : 0);
            context.Run(gates, (long)N * H, local: 64);
        }
        using OpenClKernel output = context.Kernel("Power.cl", "power_chunk_output", precision);
        using OpenClKernel state = context.Kernel("Power.cl", "power_chunk_state", precision);
        output.Arg(0, q).Arg(1, k).Arg(2, v).Arg(3, b).Arg(4, S).Arg(5, z).Arg(6, o).Arg(7, den).Arg(8, idx).Arg(9, coef).Arg(10, seqs)
            .Arg(11, N).Arg(12, T).Arg(13, H).Arg(14, K).Arg(15, V).Arg(16, D).Arg(17, p)
            .Arg(18, options.Scale, precision).Arg(19, C);
        state.Arg(0, k).Arg(1, v).Arg(2, b).Arg(3, S).Arg(4, z).Arg(5, idx).Arg(6, coef).Arg(7, seqs)
            .Arg(8, N).Arg(9, T).Arg(10, H).Arg(11, K).Arg(12, V).Arg(13, D).Arg(14, p).Arg(15, C)
            .LocalArg(17, (long)size * Math.Max(1, StateSteps * K)).LocalArg(18, (long)size * StateSteps * StateFeatures)
            .LocalArg(19, (long)size * StateSteps * StateColumns).LocalArg(20, (long)size * StateSteps);
        long stateGroups = (long)N * H * ((D + StateFeatures - 1) / StateFeatures) * ((V + 1 + StateColumns - 1) / StateColumns);
        for (int ci = 0; (long)ci * C < longest; ci++)
        {
            output.Arg(20, ci);
            context.Run(output, (long)N * H * C * (V + 1), local: 64);
            state.Arg(16, ci);
            context.Run(state, stateGroups * StateFeatures * StateColumns, local: StateFeatures * StateColumns);
        }
        using OpenClKernel finish = context.Kernel("Power.cl", "power_finish", precision);
        finish.Arg(0, o).Arg(1, den).Arg(2, B * T * H).Arg(3, V).Arg(4, options.Normalize ? 1 : 0).Arg(5, options.Eps, precision);
        context.Run(finish, (long)B * T * H * V, local: 64);
    }

    /// <summary>power_state: S, z after each sequence's last step, by the reference's recurrence.</summary>
    private static void FinalState(OpenClContext context, Precision precision, DeviceBuffer k, DeviceBuffer v, DeviceBuffer g,
        DeviceBuffer S0, DeviceBuffer z0, DeviceBuffer S, DeviceBuffer z, DeviceBuffer idx, DeviceBuffer coef, DeviceBuffer seqs,
        int N, Shape shape, Flags flags)
    {
        var (_, T, H, K, V, p, D) = shape;
        int size = OpenClContext.ElementSize(precision);
        long groups = (long)N * H * ((D + StateFeatures - 1) / StateFeatures) * ((V + 1 + StateColumns - 1) / StateColumns);
        using OpenClKernel state = context.Kernel("Power.cl", "power_state", precision);
        state.Arg(0, k).Arg(1, v).Arg(2, g).Arg(3, S0).Arg(4, z0).Arg(5, S).Arg(6, z).Arg(7, idx).Arg(8, coef).Arg(9, seqs)
            .Arg(10, N).Arg(11, T).Arg(12, H).Arg(13, K).Arg(14, V).Arg(15, D).Arg(16, p)
            .Arg(17, flags.Gate ? 1 : 0).Arg(18, flags.S0 ? 1 : 0).Arg(19, flags.Z0 ? 1 : 0)
            .LocalArg(20, (long)size * Math.Max(1, StateSteps * K)).LocalArg(21, (long)size * StateSteps * StateFeatures)
            .LocalArg(22, (long)size * StateSteps * StateColumns).LocalArg(23, (long)size * StateSteps);
        context.Run(state, groups * StateFeatures * StateColumns, local: StateFeatures * StateColumns);
    }

    /// <summary>(sequence, first row) of every block of <paramref name="blockRows"/> query rows (also Based.cl's blocks).</summary>
    internal static int[] Blocks(IReadOnlyList<SequenceSlice> slices, int blockRows)
    {
        var blocks = new List<int>();
        for (int n = 0; n < slices.Count; n++)
        {
            for (int i0 = 0; i0 < slices[n].Length; i0 += blockRows)
            {
                blocks.AddRange([n, i0]);
            }
        }
        return [.. blocks];
    }

    private static int BufferLength(string name, long length) =>
        length <= int.MaxValue
            ? (int)length
            : throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: power's {name} has {length} elements, more than one buffer holds"));
}
