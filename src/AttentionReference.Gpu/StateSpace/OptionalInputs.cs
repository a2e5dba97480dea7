using System.Numerics;
using AttentionReference.Forms;
using ILGPU;

namespace AttentionReference.Gpu.StateSpace;

/// <summary>Inputs of the state-space forms that may be left out (D, z, biases, real_a's absent imaginary parts).</summary>
internal static class OptionalInputs
{
    /// <summary>The input <paramref name="name"/> on the device, or the empty view where it was left out (read as 0 or "none").</summary>
    public static ArrayView<Real> UploadOptional<Real>(this DeviceBuffers buffers, Problem problem, string name)
        where Real : unmanaged, IFloatingPointIeee754<Real> =>
        problem.Optional(name) is { } tensor ? buffers.Upload<Real>(tensor) : default;
}
