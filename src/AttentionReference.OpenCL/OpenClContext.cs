using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using AttentionReference.OpenCL.Native;

namespace AttentionReference.OpenCL;

/// <summary>The element type kernels compute in: f64 (exact reference comparisons) or f32.</summary>
public enum Precision
{
    /// <summary>double; needs cl_khr_fp64.</summary>
    F64,
    /// <summary>float.</summary>
    F32,
}

/// <summary>
/// A context and in-order, profiling-enabled queue on one device, with its built programs cached by (kernel file,
/// precision): each kernel file is compiled once per device and precision for the life of the context. Every kernel
/// run adds its device time (the event's start to end) to <see cref="KernelSeconds"/>.
/// <para>
/// Device buffers are reused: a disposed <see cref="DeviceBuffer"/> goes back to a pool of free buffers by byte size,
/// and the next buffer of that size takes it instead of a fresh allocation. A run's buffers are typically its inputs'
/// and outputs' sizes, so repeated runs of one shape allocate nothing on the device (a fresh allocation costs page
/// faults on a CPU device and a device malloc/free on a GPU, each per run and per tensor). Reused buffers hold what
/// their last user left; uploads overwrite them, <see cref="Zeros"/> fills them, and <see cref="Allocate"/> promises
/// nothing about its contents, as clCreateBuffer never did. The pool holds at most a quarter of the device's global
/// memory, and <see cref="OpenClBackend"/> releases after each run the buffers that run did not use.
/// </para>
/// </summary>
public sealed unsafe class OpenClContext : IDisposable
{
    // Host-side conversions to and from f32 go through a scratch array of this many elements at a time, so that an
    // f32 transfer allocates no temporary as long as the tensor.
    private const int ConversionChunk = 1 << 20;

    private readonly nint _context, _queue;
    private readonly ConcurrentDictionary<(string File, Precision Precision), nint> _programs = new();
    private readonly Dictionary<nuint, Stack<(nint Handle, long Epoch)>> _free = [];
    private readonly long _poolCapacityBytes;
    private long _pooledBytes, _epoch;
    private long _kernelNanoseconds;
    private bool _disposed;

    /// <summary>Opens a context on <paramref name="device"/>.</summary>
    public OpenClContext(OpenClDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
        nint id = device.Device;
        int status;
        _context = Cl.CreateContext(null, 1, &id, 0, 0, &status);
        ClError.Check(status, "clCreateContext");
        ulong* properties = stackalloc ulong[] { Cl.QueueProperties, Cl.QueueProfilingEnable, 0 };
        _queue = Cl.CreateCommandQueueWithProperties(_context, id, properties, &status);
        ClError.Check(status, "clCreateCommandQueueWithProperties");
        ulong globalMemory;
        ClError.Check(Cl.GetDeviceInfo(id, Cl.DeviceGlobalMemSize, sizeof(ulong), &globalMemory, null), "clGetDeviceInfo");
        _poolCapacityBytes = (long)Math.Min(globalMemory / 4, long.MaxValue);
    }

    /// <summary>The device.</summary>
    public OpenClDevice Device { get; }

    /// <summary>
    /// Seconds the device spent in kernels run through <see cref="Run"/> since the context opened or the last
    /// <see cref="ResetKernelSeconds"/>: the sum of each kernel's profiling interval, without transfers or host work.
    /// </summary>
    public double KernelSeconds => Interlocked.Read(ref _kernelNanoseconds) / 1e9;

    /// <summary>Sets <see cref="KernelSeconds"/> back to zero.</summary>
    public void ResetKernelSeconds() => Interlocked.Exchange(ref _kernelNanoseconds, 0);

    /// <summary>Checks that the device can compute in <paramref name="precision"/>; f64 needs cl_khr_fp64.</summary>
    public void Require(Precision precision) => Device.Require(precision);

    /// <summary>Creates kernel <paramref name="name"/> of embedded file <paramref name="file"/> built for <paramref name="precision"/>.</summary>
    public OpenClKernel Kernel(string file, string name, Precision precision) =>
        KernelFromSource(file, KernelSource(file), name, precision);

