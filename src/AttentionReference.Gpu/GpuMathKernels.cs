using System.Numerics;
using AttentionReference.Tensors;
using ILGPU;

namespace AttentionReference.Gpu;

/// <summary>Each function of <see cref="GpuMath"/> as a kernel over a vector, so its accuracy on a device can be measured.</summary>
internal static class GpuMathKernels
{
    /// <summary>The functions by name.</summary>
    public static IReadOnlyList<string> Functions { get; } = ["exp", "sqrt", "log", "sin", "cos"];

    /// <summary>The points x and the values y of one evaluation.</summary>
    internal struct Points<Real> where Real : unmanaged
    {
        public ArrayView<Real> X, Y;
    }

    /// <summary>y_i = e^(x_i).</summary>
    public static void Exp<Real>(Index1D i, Points<Real> p) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        p.Y[i] = GpuMath.Exp(p.X[i]);

    /// <summary>y_i = √x_i.</summary>
    public static void Sqrt<Real>(Index1D i, Points<Real> p) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        p.Y[i] = GpuMath.Sqrt(p.X[i]);

    /// <summary>y_i = log x_i.</summary>
    public static void Log<Real>(Index1D i, Points<Real> p) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        p.Y[i] = GpuMath.Log(p.X[i]);

    /// <summary>y_i = sin x_i.</summary>
    public static void Sin<Real>(Index1D i, Points<Real> p) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        p.Y[i] = GpuMath.Sin(p.X[i]);

    /// <summary>y_i = cos x_i.</summary>
    public static void Cos<Real>(Index1D i, Points<Real> p) where Real : unmanaged, IFloatingPointIeee754<Real> =>
        p.Y[i] = GpuMath.Cos(p.X[i]);

    /// <summary><paramref name="function"/> at every point of <paramref name="x"/>, computed on <paramref name="device"/>.</summary>
    public static double[] Evaluate<Real>(GpuDevice device, string function, double[] x) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        using DeviceBuffers buffers = device.Buffers();
        var points = new Points<Real> { X = buffers.Upload<Real>(new Tensor([x.Length], x)), Y = buffers.Zeros<Real>(x.Length) };
        switch (function)
        {
            case "exp":
                device.Launch<Points<Real>>(Exp, x.Length, points);
                break;
            case "sqrt":
                device.Launch<Points<Real>>(Sqrt, x.Length, points);
                break;
            case "log":
                device.Launch<Points<Real>>(Log, x.Length, points);
                break;
            case "sin":
                device.Launch<Points<Real>>(Sin, x.Length, points);
                break;
            case "cos":
                device.Launch<Points<Real>>(Cos, x.Length, points);
                break;
            default:
                throw new InputException($"GpuMath has no function '{function}'; functions: {string.Join(", ", Functions)}");
        }
        device.Synchronize();
        return DeviceBuffers.Download(points.Y, [x.Length]).Data;
    }
}
