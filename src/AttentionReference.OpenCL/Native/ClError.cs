using AttentionReference.Tensors;

namespace AttentionReference.OpenCL.Native;

/// <summary>An OpenCL call failed: the message names the call and the error (CL_OUT_OF_RESOURCES, ...).</summary>
public sealed class OpenClException : Exception
{
    /// <summary>A failure of <paramref name="call"/> with status <paramref name="status"/>.</summary>
    public OpenClException(string call, int status)
        : base($"{call} failed with {ClError.Name(status)} ({status})") => Status = status;

    /// <summary>A failure described in words.</summary>
    public OpenClException(string message) : base(message) { }

    /// <summary>A failure described in words.</summary>
    public OpenClException(string message, Exception inner) : base(message, inner) { }

    /// <summary>A failure with no detail.</summary>
    public OpenClException() { }

    /// <summary>The OpenCL status code, 0 when the failure had none.</summary>
    public int Status { get; }
}

/// <summary>OpenCL status codes by name (the standard's cl.h values).</summary>
internal static class ClError
{
    private static readonly Dictionary<int, string> s_names = new()
    {
        [-1] = "CL_DEVICE_NOT_FOUND", [-2] = "CL_DEVICE_NOT_AVAILABLE", [-3] = "CL_COMPILER_NOT_AVAILABLE",
        [-4] = "CL_MEM_OBJECT_ALLOCATION_FAILURE", [-5] = "CL_OUT_OF_RESOURCES", [-6] = "CL_OUT_OF_HOST_MEMORY",
        [-7] = "CL_PROFILING_INFO_NOT_AVAILABLE", [-11] = "CL_BUILD_PROGRAM_FAILURE", [-30] = "CL_INVALID_VALUE",
        [-32] = "CL_INVALID_PLATFORM", [-33] = "CL_INVALID_DEVICE", [-34] = "CL_INVALID_CONTEXT",
        [-36] = "CL_INVALID_COMMAND_QUEUE", [-38] = "CL_INVALID_MEM_OBJECT", [-44] = "CL_INVALID_PROGRAM",
        [-45] = "CL_INVALID_PROGRAM_EXECUTABLE", [-46] = "CL_INVALID_KERNEL_NAME", [-48] = "CL_INVALID_KERNEL",
        [-49] = "CL_INVALID_ARG_INDEX", [-50] = "CL_INVALID_ARG_VALUE", [-51] = "CL_INVALID_ARG_SIZE",
        [-52] = "CL_INVALID_KERNEL_ARGS", [-53] = "CL_INVALID_WORK_DIMENSION", [-54] = "CL_INVALID_WORK_GROUP_SIZE",
        [-55] = "CL_INVALID_WORK_ITEM_SIZE", [-56] = "CL_INVALID_GLOBAL_OFFSET", [-61] = "CL_INVALID_BUFFER_SIZE",
        [-63] = "CL_INVALID_GLOBAL_WORK_SIZE", [-1001] = "CL_PLATFORM_NOT_FOUND_KHR",
    };

    public static string Name(int status) => s_names.GetValueOrDefault(status, "CL error");

    /// <summary>Throws when <paramref name="status"/> is not CL_SUCCESS.</summary>
    public static void Check(int status, string call)
    {
        if (status != Cl.Success)
        {
            throw new OpenClException(call, status);
        }
    }

    /// <summary>
    /// Bad choices by the user (no platform, no such device, no fp64) are bad input: exit code 2 with one line, like
    /// any other bad input.
    /// </summary>
    public static InputException Unavailable(string detail) => new($"--backend opencl: {detail}");
}
