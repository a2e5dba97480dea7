using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The host of sparse (Forms/Softmax/Sparse.cs): reads the call as the CPU form does (SparseOptions, the pattern's own
/// checks, BlockLayout and Sparse.GlobalTokens, in its order, so the same errors) and runs softmax's naive method
/// (SoftmaxKernels.Rows) with the pattern on A_i (<see cref="ScoreRules{Real}.Allows"/>), as the CPU form runs
/// Softmax.Naive: each batch entry one sequence, the window causal (bottom-right) or full.
/// </summary>
internal static class SparseHost
{
    /// <summary>o and lse of the pattern <paramref name="variant"/> (block, longformer, bigbird) of a bound sparse call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        var options = SparseOptions.Read(problem);
        int pattern = variant switch
        {
            "block" => ScoreRules<Real>.PatternBlock,
            "longformer" => ScoreRules<Real>.PatternLongformer,
            _ => ScoreRules<Real>.PatternBigBird,
        };
        _ = pattern switch // the CPU form's checks, in its order: the pattern's own (bigbird's shapes), its layout, its global tokens
        {
            ScoreRules<Real>.PatternBlock => Sparse.Block(problem, options),
            ScoreRules<Real>.PatternLongformer => Sparse.Longformer(problem, options),
            _ => Sparse.BigBird(problem, options),
        };
        BlockLayout? layout = pattern == ScoreRules<Real>.PatternLongformer ? null : BlockLayout.Read(problem, options, variant);
        int[] global = pattern == ScoreRules<Real>.PatternBlock ? [] : Array.ConvertAll(Sparse.GlobalTokens(problem), g => g ? 1 : 0);
        int batch = problem["B"], tq = problem["Tq"], tk = problem["Tk"], hq = problem["Hq"];
        KeySequence[] sequences = Enumerable.Range(0, batch)
            .Select(b => KeyedAttention.Direct(b, 0, tq, 0, tk, tk - tq, b * tk)).ToArray();

        using DeviceBuffers buffers = device.Buffers();
        var x = KeyedAttention.Upload<Real>(buffers, sequences, [], batch, tq, hq, problem["Hkv"], problem["K"], problem["V"],
            problem.Input("q"), problem.Input("k"), problem.Input("v"));
        x.Scores = new ScoreRules<Real>
        {
            Scale = Real.CreateTruncating(options.Scale), WindowLeft = -1, WindowRight = options.Causal ? 0 : -1,
            Pattern = pattern, Global = buffers.Upload(global),
            Layout = buffers.Upload(layout is null ? [] : Array.ConvertAll(layout.Cells, cell => (int)cell)),
            LayoutHeads = layout?.Heads ?? 1, LayoutRows = layout?.Rows ?? 0, LayoutColumns = layout?.Columns ?? 0,
            BlockQ = options.BlockQ, BlockK = options.BlockK,
            PatternWindow = pattern == ScoreRules<Real>.PatternBigBird ? options.WindowBlocks : options.WindowKeys,
        };
        KeyedAttention.Naive(device, buffers, x, parts: 1);
        return KeyedAttention.Outputs(device, x, batch);
    }
}
