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
/// </summary>
public sealed unsafe class OpenClContext : IDisposable
{
    private readonly nint _context, _queue;
    private readonly ConcurrentDictionary<(string File, Precision Precision), nint> _programs = new();
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

    /// <summary>Copies <paramref name="values"/> to a new device buffer in <paramref name="precision"/>.</summary>
    public DeviceBuffer Upload(ReadOnlySpan<double> values, Precision precision) => DeviceBuffer.Upload(_context, values, precision);

    /// <summary>A new device buffer of <paramref name="length"/> elements.</summary>
    public DeviceBuffer Allocate(int length, Precision precision) => DeviceBuffer.Allocate(_context, length, precision);

    /// <summary>A buffer of 32-bit integers (indices).</summary>
    public DeviceBuffer UploadInts(ReadOnlySpan<int> values) => DeviceBuffer.UploadInts(_context, values);

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

    /// <summary>Reads a buffer back as doubles.</summary>
    public double[] Download(DeviceBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return buffer.Read(_queue);
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
        _disposed = true;
        // A release that fails during disposal cannot be acted on; the statuses are ignored on purpose.
        foreach (nint program in _programs.Values)
        {
            _ = Cl.ReleaseProgram(program);
        }
        _ = Cl.ReleaseCommandQueue(_queue);
        _ = Cl.ReleaseContext(_context);
    }
}

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

/// <summary>A device buffer of reals (f64 or f32) or ints; released on dispose.</summary>
public sealed unsafe class DeviceBuffer : IDisposable
{
    private DeviceBuffer(nint handle, int length, int elementSize, Precision precision)
    {
        (Handle, Length, _elementSize, _precision) = (handle, length, elementSize, precision);
    }

    private readonly int _elementSize;
    private readonly Precision _precision;

    internal nint Handle { get; }

    /// <summary>Number of elements.</summary>
    public int Length { get; }

    internal static DeviceBuffer Upload(nint context, ReadOnlySpan<double> values, Precision precision)
    {
        if (precision == Precision.F64)
        {
            fixed (double* v = values)
            {
                return Create(context, values.Length, sizeof(double), precision, v);
            }
        }
        float[] singles = new float[values.Length];
        for (int i = 0; i < singles.Length; i++)
        {
            singles[i] = (float)values[i];
        }
        fixed (float* s = singles)
        {
            return Create(context, values.Length, sizeof(float), precision, s);
        }
    }

    internal static DeviceBuffer UploadInts(nint context, ReadOnlySpan<int> values)
    {
        fixed (int* v = values)
        {
            return Create(context, values.Length, sizeof(int), Precision.F32, v);
        }
    }

    internal static DeviceBuffer Allocate(nint context, int length, Precision precision) =>
        Create(context, length, precision == Precision.F64 ? sizeof(double) : sizeof(float), precision, null);

    private static DeviceBuffer Create(nint context, int length, int elementSize, Precision precision, void* host)
    {
        // OpenCL forbids zero-sized buffers: keep one element so every kernel argument is a valid buffer.
        nuint bytes = (nuint)Math.Max(1, length) * (nuint)elementSize;
        ulong flags = Cl.MemReadWrite | (host is not null && length > 0 ? Cl.MemCopyHostPtr : 0);
        int status;
        nint handle = Cl.CreateBuffer(context, flags, bytes, length > 0 ? host : null, &status);
        ClError.Check(status, "clCreateBuffer");
        return new DeviceBuffer(handle, length, elementSize, precision);
    }

    internal double[] Read(nint queue)
    {
        var result = new double[Length];
        if (Length == 0)
        {
            return result;
        }
        if (_precision == Precision.F64 && _elementSize == sizeof(double))
        {
            fixed (double* r = result)
            {
                ClError.Check(Cl.EnqueueReadBuffer(queue, Handle, 1, 0, (nuint)(Length * sizeof(double)), r, 0, null, null), "clEnqueueReadBuffer");
            }
            return result;
        }
        var singles = new float[Length];
        fixed (float* s = singles)
        {
            ClError.Check(Cl.EnqueueReadBuffer(queue, Handle, 1, 0, (nuint)(Length * sizeof(float)), s, 0, null, null), "clEnqueueReadBuffer");
        }
        for (int i = 0; i < Length; i++)
        {
            result[i] = singles[i];
        }
        return result;
    }

    /// <inheritdoc/>
    public void Dispose() => _ = Cl.ReleaseMemObject(Handle); // a failed release cannot be acted on
}
