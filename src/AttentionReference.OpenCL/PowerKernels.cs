using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.Common;
using AttentionReference.Forms.GatedLinear;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// Runs Kernels/Power.cl. The options are read by <see cref="PowerForm.Options"/> and checked by the CPU form's own
/// <see cref="PowerProblem"/> (same errors); the symmetric power terms are the reference's table
/// (<see cref="Power.SymmetricTerms"/>), so φ is the same function entry by entry. quadratic is the tiled kernel plus
/// the state kernel (final_state, final_normalizer); recurrent is refused: it updates a D×V state (D = C(K+p−1, p),
/// 8256×128 per head at K = V = 128, p = 2) at every step and reads it out through φ(q) of size D, where the
/// quadratic form needs neither.
/// </summary>
internal static class PowerKernels
{
    // Power.cl's power_quadratic: BR query rows × BC keys per work-group, column blocks of BC·16 values.
    private const int TileRows = 16, TileKeys = 8, ColumnBlock = TileKeys * 16;

    // Power.cl's power_state: SA features × SC columns of [S | z] per work-group, time tiles of TT steps.
    private const int StateFeatures = 8, StateColumns = 16, StateSteps = 16;

    public static IReadOnlyDictionary<string, Tensor> Run(OpenClContext context, Precision precision, string variant,
        IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        if (variant == "recurrent")
        {
            throw new InputException("--backend opencl: power variant 'recurrent' has no OpenCL kernel: it updates and reads a C(K+deg−1, deg) × V state at every step (8256 × 128 per head at K = V = 128, deg = 2); quadratic computes the same function") { Unsupported = true };
        }
        if (variant is not "quadratic")
        {
            throw new InputException($"--backend opencl: power variant '{variant}' has no OpenCL kernel; variants on opencl: quadratic") { Unsupported = true };
        }
        PowerOptions options = PowerForm.Options(inputs, parameters);
        Tensor q = inputs["q"], k = inputs["k"], v = inputs["v"];
        Tensor? g = inputs.GetValueOrDefault("g");
        _ = PowerProblem.Bind(q, k, v, g, options); // every check of the CPU form, with its messages

        int B = q.Dim(0), T = q.Dim(1), H = q.Dim(2), K = q.Dim(3), V = v.Dim(3), p = options.Degree;
        int D = Power.FeatureDimension(K, p);
        IReadOnlyList<SequenceSlice> slices = Sequences.Slices(B, T, options.CuSeqlens);
        int N = slices.Count;
        int stateLength = BufferLength("final_state", (long)N * H * D * V);
        var (indices, coefficients) = Terms(K, p);

        int size = OpenClContext.ElementSize(precision);
        long localBytes = (long)size * (TileRows * (K + 1) + TileKeys * (K + 1) + TileKeys * ColumnBlock + TileRows * TileKeys + TileKeys);
        if (localBytes > context.Device.LocalMemoryBytes)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture,
                $"--backend opencl: power's tiled kernel needs {localBytes} bytes of local memory at K = {K}, the device has {context.Device.LocalMemoryBytes}")) { Unsupported = true };
        }

        using DeviceBuffer qBuffer = context.Upload(q.Data, precision), kBuffer = context.Upload(k.Data, precision),
            vBuffer = context.Upload(v.Data, precision), gBuffer = context.Upload(g?.Data ?? [], precision),
            S0 = context.Upload(options.InitialState?.Data ?? [], precision), z0 = context.Upload(options.InitialNormalizer?.Data ?? [], precision),
            idx = context.UploadInts(indices), coef = context.Upload(coefficients, precision),
            seqs = context.UploadInts(GatedLinearKernels.SequenceTable(slices)),
            o = context.Allocate(B * T * H * V, precision), S = context.Allocate(stateLength, precision), z = context.Allocate(N * H * D, precision);

        int[] blocks = Blocks(slices);
        int blockCount = blocks.Length / 2, columnBlocks = Math.Max(1, (V + ColumnBlock - 1) / ColumnBlock);
        double scale = options.Scale ?? 1 / Math.Sqrt(K);
        using (DeviceBuffer blockBuffer = context.UploadInts(blocks))
        using (OpenClKernel quadratic = context.Kernel("Power.cl", "power_quadratic", precision))
        {
            quadratic.Arg(0, qBuffer).Arg(1, kBuffer).Arg(2, vBuffer).Arg(3, gBuffer).Arg(4, S0).Arg(5, z0).Arg(6, o)
                .Arg(7, idx).Arg(8, coef).Arg(9, seqs).Arg(10, blockBuffer).Arg(11, blockCount).Arg(12, columnBlocks)
                .Arg(13, T).Arg(14, H).Arg(15, K).Arg(16, V).Arg(17, D).Arg(18, p).Arg(19, scale, precision)
                .Arg(20, options.Normalize ? 1 : 0).Arg(21, options.Eps, precision).Arg(22, g is null ? 0 : 1)
                .Arg(23, options.InitialState is null ? 0 : 1).Arg(24, options.InitialNormalizer is null ? 0 : 1)
                .LocalArg(25, (long)size * TileRows * (K + 1)).LocalArg(26, (long)size * TileKeys * (K + 1))
                .LocalArg(27, (long)size * TileKeys * ColumnBlock).LocalArg(28, (long)size * TileRows * TileKeys)
                .LocalArg(29, (long)size * TileKeys);
            context.Run(quadratic, (long)blockCount * H * columnBlocks * TileRows * TileKeys, local: TileRows * TileKeys);
        }
        FinalState(context, precision, kBuffer, vBuffer, gBuffer, S0, z0, S, z, idx, coef, seqs, N, T, H, K, V, D, p,
            hasGate: g is not null, hasS0: options.InitialState is not null, hasZ0: options.InitialNormalizer is not null);

        return new Dictionary<string, Tensor>
        {
            ["o"] = new Tensor([B, T, H, V], context.Download(o)),
            ["final_state"] = new Tensor([N, H, D, V], context.Download(S)),
            ["final_normalizer"] = new Tensor([N, H, D], context.Download(z)),
        };
    }

    /// <summary>power_state: S, z after each sequence's last step, by the reference's recurrence.</summary>
    private static void FinalState(OpenClContext context, Precision precision, DeviceBuffer k, DeviceBuffer v, DeviceBuffer g,
        DeviceBuffer S0, DeviceBuffer z0, DeviceBuffer S, DeviceBuffer z, DeviceBuffer idx, DeviceBuffer coef, DeviceBuffer seqs,
        int N, int T, int H, int K, int V, int D, int p, bool hasGate, bool hasS0, bool hasZ0)
    {
        int size = OpenClContext.ElementSize(precision);
        long groups = (long)N * H * ((D + StateFeatures - 1) / StateFeatures) * ((V + 1 + StateColumns - 1) / StateColumns);
        using OpenClKernel state = context.Kernel("Power.cl", "power_state", precision);
        state.Arg(0, k).Arg(1, v).Arg(2, g).Arg(3, S0).Arg(4, z0).Arg(5, S).Arg(6, z).Arg(7, idx).Arg(8, coef).Arg(9, seqs)
            .Arg(10, N).Arg(11, T).Arg(12, H).Arg(13, K).Arg(14, V).Arg(15, D).Arg(16, p)
            .Arg(17, hasGate ? 1 : 0).Arg(18, hasS0 ? 1 : 0).Arg(19, hasZ0 ? 1 : 0)
            .LocalArg(20, (long)size * Math.Max(1, StateSteps * K)).LocalArg(21, (long)size * StateSteps * StateFeatures)
            .LocalArg(22, (long)size * StateSteps * StateColumns).LocalArg(23, (long)size * StateSteps);
        context.Run(state, groups * StateFeatures * StateColumns, local: StateFeatures * StateColumns);
    }

    /// <summary>The reference's symmetric power terms as the kernels' tables: indices [D·p] and coefficients [D].</summary>
    private static (int[] Indices, double[] Coefficients) Terms(int K, int p)
    {
        var terms = Power.SymmetricTerms(K, p);
        return (terms.SelectMany(term => term.Indices).ToArray(), terms.Select(term => term.Coefficient).ToArray());
    }

    /// <summary>(sequence, first row) of every block of BR query rows.</summary>
    private static int[] Blocks(IReadOnlyList<SequenceSlice> slices)
    {
        var blocks = new List<int>();
        for (int n = 0; n < slices.Count; n++)
        {
            for (int i0 = 0; i0 < slices[n].Length; i0 += TileRows)
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
