using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using AttentionReference.OpenCL;
using AttentionReference.OpenCL.Native;

namespace AttentionReference.Bench;

/// <summary>
/// The OpenCL device's measured FMA rate (GFLOP/s, an FMA = 2 FLOPs): a kernel of eight independent fma() chains per
/// work-item over 2²⁰ work-items, timed by the wall clock around a blocking run, best of three.
/// </summary>
/// <remarks>
/// <see cref="OpenClContext"/> builds only the kernel files embedded in AttentionReference.OpenCL (its
/// <c>Kernel(file, name, precision)</c> reads <c>kernels/FILE</c>) and keeps its context and queue private, so the
/// probe opens its own context on the same <see cref="OpenClDevice"/> through the few entry points below. The API that
/// would remove this: <c>OpenClContext.Kernel(string name, string source, Precision precision)</c> building a source
/// given as text.
/// </remarks>
public static unsafe partial class OpenClPeak
{
    private const string Source = """
        #ifdef USE_F64
        #pragma OPENCL EXTENSION cl_khr_fp64 : enable
        typedef double real;
        #else
        typedef float real;
        #endif
        __kernel void fma_chains(__global real* out, int n, real x, real y)
        {
            real a0 = (real)get_global_id(0) * (real)1e-9, a1 = a0 + y, a2 = a1 + y, a3 = a2 + y,
                 a4 = a3 + y, a5 = a4 + y, a6 = a5 + y, a7 = a6 + y;
            for (int i = 0; i < n; i++) {
                a0 = fma(a0, x, y); a1 = fma(a1, x, y); a2 = fma(a2, x, y); a3 = fma(a3, x, y);
                a4 = fma(a4, x, y); a5 = fma(a5, x, y); a6 = fma(a6, x, y); a7 = fma(a7, x, y);
            }
            out[get_global_id(0)] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
        }
        """;

    private const int Chains = 8, WorkItems = 1 << 20;

    /// <summary>GFLOP/s of <paramref name="device"/> in <paramref name="precision"/>.</summary>
    public static double Measure(OpenClDevice device, Precision precision)
    {
        ArgumentNullException.ThrowIfNull(device);
        nint id = device.Device;
        int status;
        nint context = CreateContext(null, 1, &id, 0, 0, &status);
        Check(status, "clCreateContext");
        nint queue = 0, program = 0, kernel = 0, buffer = 0;
        try
        {
            queue = CreateCommandQueueWithProperties(context, id, null, &status);
            Check(status, "clCreateCommandQueueWithProperties");
            byte[] source = Encoding.UTF8.GetBytes(Source);
            fixed (byte* s = source)
            {
                byte* sources = s;
                nuint length = (nuint)source.Length;
                program = CreateProgramWithSource(context, 1, &sources, &length, &status);
            }
            Check(status, "clCreateProgramWithSource");
            byte[] options = Encoding.ASCII.GetBytes((precision == Precision.F64 ? "-DUSE_F64" : "") + "\0");
            fixed (byte* o = options)
            {
                Check(BuildProgram(program, 1, &id, o, 0, 0), "clBuildProgram (the FMA probe)");
            }
            byte[] name = Encoding.ASCII.GetBytes("fma_chains\0");
            fixed (byte* n = name)
            {
                kernel = CreateKernel(program, n, &status);
            }
            Check(status, "clCreateKernel");
            int size = precision == Precision.F64 ? sizeof(double) : sizeof(float);
            buffer = CreateBuffer(context, 1, (nuint)(WorkItems * size), null, &status);
            Check(status, "clCreateBuffer");
            Check(SetKernelArg(kernel, 0, (nuint)sizeof(nint), &buffer), "clSetKernelArg");
            if (precision == Precision.F64)
            {
                double x = 0.9999999, y = 1e-7;
                Check(SetKernelArg(kernel, 2, sizeof(double), &x), "clSetKernelArg");
                Check(SetKernelArg(kernel, 3, sizeof(double), &y), "clSetKernelArg");
            }
            else
            {
                float x = 0.99999f, y = 1e-5f;
                Check(SetKernelArg(kernel, 2, sizeof(float), &x), "clSetKernelArg");
                Check(SetKernelArg(kernel, 3, sizeof(float), &y), "clSetKernelArg");
            }
            int iterations = 256;
            Time(queue, kernel, iterations); // build and warm up
            while (Time(queue, kernel, iterations) < 0.05 && iterations < (1 << 24))
            {
                iterations *= 2;
            }
            double best = double.MaxValue;
            for (int r = 0; r < 3; r++)
            {
                best = Math.Min(best, Time(queue, kernel, iterations));
            }
            return (double)WorkItems * iterations * Chains * 2 / best / 1e9;
        }
        finally
        {
            // Releases during cleanup cannot be acted on; their statuses are ignored on purpose.
            if (buffer != 0) { _ = ReleaseMemObject(buffer); }
            if (kernel != 0) { _ = ReleaseKernel(kernel); }
            if (program != 0) { _ = ReleaseProgram(program); }
            if (queue != 0) { _ = ReleaseCommandQueue(queue); }
            _ = ReleaseContext(context);
        }
    }

