using System.Numerics;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using ILGPU;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The host side of the softmax family's engine, shared by its forms' hosts (SoftmaxHost, SparseHost, MlaHost,
/// ForgettingHost): the tables the kernels read (sequences, the sequence of each query row, the tiled kernels' query
/// blocks), the score rules of a softmax call, and the launches of the naive method (SoftmaxKernels.Rows, split into
/// parts and merged when asked) and of the tiled engine (FlashAttentionKernels).
/// </summary>
internal static class KeyedAttention
{
    /// <summary>
    /// The shared memory a tiled group may use: the accelerator's, at most 48 KiB, the most a CUDA kernel gets without an
    /// opt-in that ILGPU does not make (ILGPU's CPU accelerator allows any amount; capped, it decides as CUDA does).
    /// </summary>
    public const int SharedBytes = 48 * 1024;

    /// <summary>
    /// The call's problem on the device: q, k, v (k and v seen as rows of Hkv heads), the sequences and their query
    /// rows, o and lse as zeros; <paramref name="tq"/> is the q tensor's time axis.
    /// </summary>
    public static AttentionProblem<Real> Upload<Real>(DeviceBuffers buffers, KeySequence[] sequences, int[] keyRows,
        int batch, int tq, int hq, int hkv, int dk, int dv, Tensor q, Tensor k, Tensor v)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var rowSequence = new int[checked(batch * tq)];
        Array.Fill(rowSequence, -1);
        for (int n = 0; n < sequences.Length; n++)
        {
            Array.Fill(rowSequence, n, sequences[n].Batch * tq + sequences[n].QueryStart, sequences[n].Tq);
        }
        long rows = (long)batch * tq * hq;
        return new AttentionProblem<Real>
        {
            Tq = tq, Hq = hq, Hkv = hkv, Dk = dk, Dv = dv, Parts = 1,
            Sequences = buffers.Upload(sequences), RowSequence = buffers.Upload(rowSequence), KeyRows = buffers.Upload(keyRows),
            Q = buffers.Upload<Real>(q), K = buffers.Upload<Real>(k), V = buffers.Upload<Real>(v),
            O = buffers.Zeros<Real>(rows * dv), Lse = buffers.Zeros<Real>(rows),
        };
    }

    /// <summary>A sequence whose key j is row <paramref name="keyRow0"/> + j of k seen as [rows, Hkv, K].</summary>
    public static KeySequence Direct(int batch, int queryStart, int tq, int keyStart, int tk, int offset, int keyRow0) => new()
    {
        Batch = batch, QueryStart = queryStart, Tq = tq, KeyStart = keyStart, Tk = tk, Offset = offset, KeyRows = -1, KeyRow0 = keyRow0,
    };

    /// <summary>
    /// Scores.cs's rules of a softmax call (SoftmaxOptions as the CPU form reads them): scale, softcap, the window
    /// (window_right = 0 when causal), ALiBi slopes, and the mask as the additive bias the kernels add, a bool mask as
    /// 0 / −∞ exactly as SoftmaxMask.Bias reads it (whatever mask_type made it bool: an integer or bool tensor under
    /// auto, or floats under mask_type=bool).
    /// </summary>
    public static ScoreRules<Real> Rules<Real>(DeviceBuffers buffers, SoftmaxOptions options, Tensor? slopes, int hq)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var rules = new ScoreRules<Real>
        {
            Scale = Real.CreateTruncating(options.Scale), Softcap = Real.CreateTruncating(options.Softcap),
            WindowLeft = options.WindowLeft, WindowRight = options.Causal ? 0 : options.WindowRight,
        };
        if (slopes is not null)
        {
            rules.Slopes = buffers.Upload<Real>(slopes);
            rules.SlopeBatchStride = slopes.Rank == 2 ? hq : 0;
        }
        if (options.Mask is { } mask)
        {
            double[] bias = mask.IsBool ? Array.ConvertAll(mask.Data, value => value != 0 ? 0 : double.NegativeInfinity) : mask.Data;
            rules.Mask = buffers.Upload<Real>(new Tensor([bias.Length], bias));
            (rules.MaskB, rules.MaskH, rules.MaskT, rules.MaskU) = (mask.Strides[0], mask.Strides[1], mask.Strides[2], mask.Strides[3]);
        }
        return rules;
    }

    /// <summary>
    /// The naive method (SoftmaxKernels.Rows) over <paramref name="parts"/> parts of each sequence's keys, one group
    /// per (query row, head, part); with more than one part, the partial results merged into o and lse
    /// (SoftmaxKernels.Merge).
    /// </summary>
    public static void Naive<Real>(GpuDevice device, DeviceBuffers buffers, AttentionProblem<Real> x, int parts)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        x.Parts = parts;
        if (parts > 1)
        {
            x.OParts = buffers.Zeros<Real>(parts * x.Rows * x.Dv);
            x.LseParts = buffers.Zeros<Real>(parts * x.Rows);
        }
        device.LaunchGroups<AttentionProblem<Real>, Real>(SoftmaxKernels.Rows, parts * x.Rows, device.GroupSize, x);
        if (parts > 1)
        {
            device.Launch(SoftmaxKernels.Merge, x.Rows, x);
        }
    }

    /// <summary>
    /// A tiled engine kernel (<paramref name="kernel"/>: FlashAttentionKernels.Forward or ForgettingKernels.Tiled) over
    /// query blocks of Br rows of every sequence, one group per (block, head, pass of value columns), the blocks that
    /// reach the most keys first (a causal block near the end sees every key before it: launched early, the long
    /// blocks do not leave a tail). <paramref name="reach"/> gives the keys a block's rows reach.
    /// </summary>
    public static void Tiled<Real>(GpuDevice device, DeviceBuffers buffers, AttentionProblem<Real> x, KeySequence[] sequences,
        Action<AttentionProblem<Real>> kernel, Func<KeySequence, int, int, int> reach)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        long sharedReals = Math.Min(device.Accelerator.MaxSharedMemoryPerGroup, SharedBytes) / System.Runtime.CompilerServices.Unsafe.SizeOf<Real>();
        x.Tile = TileShape.For(device.GroupSize, x.Dk, x.Dv, sharedReals);
        var blocks = new List<(QueryBlock Block, int Keys)>();
        for (int n = 0; n < sequences.Length; n++)
        {
            for (int i0 = 0; i0 < sequences[n].Tq; i0 += x.Tile.Br)
            {
                int last = Math.Min(i0 + x.Tile.Br, sequences[n].Tq) - 1;
                blocks.Add((new QueryBlock { Sequence = n, First = i0 }, reach(sequences[n], i0, last)));
            }
        }
        x.Blocks = buffers.Upload(blocks.OrderByDescending(b => b.Keys).Select(b => b.Block).ToArray());
        device.LaunchGroups<AttentionProblem<Real>, Real>(kernel, (long)blocks.Count * x.Hq * x.Tile.Passes, x.Tile.Length, x);
    }

    /// <summary>o [B,Tq,Hq,V] and lse [B,Tq,Hq] off the device.</summary>
    public static Dictionary<string, Tensor> Outputs<Real>(GpuDevice device, AttentionProblem<Real> x, int batch)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        device.Synchronize();
        return new Dictionary<string, Tensor>
        {
            ["o"] = DeviceBuffers.Download(x.O, [batch, x.Tq, x.Hq, x.Dv]),
            ["lse"] = DeviceBuffers.Download(x.Lse, [batch, x.Tq, x.Hq]),
        };
    }
}
