using System.Numerics;
using AttentionReference.Tensors;
using ILGPU;
using ILGPU.Runtime;

namespace AttentionReference.Gpu;

/// <summary>
/// The device buffers of one run, freed together (<c>using var buffers = device.Buffers();</c>). Tensors go up in the
/// kernels' real type (double as is; float rounded to nearest once) and come down widened to double. An empty tensor
/// (T = 0) is the empty view: ILGPU allocates no buffer of length 0.
/// </summary>
internal sealed class DeviceBuffers(Accelerator accelerator) : IDisposable
{
    private readonly List<MemoryBuffer> _buffers = [];

    /// <summary>A zeroed buffer of <paramref name="length"/> elements.</summary>
    public ArrayView<T> Zeros<T>(long length) where T : unmanaged
    {
        if (length == 0)
        {
            return default;
        }
        var buffer = accelerator.Allocate1D<T>(length);
        _buffers.Add(buffer);
        buffer.MemSetToZero();
        return buffer.View;
    }

    /// <summary>The values of <paramref name="data"/> on the device.</summary>
    public ArrayView<T> Upload<T>(T[] data) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Length == 0)
        {
            return default;
        }
        var buffer = accelerator.Allocate1D(data);
        _buffers.Add(buffer);
        return buffer.View;
    }

    /// <summary>The values of <paramref name="tensor"/> in the real type <typeparamref name="Real"/>.</summary>
    public ArrayView<Real> Upload<Real>(Tensor tensor) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return Upload(typeof(Real) == typeof(double) ? (Real[])(object)tensor.Data : tensor.Data.Select(Real.CreateTruncating).ToArray());
    }

    /// <summary>The tensor of <paramref name="shape"/> held in <paramref name="view"/>, as doubles.</summary>
    public static Tensor Download<Real>(ArrayView<Real> view, int[] shape) where Real : unmanaged, IFloatingPointIeee754<Real>
    {
        Real[] data = view.Length == 0 ? [] : ((ArrayView1D<Real, Stride1D.Dense>)view).GetAsArray1D();
        return new Tensor(shape, typeof(Real) == typeof(double) ? (double[])(object)data : data.Select(double.CreateTruncating).ToArray());
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (MemoryBuffer buffer in _buffers)
        {
            buffer.Dispose();
        }
        _buffers.Clear();
    }
}
