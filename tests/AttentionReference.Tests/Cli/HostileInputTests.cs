using System.IO.Compression;
using AttentionReference.IO;
using AttentionReference.Tests.IO;
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

    // Cause 2: empty paths.

    [Theory]
    [InlineData("run", "--in")]
    [InlineData("run", "--out")]
    [InlineData("check", "--candidate")]
    [InlineData("check", "--report")]
    public void An_empty_path_is_a_usage_error_naming_the_option(string command, string option)
    {
        string[] args = command == "run"
            ? ["run", "softmax", "--in", _input, "--out", _temp.File("o.safetensors")]
            : ["check", "softmax", "--in", _input, "--candidate", _candidate];
        int at = Array.IndexOf(args, option);
        args = at >= 0 ? [.. args[..(at + 1)], "", .. args[(at + 2)..]] : [.. args, option, ""];
        Refused(CliRunner.Run(args), $"{option} expects a path, found an empty one");
    }

    // Cause 3: out-of-range option values.

    [Theory]
    [InlineData("-1")]
    [InlineData("10001")]
    public void Worst_out_of_range_is_a_usage_error(string worst) =>
        Refused(Check("--worst", worst), $"--worst must be an integer from 0 to 10000, found {worst}");

    // Cause 8: what is read.

    [Fact]
    public void Dev_zero_as_input_is_refused_unread()
    {
        if (!File.Exists("/dev/zero"))
        {
            return;
        }
        Refused(CliRunner.Run("run", "softmax", "--in", "/dev/zero", "--out", _temp.File("o.safetensors")),
            "/dev/zero: file reports 0 bytes", "not a regular file");
    }

    [Fact]
    public void An_npz_with_a_deflated_bomb_no_form_reads_runs_without_inflating_it()
    {
        string bomb = _temp.File("bomb.npz");
        ReadLimitsTests.WriteBomb(bomb, extraName: "extra");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var outcome = CliRunner.Run("run", "softmax", "--in", bomb, "--out", _temp.File("o.safetensors"));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, outcome.ExitCode);
        Assert.True(allocated < 64 << 20, $"the run allocated {allocated} bytes");
    }

    [Fact]
    public void Tensors_a_check_does_not_read_are_still_listed_as_ignored()
    {
        var candidate = TensorFiles.Read(_candidate);
        candidate.Add("scratch", AttentionReference.Tensors.Tensor.Zeros(1000));
        TensorFiles.Write(_candidate, candidate);
        var outcome = Check();
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains("note: 'scratch' is not an output of softmax; ignored", outcome.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void An_npz_member_declaring_more_than_the_largest_member_is_refused()
    {
        byte[] zip = ZipBytes.Build(("q.npy", Npy.Serialize(AttentionReference.Tensors.Tensor.Zeros(1, 2, 1, 4)), CompressionLevel.Optimal));
        ZipBytes.SetUncompressedSize(zip, 0, 0xF000_0000);
        string path = _temp.File("big.npz");
        File.WriteAllBytes(path, zip);
        var outcome = CliRunner.Run("run", "softmax", "--in", path, "--out", _temp.File("o.safetensors"));
        File.Delete(path);
        Refused(outcome, $"{path}: tensor 'q': member declares 4026531840 bytes uncompressed; the largest member read is 2000000000 bytes");
    }

    // Cause 11: bookkeeping keys in --set.

    [Theory]
    [InlineData("variant=nope", "'variant' is not a parameter of softmax: choose the variant with --variant")]
    [InlineData("layout=sideways", "'layout' is not a parameter of softmax: choose the layout with --layout")]
    [InlineData("format=pt", "'format' is not a parameter of softmax")]
    public void A_bookkeeping_key_in_set_is_refused_not_silently_ignored(string setting, string message)
    {
        string line = Refused(RunSoftmax("--set", setting), message);
        Assert.DoesNotContain(_input, line, StringComparison.Ordinal);
    }

    // Cause 12: CRC-32 and encryption, through the command line.

    [Fact]
    public void An_npz_member_with_a_wrong_crc32_is_refused()
    {
        byte[] zip = ZipBytes.Build(("q.npy", Npy.Serialize(AttentionReference.Tensors.Tensor.Zeros(1, 2, 1, 4)), CompressionLevel.Optimal));
        ZipBytes.SetCrc(zip, 0, ZipBytes.Crc(zip, 0) ^ 1);
        string path = _temp.File("crc.npz");
        File.WriteAllBytes(path, zip);
        var outcome = CliRunner.Run("run", "softmax", "--in", path, "--out", _temp.File("o.safetensors"));
        File.Delete(path);
        Refused(outcome, $"{path}: tensor 'q': member's CRC-32 is", "the archive is corrupt");
    }

    // Cause 14: messages that name the right culprit.

    [Fact]
    public void A_directory_as_input_or_candidate_is_named_a_directory()
    {
        Refused(CliRunner.Run("run", "softmax", "--in", _temp.Path, "--out", _temp.File("o.safetensors")), $"{_temp.Path}: is a directory; expected a tensor file");
        Refused(CliRunner.Run("check", "softmax", "--in", _input, "--candidate", _temp.Path), $"{_temp.Path}: is a directory; expected a tensor file");
    }

    [Theory]
    [InlineData("--variant", "nope", "--variant: unknown variant 'nope' of softmax; known variants: naive")]
    [InlineData("--set", "casual=true", "unknown parameter 'casual' of softmax")]
    [InlineData("--set", "scale=abc", "parameter 'scale': expected")]
    public void An_error_in_a_command_line_option_does_not_blame_the_input_file(string option, string value, string message)
    {
        string line = Refused(RunSoftmax(option, value), message);
        Assert.DoesNotContain(_input, line, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bad_variant_in_the_input_metadata_is_blamed_on_the_input_file()
    {
        var file = TensorFiles.Read(_input);
        file.Metadata["variant"] = "nope";
        TensorFiles.Write(_input, file);
        Refused(RunSoftmax(), $"{_input}: unknown variant 'nope' of softmax");
    }

    [Fact]
    public void A_golden_manifest_without_format_is_one_clear_line()
    {
        string dir = _temp.File("golden");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "manifest.json"), """{"cases": []}""");
        var outcome = CliRunner.Run("golden", "verify", "--dir", dir);
        Directory.Delete(dir, recursive: true);
        Refused(outcome, $"{Path.Combine(dir, "manifest.json")}: manifest lacks the string \"format\" (expected \"attnref-golden/1\")");
    }

    [Fact]
    public void A_golden_manifest_case_without_a_field_is_one_clear_line()
    {
        string dir = _temp.File("golden");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "manifest.json"), """{"format": "attnref-golden/1", "cases": [{"form": "softmax", "case": "x"}]}""");
        var outcome = CliRunner.Run("golden", "verify", "--dir", dir);
        Directory.Delete(dir, recursive: true);
        Refused(outcome, "manifest case 0 lacks the string \"variant\"");
    }

    // Decided: --out = --in is refused; a repeated --set key is refused.

    [Fact]
    public void Out_naming_the_input_is_refused_and_the_input_is_untouched()
    {
        byte[] original = File.ReadAllBytes(_input);
        Refused(CliRunner.Run("run", "softmax", "--in", _input, "--out", _input), $"{_input}: --out names the --in file");
        string sameByAnotherPath = Path.Combine(_temp.Path, ".", "sm.safetensors");
        Refused(CliRunner.Run("run", "softmax", "--in", _input, "--out", sameByAnotherPath), "--out names the --in file");
        Assert.Equal(original, File.ReadAllBytes(_input));
    }

    [Fact]
    public void Out_naming_a_link_to_the_input_is_refused()
    {
        string link = _temp.File("link.safetensors");
        File.CreateSymbolicLink(link, _input);
        var outcome = CliRunner.Run("run", "softmax", "--in", _input, "--out", link);
        File.Delete(link);
        Refused(outcome, "--out names the --in file");
    }

    [Fact]
    public void A_report_naming_an_input_is_refused()
    {
        Refused(Check("--report", _input), "--report names the --in file");
        Refused(Check("--report", _candidate), "--report names the --candidate file");
    }

    [Fact]
    public void A_repeated_set_key_is_refused()
    {
        string line = Refused(RunSoftmax("--set", "causal=true", "--set", "causal=false"), "--set gives 'causal' twice ('true', then 'false'); give each parameter once");
        Assert.DoesNotContain(_input, line, StringComparison.Ordinal);
    }
}
