using AttentionReference.Forms;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Common;

/// <summary>
/// What a reader must read to learn a form (issue #17): its own file from the top to the end of its definition method
/// (the contract's <see cref="FormContract.Definition"/> variant), not counting the doc comment, which is the spec.
/// </summary>
public sealed class ReadingBudgetTests
{
    /// <summary>The most lines of code a form's definition may take, its contract and dispatch included.</summary>
    public const int Budget = 150;

    /// <summary>The lines of code from the top of the form's file to the end of its definition method.</summary>
    public static int DefinitionLines(Form form)
    {
        ArgumentNullException.ThrowIfNull(form);
        string path = Directory.GetFiles(RepoPaths.Of("src/AttentionReference/Forms"), form.SourceFile, SearchOption.AllDirectories).Single();
        string[] lines = File.ReadAllLines(path);
        string method = char.ToUpperInvariant(form.Contract.Definition[0]) + form.Contract.Definition[1..];
        int start = Array.FindIndex(lines, l => l.TrimStart().StartsWith("public static", StringComparison.Ordinal)
            && l.Contains($" {method}(", StringComparison.Ordinal));
        Assert.True(start >= 0, $"{form.SourceFile} has no public static {method}(...) method: the definition of {form.Name}");
        string indent = lines[start][..(lines[start].Length - lines[start].TrimStart().Length)];
        int end = lines[start].TrimEnd().EndsWith(';') ? start : Array.FindIndex(lines, start + 1, l => l == indent + "}");
        return lines.Take(end + 1).Count(l => !l.TrimStart().StartsWith("///", StringComparison.Ordinal));
    }

    public static TheoryData<string> ContractForms() => [.. FormCatalog.All.OfType<Form>().Select(f => f.Name)];

    [Theory]
    [MemberData(nameof(ContractForms))]
    public void A_forms_definition_is_read_in_one_file_within_the_budget(string name)
    {
        int lines = DefinitionLines((Form)FormCatalog.Find(name));
        Assert.True(lines <= Budget, $"{name}: {lines} lines of code to its definition, over the budget of {Budget}");
    }

    [Fact]
    public void The_readmes_reading_table_states_every_forms_count()
    {
        // README.md, "Reading the code": rows of "| form | file | lines |" twice over; each count is what this test counts.
        string readme = File.ReadAllText(RepoPaths.Of("README.md"));
        string section = readme[readme.IndexOf("## Reading the code", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n## ", 3, StringComparison.Ordinal)];
        var stated = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string line in section.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal)))
        {
            string[] cells = line.Trim('|').Split('|').Select(c => c.Trim()).ToArray();
            for (int i = 0; i + 2 < cells.Length; i += 4)
            {
                if (int.TryParse(cells[i + 2], out int lines))
                {
                    stated[cells[i]] = lines;
                }
            }
        }
        foreach (Form form in FormCatalog.All.OfType<Form>())
        {
            Assert.True(stated.TryGetValue(form.Name, out int lines), $"README's reading table lacks {form.Name}");
            int counted = DefinitionLines(form);
            Assert.True(counted == lines, $"README's reading table says {lines} lines for {form.Name}; its file has {counted}");
        }
    }
}
