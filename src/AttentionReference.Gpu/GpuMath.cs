using System.Numerics;

namespace AttentionReference.Gpu;

/// <summary>
/// Every math function the kernels call, and nothing else may: one place whose accuracy on each accelerator can be
/// measured against the CPU's (<see cref="GpuMathKernels"/>). On ILGPU's CPU accelerator these are .NET's own (a kernel
/// runs as .NET code there); on CUDA ILGPU compiles them to PTX, where double exp is a software routine, not the CPU
/// libm. A kernel that needs a new function adds it here, with a line in <see cref="GpuMathKernels"/> to measure it.
/// </summary>
internal static class GpuMath
{
    /// <summary>e^x.</summary>
    public static Real Exp<Real>(Real x) where Real : IExponentialFunctions<Real> => Real.Exp(x);
}
