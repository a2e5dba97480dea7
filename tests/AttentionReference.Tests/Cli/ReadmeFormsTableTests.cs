using AttentionReference.Forms;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

/// <summary>
/// README.md's "Forms" table states what the catalogue holds: each form's variants (on the CPU and the ILGPU GPU
/// version alike), and its gradients with their aliases (the names a user puts in a candidate file), or "not yet"
/// for a form without a backward pass.
/// </summary>
public sealed class ReadmeFormsTableTests
{
    /// <summary>The table's rows by form: the cells after the form's name.</summary>
    private static Dictionary<string, string[]> Rows()
    {
        string readme = File.ReadAllText(RepoPaths.Of("README.md"));
        string section = readme[readme.IndexOf("\n## Forms", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n## ", 3, StringComparison.Ordinal)];
        return section.Split('\n')
            .Where(l => l.StartsWith("| `", StringComparison.Ordinal))
            .Select(l => l.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray())
            .ToDictionary(cells => cells[0].Trim('`'), cells => cells, StringComparer.Ordinal);
    }

    /// <summary>"dq, dk, dgk (dg), dinitial_state (dh0)": each gradient, its aliases in parentheses.</summary>
    public static string GradientCell(Form form)
    {
        ArgumentNullException.ThrowIfNull(form);
        return form.HasGradients
            ? string.Join(", ", form.Contract.Gradients.Select(g => g.Aliases is not { Count: > 0 } aliases ? g.Name : $"{g.Name} ({string.Join(", ", aliases)})"))
            : "not yet";
    }

    public static TheoryData<string> Forms() => [.. FormCatalog.All.OfType<Form>().Select(f => f.Name)];

    [Theory]
    [MemberData(nameof(Forms))]
    public void The_forms_table_states_the_forms_variants_and_gradients(string name)
    {
        var form = (Form)FormCatalog.Find(name);
        Assert.True(Rows().TryGetValue(name, out string[]? cells), $"README's forms table lacks {name}");
        Assert.Equal(string.Join(", ", form.Variants), cells[2]);
        Assert.Equal(string.Join(", ", form.Variants), cells[4]); // GPU (ILGPU): every variant has kernels, held by the GPU laws
        Assert.Equal(GradientCell(form), cells[^1]);
    }
}
