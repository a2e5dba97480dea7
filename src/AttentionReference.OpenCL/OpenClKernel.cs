using AttentionReference.OpenCL.Native;

namespace AttentionReference.OpenCL;

/// <summary>A kernel with its arguments; released on dispose.</summary>
public sealed unsafe class OpenClKernel(nint handle, string name) : IDisposable
{
    internal nint Handle { get; } = handle;

    /// <summary>The kernel's function name.</summary>
    public string Name { get; } = name;

    /// <summary>Sets a buffer argument.</summary>
    public OpenClKernel Arg(uint index, DeviceBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        nint mem = buffer.Handle;
        ClError.Check(Cl.SetKernelArg(Handle, index, (nuint)sizeof(nint), &mem), $"clSetKernelArg({Name}, {index})");
        return this;
    }

    /// <summary>Reserves <paramref name="bytes"/> of local memory for a <c>__local</c> pointer argument.</summary>
    public OpenClKernel LocalArg(uint index, long bytes)
    {
        ClError.Check(Cl.SetKernelArg(Handle, index, (nuint)bytes, null), $"clSetKernelArg({Name}, {index})");
        return this;
    }

    /// <summary>Sets an int argument.</summary>
    public OpenClKernel Arg(uint index, int value)
    {
        ClError.Check(Cl.SetKernelArg(Handle, index, sizeof(int), &value), $"clSetKernelArg({Name}, {index})");
        return this;
    }

    /// <summary>Sets a real argument in the kernel's precision.</summary>
    public OpenClKernel Arg(uint index, double value, Precision precision)
    {
        if (precision == Precision.F64)
        {
            ClError.Check(Cl.SetKernelArg(Handle, index, sizeof(double), &value), $"clSetKernelArg({Name}, {index})");
        }
        else
        {
            float single = (float)value;
            ClError.Check(Cl.SetKernelArg(Handle, index, sizeof(float), &single), $"clSetKernelArg({Name}, {index})");
        }
        return this;
    }

    /// <inheritdoc/>
    public void Dispose() => _ = Cl.ReleaseKernel(Handle); // a failed release cannot be acted on
}
