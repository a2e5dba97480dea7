using System.Diagnostics;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Golden;

/// <summary>
/// Every instruction-set path reproduces the goldens. TensorPrimitives picks Vector512, Vector256 or Vector128 and a
/// scalar tail by what the machine accelerates; the runtime's DOTNET_Enable* switches turn paths off, so each run
/// below takes a narrower path than the machine's best (as ImageSharp re-runs its tests). The goldens were written
/// on one path; the f64 profile's tolerance is what lets another summation order agree.
/// </summary>
public sealed class SimdPathTests
{
    public static TheoryData<string, string> Paths => new()
    {
        { "DOTNET_EnableAVX512F", "0" },    // at most Vector256 (a no-op on machines without AVX-512)
        { "DOTNET_EnableAVX2", "0" },       // at most Vector128
        { "DOTNET_EnableHWIntrinsic", "0" }, // scalar only
    };

    [Theory]
    [MemberData(nameof(Paths))]
    public void Goldens_verify_with_narrower_simd_paths(string variable, string value)
    {
        var start = AttnrefProcess.StartInfo("golden", "verify", "--dir", RepoPaths.Of("golden"));
        start.Environment[variable] = value;
        using var process = Process.Start(start)!;
        string stdout = process.StandardOutput.ReadToEnd(), stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{variable}={value}: exit {process.ExitCode}\n{stderr}\n{stdout[^Math.Min(2000, stdout.Length)..]}");
    }
}