    private static double Time(nint queue, nint kernel, int iterations)
    {
        Check(SetKernelArg(kernel, 1, sizeof(int), &iterations), "clSetKernelArg");
        nuint global = WorkItems, local = 256;
        long start = Stopwatch.GetTimestamp();
        Check(EnqueueNDRangeKernel(queue, kernel, 1, null, &global, &local, 0, null, null), "clEnqueueNDRangeKernel");
        Check(Finish(queue), "clFinish");
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new OpenClException(call, status);
        }
    }

    private const string Library = "libOpenCL.so.1";

    [LibraryImport(Library, EntryPoint = "clCreateContext")]
    private static partial nint CreateContext(nint* properties, uint deviceCount, nint* devices, nint callback, nint userData, int* status);

    [LibraryImport(Library, EntryPoint = "clCreateCommandQueueWithProperties")]
    private static partial nint CreateCommandQueueWithProperties(nint context, nint device, ulong* properties, int* status);

    [LibraryImport(Library, EntryPoint = "clCreateProgramWithSource")]
    private static partial nint CreateProgramWithSource(nint context, uint count, byte** sources, nuint* lengths, int* status);

    [LibraryImport(Library, EntryPoint = "clBuildProgram")]
    private static partial int BuildProgram(nint program, uint deviceCount, nint* devices, byte* options, nint callback, nint userData);

    [LibraryImport(Library, EntryPoint = "clCreateKernel")]
    private static partial nint CreateKernel(nint program, byte* name, int* status);

    [LibraryImport(Library, EntryPoint = "clSetKernelArg")]
    private static partial int SetKernelArg(nint kernel, uint index, nuint size, void* value);

    [LibraryImport(Library, EntryPoint = "clCreateBuffer")]
    private static partial nint CreateBuffer(nint context, ulong flags, nuint size, void* host, int* status);

    [LibraryImport(Library, EntryPoint = "clEnqueueNDRangeKernel")]
    private static partial int EnqueueNDRangeKernel(nint queue, nint kernel, uint dims, nuint* offset, nuint* global, nuint* local,
        uint waitCount, nint* waitList, nint* evt);

    [LibraryImport(Library, EntryPoint = "clFinish")]
    private static partial int Finish(nint queue);

    [LibraryImport(Library, EntryPoint = "clReleaseMemObject")]
    private static partial int ReleaseMemObject(nint memory);

    [LibraryImport(Library, EntryPoint = "clReleaseKernel")]
    private static partial int ReleaseKernel(nint kernel);

    [LibraryImport(Library, EntryPoint = "clReleaseProgram")]
    private static partial int ReleaseProgram(nint program);

    [LibraryImport(Library, EntryPoint = "clReleaseCommandQueue")]
    private static partial int ReleaseCommandQueue(nint queue);

    [LibraryImport(Library, EntryPoint = "clReleaseContext")]
    private static partial int ReleaseContext(nint context);
}
