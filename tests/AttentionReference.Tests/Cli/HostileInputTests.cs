using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

/// <summary>
/// The reproducers of issue #21 that concern files and the command line, fed to <c>attnref</c> as a user would: each
/// must exit 2 with exactly one line on stderr saying what is wrong (no stack trace, no blame on a file that is not at
/// fault) and write nothing: no output, no report, no folder, no temporary.
/// </summary>
public sealed class HostileInputTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _input;
    private readonly string _candidate;
    private readonly string _aFile;

    public HostileInputTests()
    {
        _input = _temp.File("sm.safetensors");
        File.Copy(RepoPaths.Of("examples", "softmax", "input.safetensors"), _input);
        _candidate = _temp.File("candidate.safetensors");
        File.Copy(RepoPaths.Of("examples", "softmax", "candidate_good.safetensors"), _candidate);
        _aFile = _temp.File("file");
        File.WriteAllText(_aFile, "a regular file");
    }

    public void Dispose() => _temp.Dispose();

    private string[] Before => [_input, _candidate, _aFile];

    /// <summary>Exit 2, one line naming what is wrong, no stack trace, and the folder as it was.</summary>
    private string Refused(CliRunner.Outcome outcome, params string[] fragments)
    {
        Assert.Equal(2, outcome.ExitCode);
        string[] lines = outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("attnref: ", lines[0], StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", lines[0], StringComparison.Ordinal);
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, lines[0], StringComparison.Ordinal);
        }
        Assert.Equal(Before.Order(StringComparer.Ordinal), Directory.GetFileSystemEntries(_temp.Path).Order(StringComparer.Ordinal));
        return lines[0];
    }

    private CliRunner.Outcome Check(params string[] more) =>
        CliRunner.Run(["check", "softmax", "--in", _input, "--candidate", _candidate, .. more]);

    private CliRunner.Outcome RunSoftmax(params string[] more) =>
        CliRunner.Run(["run", "softmax", "--in", _input, "--out", _temp.File("o.safetensors"), .. more]);

    // Cause 1: write errors outside the tensor writer.

    [Theory]
    [InlineData("file/r.json", "'{0}/file' is a file, not a folder")]
    [InlineData("missing/r.json", "the folder '{0}/missing' does not exist")]
    [InlineData(".", "is a directory; expected a file name")]
    public void A_report_that_cannot_be_written_is_one_line_and_writes_nothing(string report, string reason)
    {
        string path = report == "." ? _temp.Path : Path.Combine(_temp.Path, report);
        Refused(Check("--report", path), $"{path}: cannot write: ", string.Format(System.Globalization.CultureInfo.InvariantCulture, reason, _temp.Path));
    }

    [Fact]
    public void A_report_into_a_folder_that_admits_no_new_file_is_one_line()
    {
        if (!Directory.Exists("/proc/self"))
        {
            return; // no procfs on this system
        }
        Refused(Check("--report", "/proc/r.json"), "/proc/r.json: cannot write: ");
        Assert.False(File.Exists("/proc/r.json"));
    }

    [Fact]
    public void Golden_write_into_a_path_under_a_file_is_one_line() =>
        Refused(CliRunner.Run("golden", "write", "--dir", Path.Combine(_aFile, "g"), "--form", "softmax"), "is a file, not a folder");

    [Fact]
    public void Examples_write_into_a_path_under_a_file_is_one_line() =>
        Refused(CliRunner.Run("examples", "write", "--dir", Path.Combine(_aFile, "e")), "is a file, not a folder");

    [Fact]
    public void Golden_write_of_an_unknown_form_is_refused_before_any_folder_is_made()
    {
        string dir = _temp.File("newdir");
        Refused(CliRunner.Run("golden", "write", "--dir", dir, "--form", "nosuch"), "unknown form 'nosuch'");
        Assert.False(Directory.Exists(dir));
    }
}
