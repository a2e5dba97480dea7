using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.Softmax;

/// <summary>
/// The host of forgetting (Forms/Softmax/Forgetting.cs): each sequence (batch entry, or cu_seqlens' sequence) its own
/// causal problem, its keys and gates starting afresh; naive runs ForgettingKernels.Naive, tiled ForgettingKernels.Tiled
/// (block_q and block_k, which change only the summation order, are the accelerator's, TileShape).
/// </summary>
internal static class ForgettingHost
{
    /// <summary>o and lse of <paramref name="variant"/> (naive, tiled) of a bound forgetting call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        int batch = problem["B"], t = problem["T"], hq = problem["Hq"];
        KeySequence[] sequences = problem.Sequences.Select(s =>
        {
            var steps = s.Steps("T");
            return KeyedAttention.Direct(s.Batch, steps.Start, steps.Length, steps.Start, steps.Length, 0, s.Batch * t + steps.Start);
        }).ToArray();

        using DeviceBuffers buffers = device.Buffers();
        var x = KeyedAttention.Upload<Real>(buffers, sequences, [], batch, t, hq, problem["Hkv"], problem["K"], problem["V"],
            problem.Input("q"), problem.Input("k"), problem.Input("v"));
        x.G = buffers.Upload<Real>(problem.Input("g"));
        x.Scores = new ScoreRules<Real> { Scale = Real.CreateTruncating(SoftmaxSpecs.ScaleOf(problem)), WindowLeft = -1, WindowRight = 0 };
        if (variant == "naive")
        {
            device.LaunchGroups<AttentionProblem<Real>, Real>(ForgettingKernels.Naive, x.Rows, device.GroupSize, x);
        }
        else
        {
            KeyedAttention.Tiled(device, buffers, x, sequences, ForgettingKernels.Tiled, (seq, first, last) => last + 1);
        }
        return KeyedAttention.Outputs(device, x, batch);
    }
}
