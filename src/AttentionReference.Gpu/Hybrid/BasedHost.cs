using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Forms.Hybrid;
using AttentionReference.Forms.Linear;
using AttentionReference.Gpu.Linear;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu.Hybrid;

/// <summary>
/// The host of based: reads the call bound by the form's contract with the CPU form's own options
/// (<see cref="BasedOptions"/>), and runs its two branches on the device as the CPU form composes them: the linear
/// branch is linear's own kernels (LinearHost.Launch: taylor2, normalised, scale a = linear_scale, eps, causal; the
/// same variant name: recurrent token by token, the (1 + K + K²) × V state in the final_state buffer with one thread per
/// value column, which OpenCL refused; parallel one chunk per sequence; chunked chunks of C), then the window branch,
/// SoftmaxRowKernels.Add under the Window rule, adds o_win to linear's o before it comes down. Varlen and the
/// linear branch's initial state and normaliser as bound; the window keeps no state across calls.
/// </summary>
internal static class BasedHost
{
    /// <summary>The outputs o, final_state and final_normalizer of <paramref name="variant"/> of a based call.</summary>
    public static IReadOnlyDictionary<string, Tensor> Run<Real>(GpuDevice device, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        BasedOptions options = BasedOptions.Read(problem);
        var (B, T, H, K, V) = (problem["B"], problem["T"], problem["H"], problem["K"], problem["V"]);
        int N = problem.Sequences.Count, F = problem["F"];
        if ((long)B * T * H * V == 0 && (long)N * H == 0)
        {
            // Every output is empty: nothing to upload or launch, however long the time axis.
            return new Dictionary<string, Tensor>
            {
                ["o"] = Tensor.Zeros(B, T, H, V), ["final_state"] = Tensor.Zeros(N, H, F, V), ["final_normalizer"] = Tensor.Zeros(N, H, F),
            };
        }
        using DeviceBuffers buffers = device.Buffers();

        // Linear branch: o_lin_t = a · S_tᵀ φ(q_t) / (a · φ(q_t)·z_t + eps), φ = taylor2; S, z from the initial state.
        var linearOptions = new LinearOptions(LinearFeatureMap.Taylor2, Normalize: true, options.Eps, Causal: true, options.LinearScale, options.ChunkSize);
        LinearProblem<Real> linear = LinearHost.Launch<Real>(device, buffers, variant, problem, linearOptions);

        // Window branch, added: softmax over W_t = { j : t − window < j ≤ t } (q and k as given: linear keeps q̃, k̃).
        var window = new SoftmaxRowProblem<Real>
        {
            T = T, H = H, Dk = K, Dv = V, Rule = SoftmaxRowProblem<Real>.Window, W = options.Window,
            Scale = Real.CreateTruncating(options.Scale),
            Sequences = linear.Sequences, RowSequence = linear.RowSequence,
            Q = buffers.Upload<Real>(problem.Input("q")), K = buffers.Upload<Real>(problem.Input("k")), V = linear.V,
            O = linear.O,
            Weighted = buffers.Zeros<Real>((long)B * T * H * V),
        };
        device.LaunchGroups<SoftmaxRowProblem<Real>, Real>(SoftmaxRowKernels.Add, (long)B * T * H, device.GroupSize, window);
        device.Synchronize();
        return LinearHost.Outputs(linear, problem);
    }
}
