using System.Diagnostics;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Golden;

/// <summary>
/// Every instruction-set path reproduces the goldens. TensorPrimitives picks Vector512, Vector256 or Vector128 and a
/// scalar tail by what the machine accelerates; the runtime's DOTNET_Enable* switches turn paths off, so each run
/// below takes a narrower path than the machine's best (as ImageSharp re-runs its tests). The goldens were written
/// on one path; the f64 profile's tolerance is what lets another summation order agree. Each run also shows that its
/// switch took effect (`golden verify` prints the width it computed with): .NET 10 reads DOTNET_EnableAVX512, and the
/// .NET 8 name DOTNET_EnableAVX512F is silently ignored, which once left the Vector256 row testing Vector512 again.
/// </summary>
public sealed class SimdPathTests
{
    public static TheoryData<string, string, string> Paths => new()
    {
        { "DOTNET_EnableAVX512", "0", "Vector256" },    // at most Vector256 (a no-op on machines without AVX-512)
        { "DOTNET_EnableAVX2", "0", "Vector128" },      // at most Vector128
        { "DOTNET_EnableHWIntrinsic", "0", "scalar" },  // scalar only
    };

    [Theory]
    [MemberData(nameof(Paths))]
    public void Goldens_verify_with_narrower_simd_paths(string variable, string value, string atMost)
    {
        var start = AttnrefProcess.StartInfo("golden", "verify", "--dir", RepoPaths.Of("golden"));
        start.Environment[variable] = value;
        using var process = Process.Start(start)!;
        string stdout = process.StandardOutput.ReadToEnd(), stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{variable}={value}: exit {process.ExitCode}\n{stderr}\n{stdout[^Math.Min(2000, stdout.Length)..]}");
        string[] widths = ["scalar", "Vector128", "Vector256", "Vector512"];
        string used = stdout.Split('\n').Single(line => line.StartsWith("cpu simd: ", StringComparison.Ordinal))["cpu simd: ".Length..].Trim();
        Assert.True(Array.IndexOf(widths, used) <= Array.IndexOf(widths, atMost), $"{variable}={value} computed with {used}, wider than {atMost}");
    }
}