    /// <summary>
    /// Creates kernel <paramref name="name"/> of OpenCL C given as text (a probe, a user's kernel), built like the
    /// embedded files (after the precision preamble) and cached under <paramref name="programName"/>.
    /// </summary>
    public OpenClKernel KernelFromSource(string programName, string source, string name, Precision precision)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        nint program = _programs.GetOrAdd((programName, precision), key => Build(key.File, source, key.Precision));
        byte[] nameBytes = Encoding.ASCII.GetBytes(name + "\0");
        int status;
        nint kernel;
        fixed (byte* n = nameBytes)
        {
            kernel = Cl.CreateKernel(program, n, &status);
        }
        ClError.Check(status, $"clCreateKernel({name})");
        return new OpenClKernel(kernel, name);
    }

    /// <summary>Copies <paramref name="values"/> to a device buffer in <paramref name="precision"/>.</summary>
    public DeviceBuffer Upload(ReadOnlySpan<double> values, Precision precision)
    {
        DeviceBuffer buffer = Allocate(values.Length, precision);
        try
        {
            if (precision == Precision.F64)
            {
                fixed (double* v = values)
                {
                    Write(buffer, 0, (long)values.Length * sizeof(double), v);
                }
            }
            else
            {
                WriteSingles(buffer, values);
            }
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <paramref name="values"/> on the device, or where they are null a buffer of <paramref name="length"/> zeros
    /// (an optional initial state): the zeros are written on the device, with no host array and no transfer.
    /// </summary>
    public DeviceBuffer UploadOrZeros(double[]? values, int length, Precision precision) =>
        values is null ? Zeros(length, precision) : Upload(values, precision);

    /// <summary>A device buffer of <paramref name="length"/> elements with unspecified contents.</summary>
    public DeviceBuffer Allocate(int length, Precision precision) => Rent(length, ElementSize(precision), precision);

    /// <summary>A device buffer of <paramref name="length"/> zeros (+0.0), filled on the device.</summary>
    public DeviceBuffer Zeros(int length, Precision precision)
    {
        DeviceBuffer buffer = Allocate(length, precision);
        if (length > 0)
        {
            // All bits zero is +0.0 in both precisions; the pattern is one element, as clEnqueueFillBuffer wants.
            ulong zero = 0;
            int status = Cl.EnqueueFillBuffer(_queue, buffer.Handle, &zero, (nuint)buffer.ElementSize, 0, buffer.Bytes, 0, null, null);
            if (status != Cl.Success)
            {
                buffer.Dispose();
                ClError.Check(status, "clEnqueueFillBuffer");
            }
        }
        return buffer;
    }

    /// <summary>A buffer of 32-bit integers (indices).</summary>
    public DeviceBuffer UploadInts(ReadOnlySpan<int> values)
    {
        DeviceBuffer buffer = Rent(values.Length, sizeof(int), Precision.F32);
        try
        {
            fixed (int* v = values)
            {
                Write(buffer, 0, (long)values.Length * sizeof(int), v);
            }
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>Bytes per element in <paramref name="precision"/>.</summary>
    public static int ElementSize(Precision precision) => precision == Precision.F64 ? sizeof(double) : sizeof(float);

    /// <summary>
    /// Runs <paramref name="kernel"/> over <paramref name="global"/> work-items (rounded up to <paramref name="local"/>),
    /// waits, and adds its device time to <see cref="KernelSeconds"/>.
    /// </summary>
    public void Run(OpenClKernel kernel, long global, int local = 0)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (global == 0)
        {
            return;
        }
        nuint localSize = (nuint)local;
        nuint globalSize = local > 0 ? (nuint)((global + local - 1) / local * local) : (nuint)global;
        nint done;
        ClError.Check(Cl.EnqueueNDRangeKernel(_queue, kernel.Handle, 1, null, &globalSize, local > 0 ? &localSize : null, 0, null, &done),
            $"clEnqueueNDRangeKernel({kernel.Name})");
        try
        {
            ClError.Check(Cl.Finish(_queue), "clFinish");
            ulong start, end;
            ClError.Check(Cl.GetEventProfilingInfo(done, Cl.ProfilingCommandStart, sizeof(ulong), &start, null), "clGetEventProfilingInfo(START)");
            ClError.Check(Cl.GetEventProfilingInfo(done, Cl.ProfilingCommandEnd, sizeof(ulong), &end, null), "clGetEventProfilingInfo(END)");
            Interlocked.Add(ref _kernelNanoseconds, (long)(end - start));
        }
        finally
        {
            ClError.Check(Cl.ReleaseEvent(done), "clReleaseEvent");
        }
    }

    /// <summary>Reads a buffer back as doubles, into a new array (not zeroed first: the read fills all of it).</summary>
    public double[] Download(DeviceBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        double[] result = GC.AllocateUninitializedArray<double>(buffer.Length);
        if (buffer.Length == 0)
        {
            return result;
        }
        if (buffer.ElementSize == sizeof(double))
        {
            fixed (double* r = result)
            {
                ClError.Check(Cl.EnqueueReadBuffer(_queue, buffer.Handle, 1, 0, (nuint)result.Length * sizeof(double), r, 0, null, null), "clEnqueueReadBuffer");
            }
            return result;
        }
        float[] scratch = ArrayPool<float>.Shared.Rent(Math.Min(result.Length, ConversionChunk));
        try
        {
            fixed (float* s = scratch)
            {
                for (int start = 0; start < result.Length; start += ConversionChunk)
                {
                    int count = Math.Min(ConversionChunk, result.Length - start);
                    ClError.Check(Cl.EnqueueReadBuffer(_queue, buffer.Handle, 1, (nuint)start * sizeof(float), (nuint)count * sizeof(float), s, 0, null, null),
                        "clEnqueueReadBuffer");
                    for (int i = 0; i < count; i++)
                    {
                        result[start + i] = scratch[i];
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
        return result;
    }

    /// <summary>Writes <paramref name="bytes"/> from <paramref name="source"/> at byte <paramref name="offset"/>, blocking.</summary>
    private void Write(DeviceBuffer buffer, long offset, long bytes, void* source)
    {
        if (bytes > 0)
        {
            ClError.Check(Cl.EnqueueWriteBuffer(_queue, buffer.Handle, 1, (nuint)offset, (nuint)bytes, source, 0, null, null), "clEnqueueWriteBuffer");
        }
    }

    /// <summary>Writes <paramref name="values"/> rounded to float, a chunk at a time through a scratch array.</summary>
    private void WriteSingles(DeviceBuffer buffer, ReadOnlySpan<double> values)
    {
        if (values.IsEmpty)
        {
            return;
        }
        float[] scratch = ArrayPool<float>.Shared.Rent(Math.Min(values.Length, ConversionChunk));
        try
        {
            fixed (float* s = scratch)
            {
                for (int start = 0; start < values.Length; start += ConversionChunk)
                {
                    int count = Math.Min(ConversionChunk, values.Length - start);
                    for (int i = 0; i < count; i++)
                    {
                        scratch[i] = (float)values[start + i];
                    }
                    Write(buffer, (long)start * sizeof(float), (long)count * sizeof(float), s);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>A buffer of <paramref name="length"/> elements: a free one of the same byte size, else a new one.</summary>
    private DeviceBuffer Rent(int length, int elementSize, Precision precision)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // OpenCL forbids zero-sized buffers: keep one element so every kernel argument is a valid buffer.
        nuint bytes = (nuint)Math.Max(1, length) * (nuint)elementSize;
        lock (_free)
        {
            if (_free.TryGetValue(bytes, out var stack) && stack.Count > 0)
            {
                _pooledBytes -= (long)bytes;
                return new DeviceBuffer(this, stack.Pop().Handle, length, elementSize, precision, bytes);
            }
        }
        int status;
        nint handle = Cl.CreateBuffer(_context, Cl.MemReadWrite, bytes, null, &status);
        if (status is Cl.MemObjectAllocationFailure or Cl.OutOfResources or Cl.OutOfHostMemory)
        {
            // The pool's idle buffers may be what the device lacks: give them back and try once more.
            ReleasePooled(all: true);
            handle = Cl.CreateBuffer(_context, Cl.MemReadWrite, bytes, null, &status);
        }
        ClError.Check(status, "clCreateBuffer");
        return new DeviceBuffer(this, handle, length, elementSize, precision, bytes);
    }

    /// <summary>Takes back a disposed buffer's memory: into the pool while it has room, else released.</summary>
    internal void Return(nint handle, nuint bytes)
    {
        lock (_free)
        {
            if (!_disposed && _pooledBytes + (long)bytes <= _poolCapacityBytes)
            {
                if (!_free.TryGetValue(bytes, out var stack))
                {
                    _free[bytes] = stack = new Stack<(nint, long)>();
                }
                stack.Push((handle, _epoch));
                _pooledBytes += (long)bytes;
                return;
            }
        }
        _ = Cl.ReleaseMemObject(handle); // a failed release cannot be acted on
    }

    /// <summary>
    /// Releases the pooled buffers that no one took or gave back since the last call (a run that used other sizes
    /// leaves the previous run's buffers idle): the pool keeps at most one run's buffers between runs.
    /// </summary>
    internal void ReleaseIdleBuffers() => ReleasePooled(all: false);

    private void ReleasePooled(bool all)
    {
        var released = new List<nint>();
        lock (_free)
        {
            foreach (var (bytes, stack) in _free)
            {
                var kept = stack.Where(entry => !all && entry.Epoch == _epoch).Reverse().ToArray();
                released.AddRange(stack.Where(entry => all || entry.Epoch != _epoch).Select(entry => entry.Handle));
                _pooledBytes -= (long)bytes * (stack.Count - kept.Length);
                stack.Clear();
                foreach (var entry in kept)
                {
                    stack.Push(entry);
                }
            }
            _epoch++;
        }
        foreach (nint handle in released)
        {
            _ = Cl.ReleaseMemObject(handle); // a failed release cannot be acted on
        }
    }

    private nint Build(string file, string text, Precision precision)
    {
        Require(precision);
        // Every program starts from the same precision preamble (real, fp64, no fused contraction).
        string source = KernelSource("Precision.cl") + "#line 1\n" + ExpandIncludes(text);
        byte[] sourceBytes = Encoding.UTF8.GetBytes(source);
        // -cl-fp32-correctly-rounded-divide-sqrt and no fast-math: the kernels must agree with the reference.
        byte[] options = Encoding.ASCII.GetBytes((precision == Precision.F64 ? "-DUSE_F64" : "") + "\0");
        int status;
        nint program;
        fixed (byte* s = sourceBytes)
        {
            byte* sources = s;
            nuint length = (nuint)sourceBytes.Length;
            program = Cl.CreateProgramWithSource(_context, 1, &sources, &length, &status);
        }
        ClError.Check(status, "clCreateProgramWithSource");
        nint device = Device.Device;
        fixed (byte* o = options)
        {
            status = Cl.BuildProgram(program, 1, &device, o, 0, 0);
        }
        if (status != Cl.Success)
        {
            string log = BuildLog(program, device);
            _ = Cl.ReleaseProgram(program); // best effort: the build error below is what matters
            throw new OpenClException($"building {file} for {Device.Description} failed with {ClError.Name(status)}:\n{log}");
        }
        return program;
    }

    private static string BuildLog(nint program, nint device)
    {
        nuint size;
        if (Cl.GetProgramBuildInfo(program, device, Cl.ProgramBuildLog, 0, null, &size) != Cl.Success)
        {
            return "(no build log)";
        }
        var bytes = new byte[(int)size];
        fixed (byte* b = bytes)
        {
            _ = Cl.GetProgramBuildInfo(program, device, Cl.ProgramBuildLog, size, b, null); // the log is best effort
        }
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0');
    }

    /// <summary>
    /// Kernel files share code through lines <c>#include "Complex.cl"</c>, expanded here from the embedded files (an
    /// OpenCL compiler's own #include wants a path on disk; ours are resources), each file once per program.
    /// </summary>
    internal static string ExpandIncludes(string text, HashSet<string>? included = null)
    {
        included ??= new HashSet<string>(StringComparer.Ordinal);
        string[] lines = text.Split('\n');
        var expanded = new StringBuilder();
        for (int line = 0; line < lines.Length; line++)
        {
            Match include = s_include.Match(lines[line]);
            if (!include.Success)
            {
                expanded.Append(lines[line]).Append('\n');
                continue;
            }
            string file = include.Groups[1].Value;
            if (included.Add(file))
            {
                expanded.Append("#line 1\n").Append(ExpandIncludes(KernelSource(file), included));
            }
            // Back to this file's numbering, so build logs point at the right line.
            expanded.Append(CultureInfo.InvariantCulture, $"#line {line + 2}\n");
        }
        return expanded.ToString();
    }

    private static readonly Regex s_include = new(@"^\s*#include\s+""([A-Za-z0-9_]+\.cl)""\s*$", RegexOptions.CultureInvariant);

    /// <summary>The text of an embedded kernel file ("Softmax.cl").</summary>
    public static string KernelSource(string file)
    {
        using Stream stream = typeof(OpenClContext).Assembly.GetManifestResourceStream("kernels/" + file)
            ?? throw new InvalidOperationException($"kernel file {file} is not embedded");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        lock (_free)
        {
            _disposed = true; // buffers disposed from now on are released, not pooled
        }
        ReleasePooled(all: true);
        // A release that fails during disposal cannot be acted on; the statuses are ignored on purpose.
        foreach (nint program in _programs.Values)
        {
            _ = Cl.ReleaseProgram(program);
        }
        _ = Cl.ReleaseCommandQueue(_queue);
        _ = Cl.ReleaseContext(_context);
    }
}
