using AttentionReference.Gpu;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// One f64 and one f32 backend on one accelerator for a test class, each started at its first use (a class whose
/// accelerator is missing is skipped before any starts).
/// </summary>
public abstract class AcceleratorFixture : IDisposable
{
    private readonly Lazy<GpuBackend> _f64, _f32;

    protected AcceleratorFixture(string device)
    {
        _f64 = new(() => new GpuBackend(device, Precision.F64));
        _f32 = new(() => new GpuBackend(device, Precision.F32));
    }

    public GpuBackend F64 => _f64.Value;
    public GpuBackend F32 => _f32.Value;

    public void Dispose()
    {
        if (_f64.IsValueCreated)
        {
            _f64.Value.Dispose();
        }
        if (_f32.IsValueCreated)
        {
            _f32.Value.Dispose();
        }
        GC.SuppressFinalize(this);
    }
}

/// <summary>ILGPU's CPU accelerator: every machine has it.</summary>
public sealed class CpuAcceleratorFixture() : AcceleratorFixture("cpu");

/// <summary>The first CUDA device.</summary>
public sealed class CudaFixture() : AcceleratorFixture("cuda");
