using AttentionReference.Cli.Commands;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

public sealed class CheckCommandTests
{
    private static readonly string Input = RepoPaths.Of("examples", "softmax", "input.safetensors");

    [Fact]
    public void The_right_candidate_passes_with_exit_code_0()
    {
        var outcome = CliRunner.Run("check", "softmax", "--in", Input, "--candidate", RepoPaths.Of("examples", "softmax", "candidate_good.safetensors"));
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains("PASS", outcome.Out, StringComparison.Ordinal);
        Assert.Equal("", outcome.Error);
    }

    [Fact]
    public void The_corrupted_candidate_fails_with_exit_code_1_and_names_the_element_and_its_value()
    {
        var outcome = CliRunner.Run("check", "softmax", "--in", Input, "--candidate", RepoPaths.Of("examples", "softmax", "candidate_bad.safetensors"));
        Assert.Equal(1, outcome.ExitCode);
        int[] at = ExamplesCommand.CorruptedIndex;
        string location = $"o[b={at[0]},t={at[1]},h={at[2]},d={at[3]}]";
        string verdict = outcome.Out.Split('\n').Single(line => line.StartsWith("FAIL", StringComparison.Ordinal));
        Assert.Contains($"worst {location} = ", verdict, StringComparison.Ordinal);
        Assert.Contains("1 element(s) over tolerance", verdict, StringComparison.Ordinal);
    }

    [Fact]
    public void The_json_report_is_written_and_names_the_worst_element()
    {
        using var temp = new TempFolder();
        string report = temp.File("report.json");
        CliRunner.Run("check", "softmax", "--in", Input, "--candidate", RepoPaths.Of("examples", "softmax", "candidate_bad.safetensors"), "--report", report);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(report));
        Assert.False(json.RootElement.GetProperty("passed").GetBoolean());
        var o = json.RootElement.GetProperty("tensors").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "o");
        Assert.Equal(ExamplesCommand.CorruptedIndex, o.GetProperty("worst")[0].GetProperty("index").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public void The_bhtd_layout_reports_indices_in_the_users_axis_order()
    {
        // Converting both files to [B,H,T,D] must move the corrupted element to (b, h, t, d) and say so.
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors"), bad = temp.File("bad.safetensors");
        Transpose(Input, input);
        Transpose(RepoPaths.Of("examples", "softmax", "candidate_bad.safetensors"), bad);
        var outcome = CliRunner.Run("check", "softmax", "--in", input, "--candidate", bad, "--layout", "bhtd");
        Assert.Equal(1, outcome.ExitCode);
        int[] at = ExamplesCommand.CorruptedIndex;
        Assert.Contains($"worst o[b={at[0]},h={at[2]},t={at[1]},d={at[3]}]", outcome.Out, StringComparison.Ordinal);
    }

    private static void Transpose(string from, string to)
    {
        var file = AttentionReference.IO.TensorFiles.Read(from);
        var swapped = new AttentionReference.IO.TensorFile();
        foreach (var (name, tensor) in file.Tensors)
        {
            swapped.Add(name, AttentionReference.Tensors.Layouts.SwapTimeAndHeads(tensor));
        }
        foreach (var (key, value) in file.Metadata)
        {
            swapped.Metadata[key] = value;
        }
        AttentionReference.IO.TensorFiles.Write(to, swapped);
    }
}
