using System.Diagnostics;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.OpenCL;

public sealed class OpenClUnavailableTests
{
    [Fact]
    public void A_device_without_fp64_refuses_f64_with_one_line_naming_the_device()
    {
        var device = new OpenClDevice(0, 0, "Some Platform", "half-only GPU", "OpenCL 3.0", HasFp64: false, LocalMemoryBytes: 49152);
        var error = Assert.Throws<InputException>(() => device.Require(Precision.F64));
        Assert.Equal("--backend opencl: the device Some Platform: half-only GPU has no fp64 (cl_khr_fp64); use --precision f32 or another device", error.Message);
        device.Require(Precision.F32); // f32 needs nothing more
    }

    [Fact]
    public void A_missing_opencl_library_exits_2_with_one_line()
    {
        // The library is resolved once per process, so this runs attnref in a child process with the loader pointed at
        // a file that does not exist.
        var start = AttnrefProcess.StartInfo("run", "softmax", "--backend", "opencl",
            "--in", RepoPaths.Of("examples", "softmax", "input.safetensors"), "--out", Path.Combine(Path.GetTempPath(), "never-written.safetensors"));
        start.Environment["REF_OPENCL_LIBRARY"] = "/nonexistent/libOpenCL.so.1";
        using var process = Process.Start(start)!;
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(2, process.ExitCode);
        Assert.Equal("attnref: --backend opencl: the OpenCL library /nonexistent/libOpenCL.so.1 named by REF_OPENCL_LIBRARY could not be loaded", stderr.Trim());
    }
}
