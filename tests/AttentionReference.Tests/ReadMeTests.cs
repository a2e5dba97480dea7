using System.Text.RegularExpressions;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests;

/// <summary>The README never lies: its commands are the ones CI runs, and its example gives the verdicts it promises.</summary>
public sealed partial class ReadMeTests
{
    private static readonly string ReadMe = File.ReadAllText(RepoPaths.Of("README.md"));

    [Fact]
    public void The_example_command_gives_exit_0_for_the_right_candidate_and_1_for_the_corrupted_one()
    {
        // The README's loop: for c in good bad; do dotnet run --project src/AttentionReference.Cli -- check ...; done
        Match loop = ExampleLoop().Match(ReadMe);
        Assert.True(loop.Success, "the README's example command is missing or changed shape");
        var expected = new Dictionary<string, int> { ["good"] = 0, ["bad"] = 1 };
        Assert.Equal(expected.Keys, loop.Groups["values"].Value.Split(' '));
        foreach (var (value, code) in expected)
        {
            string[] args = loop.Groups["args"].Value.Replace("$c", value, StringComparison.Ordinal)
                .Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(a => a.StartsWith("examples/", StringComparison.Ordinal) ? RepoPaths.Of(a.Split('/')) : a)
                .ToArray();
            Assert.Equal(code, CliRunner.Run(args).ExitCode);
        }
    }

    [Fact]
    public void The_test_command_is_the_one_ci_runs()
    {
        Match test = TestCommand().Match(ReadMe);
        Assert.True(test.Success, "the README's test command is missing");
        Assert.Contains(test.Value.Trim(), File.ReadAllText(RepoPaths.Of(".ci", "run")), StringComparison.Ordinal);
    }

    [GeneratedRegex(@"for c in (?<values>[a-z ]+); do dotnet run --project src/AttentionReference\.Cli -- (?<args>[^;]+);")]
    private static partial Regex ExampleLoop();

    [GeneratedRegex(@"(?m)^dotnet test [^\n]+$")]
    private static partial Regex TestCommand();
}

/// <summary>The README's forms table lists every form of the catalogue with exactly its variants.</summary>
public sealed class ReadMeFormsTableTests
{
    [Fact]
    public void Every_form_has_a_row_with_its_family_and_variants()
    {
        string[] lines = File.ReadAllLines(RepoPaths.Of("README.md"));
        foreach (var form in AttentionReference.Forms.FormCatalog.All)
        {
            string? row = lines.FirstOrDefault(l => l.StartsWith($"| `{form.Name}` |", StringComparison.Ordinal));
            Assert.True(row is not null, $"README has no row for {form.Name}");
            string[] cells = row.Split('|', StringSplitOptions.TrimEntries);
            Assert.Equal(form.Family, cells[2]);
            Assert.Equal(string.Join(", ", form.Variants), cells[3]);
        }
    }
}
