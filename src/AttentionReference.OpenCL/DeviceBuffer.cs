namespace AttentionReference.OpenCL;

/// <summary>A device buffer of reals (f64 or f32) or ints; given back to its context's pool on dispose.</summary>
public sealed class DeviceBuffer : IDisposable
{
    private readonly OpenClContext _owner;
    private int _disposed;

    internal DeviceBuffer(OpenClContext owner, nint handle, int length, int elementSize, Precision precision, nuint bytes)
    {
        (_owner, Handle, Length, ElementSize, Precision, Bytes) = (owner, handle, length, elementSize, precision, bytes);
    }

    internal nint Handle { get; }

    /// <summary>Bytes per element: 8 (f64), 4 (f32 or int).</summary>
    internal int ElementSize { get; }

    /// <summary>The buffer's size on the device (at least one element: OpenCL has no empty buffers).</summary>
    internal nuint Bytes { get; }

    /// <summary>The precision of the reals it holds (F32 for ints).</summary>
    internal Precision Precision { get; }

    /// <summary>Number of elements.</summary>
    public int Length { get; }

    /// <inheritdoc/>
    public void Dispose()
    {
        // Once only: a handle given back twice would be handed to two buffers at once.
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _owner.Return(Handle, Bytes);
        }
    }
}
