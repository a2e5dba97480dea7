using AttentionReference.Forms;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.OpenCL;

/// <summary>The kernel-time accounting the bench reports: the profiling events of each kernel, summed per run.</summary>
[Collection(OpenClSerial.Name)]
public sealed class KernelTimeOpenClTests
{
    private static readonly Dictionary<string, Tensor> s_inputs = new()
    {
        ["q"] = Tensor.Zeros(1, 70, 2, 5),
        ["k"] = Tensor.Zeros(1, 70, 2, 5),
        ["v"] = Tensor.Zeros(1, 70, 2, 3),
    };

    [Fact]
    public void A_run_reports_the_positive_device_time_of_its_kernels_and_a_fresh_backend_none()
    {
        using var backend = new OpenClBackend(precision: Precision.F64);
        Assert.True(double.IsNaN(backend.LastRunKernelSeconds));
        backend.Run(FormCatalog.Find("softmax"), "split", s_inputs, new FormParameters(new Dictionary<string, string>()));
        // Two kernels ran (the split parts and their merge); each takes some nanoseconds, and far less than a minute.
        Assert.InRange(backend.LastRunKernelSeconds, 1e-9, 60);
    }

    [Fact]
    public void Kernel_seconds_add_up_over_runs_and_reset_to_zero()
    {
        using var context = new OpenClContext(OpenClDevice.Select(null));
        using OpenClKernel kernel = context.KernelFromSource("kernel_time_probe", "__kernel void probe(__global real* x) { x[get_global_id(0)] = 1; }", "probe", Precision.F32);
        using DeviceBuffer buffer = context.Allocate(256, Precision.F32);
        kernel.Arg(0, buffer);
        Assert.Equal(0, context.KernelSeconds);
        context.Run(kernel, 256, local: 64);
        double once = context.KernelSeconds;
        context.Run(kernel, 256, local: 64);
        Assert.True(once > 0 && context.KernelSeconds > once, $"after one run {once} s, after two {context.KernelSeconds} s");
        context.ResetKernelSeconds();
        Assert.Equal(0, context.KernelSeconds);
    }
}
