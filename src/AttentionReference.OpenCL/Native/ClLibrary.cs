using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AttentionReference.OpenCL.Native;

/// <summary>
/// Where libOpenCL.so.1 comes from: the system's loader search by default, or the file named by REF_OPENCL_LIBRARY
/// (e.g. the ICD loader CUDA ships, when the system has none). A named file that does not load is the same error as
/// a missing library: bad input, exit code 2.
/// </summary>
internal static class ClLibrary
{
    public const string PathVariable = "REF_OPENCL_LIBRARY";

    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "the resolver must be in place before the first P/Invoke")]
    internal static void Register() => NativeLibrary.SetDllImportResolver(typeof(ClLibrary).Assembly, Resolve);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string? path = Environment.GetEnvironmentVariable(PathVariable);
        return name == "libOpenCL.so.1" && !string.IsNullOrEmpty(path) ? NativeLibrary.Load(path) : 0;
    }
}
