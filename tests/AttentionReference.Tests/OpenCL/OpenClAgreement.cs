using AttentionReference.Forms;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.OpenCL;

/// <summary>How one output of an OpenCL run is held to the CPU reference, by the run's precision.</summary>
internal static class OpenClAgreement
{
    /// <summary>f64: relative error within <paramref name="tolerance"/>; f32: the same at unit scale
    /// (<see cref="TestTensors.CloseAtUnitScale"/>: f32 rounding is relative to the sum of |terms|, not to a cancelled
    /// output).</summary>
    public static bool Close(IBackend backend, Tensor gpu, Tensor cpu, double tolerance) =>
        backend is OpenClBackend { Precision: Precision.F32 }
            ? TestTensors.CloseAtUnitScale(gpu, cpu, tolerance)
            : TestTensors.Close(gpu, cpu, tolerance);
}
