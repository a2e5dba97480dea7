using System.Runtime.InteropServices;

namespace AttentionReference.OpenCL.Native;

/// <summary>
/// The OpenCL entry points this backend uses, and nothing more, bound to the ICD loader <c>libOpenCL.so.1</c>
/// (ocl-icd on Debian; it dispatches to PoCL, NVIDIA's <c>libnvidia-opencl.so.1</c>, ...). Handles are opaque
/// pointers; every call's status goes through <see cref="ClError.Check"/>.
/// </summary>
internal static unsafe partial class Cl
{
    private const string Library = "libOpenCL.so.1";

    public const int Success = 0;
    public const int MemObjectAllocationFailure = -4, OutOfResources = -5, OutOfHostMemory = -6;
    public const ulong DeviceTypeAll = 0xFFFFFFFF;
    public const uint PlatformName = 0x0902, PlatformVersion = 0x0901;
    public const uint DeviceName = 0x102B, DeviceVendor = 0x102C, DeviceVersion = 0x102F, DeviceDoubleFpConfig = 0x1032;
    public const uint DeviceMaxWorkGroupSize = 0x1004, DeviceLocalMemSize = 0x1023, DeviceGlobalMemSize = 0x101F, DeviceType = 0x1000;
    public const ulong DeviceTypeGpu = 1 << 2;
    public const uint ProgramBuildLog = 0x1183;
    public const ulong MemReadWrite = 1 << 0, MemReadOnly = 1 << 2, MemCopyHostPtr = 1 << 5;
    public const ulong QueueProperties = 0x1093, QueueProfilingEnable = 1 << 1;
    public const uint ProfilingCommandStart = 0x1282, ProfilingCommandEnd = 0x1283;

    [LibraryImport(Library, EntryPoint = "clGetPlatformIDs")]
    public static partial int GetPlatformIDs(uint count, nint* platforms, uint* found);

    [LibraryImport(Library, EntryPoint = "clGetPlatformInfo")]
    public static partial int GetPlatformInfo(nint platform, uint name, nuint size, void* value, nuint* sizeOut);

    [LibraryImport(Library, EntryPoint = "clGetDeviceIDs")]
    public static partial int GetDeviceIDs(nint platform, ulong type, uint count, nint* devices, uint* found);

    [LibraryImport(Library, EntryPoint = "clGetDeviceInfo")]
    public static partial int GetDeviceInfo(nint device, uint name, nuint size, void* value, nuint* sizeOut);

    [LibraryImport(Library, EntryPoint = "clCreateContext")]
    public static partial nint CreateContext(nint* properties, uint deviceCount, nint* devices, nint callback, nint userData, int* status);

    [LibraryImport(Library, EntryPoint = "clCreateCommandQueueWithProperties")]
    public static partial nint CreateCommandQueueWithProperties(nint context, nint device, ulong* properties, int* status);

    [LibraryImport(Library, EntryPoint = "clCreateProgramWithSource")]
    public static partial nint CreateProgramWithSource(nint context, uint count, byte** sources, nuint* lengths, int* status);

    [LibraryImport(Library, EntryPoint = "clBuildProgram")]
    public static partial int BuildProgram(nint program, uint deviceCount, nint* devices, byte* options, nint callback, nint userData);

    [LibraryImport(Library, EntryPoint = "clGetProgramBuildInfo")]
    public static partial int GetProgramBuildInfo(nint program, nint device, uint name, nuint size, void* value, nuint* sizeOut);

    [LibraryImport(Library, EntryPoint = "clCreateKernel")]
    public static partial nint CreateKernel(nint program, byte* name, int* status);

    [LibraryImport(Library, EntryPoint = "clSetKernelArg")]
    public static partial int SetKernelArg(nint kernel, uint index, nuint size, void* value);

    [LibraryImport(Library, EntryPoint = "clCreateBuffer")]
    public static partial nint CreateBuffer(nint context, ulong flags, nuint size, void* host, int* status);

    [LibraryImport(Library, EntryPoint = "clEnqueueReadBuffer")]
    public static partial int EnqueueReadBuffer(nint queue, nint buffer, uint blocking, nuint offset, nuint size, void* destination,
        uint waitCount, nint* waitList, nint* evt);

    [LibraryImport(Library, EntryPoint = "clEnqueueWriteBuffer")]
    public static partial int EnqueueWriteBuffer(nint queue, nint buffer, uint blocking, nuint offset, nuint size, void* source,
        uint waitCount, nint* waitList, nint* evt);

    [LibraryImport(Library, EntryPoint = "clEnqueueFillBuffer")]
    public static partial int EnqueueFillBuffer(nint queue, nint buffer, void* pattern, nuint patternSize, nuint offset, nuint size,
        uint waitCount, nint* waitList, nint* evt);

    [LibraryImport(Library, EntryPoint = "clEnqueueNDRangeKernel")]
    public static partial int EnqueueNDRangeKernel(nint queue, nint kernel, uint dimensions, nuint* offset, nuint* global, nuint* local,
        uint waitCount, nint* waitList, nint* evt);

    [LibraryImport(Library, EntryPoint = "clGetEventProfilingInfo")]
    public static partial int GetEventProfilingInfo(nint evt, uint name, nuint size, void* value, nuint* sizeOut);

    [LibraryImport(Library, EntryPoint = "clReleaseEvent")]
    public static partial int ReleaseEvent(nint evt);

    [LibraryImport(Library, EntryPoint = "clFinish")]
    public static partial int Finish(nint queue);

    [LibraryImport(Library, EntryPoint = "clReleaseMemObject")]
    public static partial int ReleaseMemObject(nint buffer);

    [LibraryImport(Library, EntryPoint = "clReleaseKernel")]
    public static partial int ReleaseKernel(nint kernel);

    [LibraryImport(Library, EntryPoint = "clReleaseProgram")]
    public static partial int ReleaseProgram(nint program);

    [LibraryImport(Library, EntryPoint = "clReleaseCommandQueue")]
    public static partial int ReleaseCommandQueue(nint queue);

    [LibraryImport(Library, EntryPoint = "clReleaseContext")]
    public static partial int ReleaseContext(nint context);
}
