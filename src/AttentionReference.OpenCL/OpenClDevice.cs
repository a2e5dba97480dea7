using System.Text;
using AttentionReference.OpenCL.Native;

namespace AttentionReference.OpenCL;

/// <summary>One OpenCL device and what the backend needs to know of it.</summary>
public sealed record OpenClDevice(nint Platform, nint Device, string PlatformName, string Name, string Version, bool HasFp64, long LocalMemoryBytes, bool IsGpu = false)
{
    /// <summary>"Portable Computing Language: cpu-haswell-…" — what --device and REF_OPENCL_DEVICE match against.</summary>
    public string Description => $"{PlatformName}: {Name}";

    /// <summary>Environment variable that picks a device by substring when --device is not given.</summary>
    public const string DeviceVariable = "REF_OPENCL_DEVICE";

    /// <summary>Checks that the device can compute in <paramref name="precision"/>; f64 needs cl_khr_fp64.</summary>
    public void Require(Precision precision)
    {
        if (precision == Precision.F64 && !HasFp64)
        {
            throw ClError.Unavailable($"the device {Description} has no fp64 (cl_khr_fp64); use --precision f32 or another device");
        }
    }

    /// <summary>Every device of every platform the ICD loader lists.</summary>
    public static unsafe IReadOnlyList<OpenClDevice> All()
    {
        uint platformCount;
        int status;
        try
        {
            status = Cl.GetPlatformIDs(0, null, &platformCount);
        }
        catch (DllNotFoundException)
        {
            string? path = Environment.GetEnvironmentVariable(ClLibrary.PathVariable);
            throw ClError.Unavailable(string.IsNullOrEmpty(path)
                ? "libOpenCL.so.1 was not found (install ocl-icd-libopencl1 and an OpenCL driver such as pocl-opencl-icd, or name the library in REF_OPENCL_LIBRARY)"
                : $"the OpenCL library {path} named by {ClLibrary.PathVariable} could not be loaded");
        }
        if (status == -1001 || platformCount == 0)
        {
            throw ClError.Unavailable("no OpenCL platform is installed (install pocl-opencl-icd, or register the NVIDIA ICD libnvidia-opencl.so.1)");
        }
        ClError.Check(status, "clGetPlatformIDs");
        var platforms = new nint[platformCount];
        fixed (nint* p = platforms)
        {
            ClError.Check(Cl.GetPlatformIDs(platformCount, p, null), "clGetPlatformIDs");
        }
        var devices = new List<OpenClDevice>();
        foreach (nint platform in platforms)
        {
            uint deviceCount;
            if (Cl.GetDeviceIDs(platform, Cl.DeviceTypeAll, 0, null, &deviceCount) != Cl.Success || deviceCount == 0)
            {
                continue; // a platform with no usable device is skipped, not fatal
            }
            var ids = new nint[deviceCount];
            fixed (nint* d = ids)
            {
                ClError.Check(Cl.GetDeviceIDs(platform, Cl.DeviceTypeAll, deviceCount, d, null), "clGetDeviceIDs");
            }
            string platformName = PlatformString(platform, Cl.PlatformName);
            foreach (nint id in ids)
            {
                // CL_DEVICE_DOUBLE_FP_CONFIG is 0 (or the query fails) exactly when the device lacks cl_khr_fp64.
                ulong fp64 = 0;
                bool hasFp64 = Cl.GetDeviceInfo(id, Cl.DeviceDoubleFpConfig, sizeof(ulong), &fp64, null) == Cl.Success && fp64 != 0;
                ulong localMemory = 0;
                ClError.Check(Cl.GetDeviceInfo(id, Cl.DeviceLocalMemSize, sizeof(ulong), &localMemory, null), "clGetDeviceInfo");
                ulong type = 0;
                ClError.Check(Cl.GetDeviceInfo(id, Cl.DeviceType, sizeof(ulong), &type, null), "clGetDeviceInfo");
                devices.Add(new OpenClDevice(platform, id, platformName, DeviceString(id, Cl.DeviceName),
                    DeviceString(id, Cl.DeviceVersion), hasFp64, (long)localMemory, (type & Cl.DeviceTypeGpu) != 0));
            }
        }
        return devices;
    }

    /// <summary>
    /// The device whose description contains <paramref name="substring"/> (case-insensitive), else the one named by
    /// REF_OPENCL_DEVICE, else the first GPU, else the first device (a GPU machine may also have PoCL's CPU device,
    /// listed first). No match is bad input naming the devices there are.
    /// </summary>
    public static OpenClDevice Select(string? substring)
    {
        IReadOnlyList<OpenClDevice> devices = All();
        string? wanted = substring ?? Environment.GetEnvironmentVariable(DeviceVariable);
        if (string.IsNullOrWhiteSpace(wanted))
        {
            return devices.FirstOrDefault(d => d.IsGpu) ?? (devices.Count > 0 ? devices[0] : throw ClError.Unavailable("no OpenCL device found"));
        }
        return devices.FirstOrDefault(d => d.Description.Contains(wanted, StringComparison.OrdinalIgnoreCase))
            ?? throw ClError.Unavailable($"no OpenCL device matches '{wanted}'; devices: {string.Join("; ", devices.Select(d => d.Description))}");
    }

    private static unsafe string PlatformString(nint platform, uint name)
    {
        nuint size;
        ClError.Check(Cl.GetPlatformInfo(platform, name, 0, null, &size), "clGetPlatformInfo");
        var bytes = new byte[(int)size];
        fixed (byte* b = bytes)
        {
            ClError.Check(Cl.GetPlatformInfo(platform, name, size, b, null), "clGetPlatformInfo");
        }
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }

    private static unsafe string DeviceString(nint device, uint name)
    {
        nuint size;
        ClError.Check(Cl.GetDeviceInfo(device, name, 0, null, &size), "clGetDeviceInfo");
        var bytes = new byte[(int)size];
        fixed (byte* b = bytes)
        {
            ClError.Check(Cl.GetDeviceInfo(device, name, size, b, null), "clGetDeviceInfo");
        }
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }
}
