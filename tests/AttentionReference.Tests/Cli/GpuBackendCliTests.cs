using AttentionReference.IO;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

/// <summary><c>--backend gpu</c> and <c>--device</c> at the command line (ILGPU's CPU accelerator here).</summary>
public sealed class GpuBackendCliTests
{
    private static string GlaInput(TempFolder temp)
    {
        var random = new Random(8);
        var file = new TensorFile()
            .Add("q", TestTensors.Normal(random, 1, 1, 5, 2, 3))
            .Add("k", TestTensors.Normal(random, 1, 1, 5, 2, 3))
            .Add("v", TestTensors.Normal(random, 1, 1, 5, 2, 2))
            .Add("gk", TestTensors.Normal(random, 0.1, 1, 5, 2, 3));
        string path = temp.File("in.safetensors");
        TensorFiles.Write(path, file);
        return path;
    }

    [Fact]
    public void Run_on_the_gpu_backend_records_the_backend_and_its_device_and_passes_check()
    {
        using var temp = new TempFolder();
        string input = GlaInput(temp), output = temp.File("out.safetensors");
        var run = CliRunner.Run("run", "gla", "--in", input, "--out", output, "--variant", "chunked", "--backend", "gpu", "--device", "cpu");
        Assert.True(run.ExitCode == 0, run.Error);
        var written = TensorFiles.Read(output);
        Assert.Equal("gpu", written.Metadata["backend"]);
        Assert.Contains("CPU accelerator", written.Metadata["device"], StringComparison.Ordinal);
        // The GPU's f64 output passes the CPU reference's f64 profile; the check's header names the reference's device.
        var check = CliRunner.Run("check", "gla", "--in", input, "--candidate", output);
        Assert.True(check.ExitCode == 0, check.Out + check.Error);
        Assert.Contains("cpu reference on CPU reference, double", check.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void A_device_that_matches_nothing_is_one_line_and_exit_2()
    {
        using var temp = new TempFolder();
        var outcome = CliRunner.Run("run", "gla", "--in", GlaInput(temp), "--out", temp.File("out.safetensors"), "--backend", "gpu", "--device", "no-such-device");
        Assert.Equal(2, outcome.ExitCode);
        Assert.Single(outcome.Error.Trim().Split('\n'));
        Assert.Contains("no-such-device", outcome.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("out.safetensors")));
    }
}
