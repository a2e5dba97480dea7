using System.Text.Json;
using AttentionReference.Forms;

namespace AttentionReference.Tests.Cli;

public sealed class FormsAndSpecTests
{
    [Fact]
    public void Forms_json_lists_every_form_with_its_tensors_and_parameters()
    {
        var outcome = CliRunner.Run("forms", "--json");
        Assert.Equal(0, outcome.ExitCode);
        using var json = JsonDocument.Parse(outcome.Out);
        var listed = json.RootElement.EnumerateArray().ToDictionary(f => f.GetProperty("name").GetString()!);
        Assert.Equal(FormCatalog.All.Select(f => f.Name), listed.Keys);
        foreach (IForm form in FormCatalog.All)
        {
            var entry = listed[form.Name];
            Assert.Equal(form.Inputs.Select(i => i.Name), entry.GetProperty("inputs").EnumerateArray().Select(i => i.GetProperty("name").GetString()));
            Assert.Equal(form.Outputs.Select(i => i.ShapeText), entry.GetProperty("outputs").EnumerateArray().Select(i => i.GetProperty("shape").GetString()));
            Assert.Equal(form.Parameters.Select(p => p.Name), entry.GetProperty("parameters").EnumerateArray().Select(p => p.GetProperty("name").GetString()));
        }
    }

    [Fact]
    public void Spec_prints_the_doc_comment_of_each_forms_source_file()
    {
        foreach (IForm form in FormCatalog.All)
        {
            var outcome = CliRunner.Run("spec", form.Name);
            Assert.Equal(0, outcome.ExitCode);
            string source = File.ReadAllText(Directory.GetFiles(Support.RepoPaths.Of("src", "AttentionReference", "Forms"), form.SourceFile, SearchOption.AllDirectories).Single());
            // Every line of the spec is in the source's doc comment: the spec cannot drift from the code.
            // (Inline tags such as <c>causal</c> are printed as their text and <see cref="X"/> as X, so compare with
            // the tags taken out.)
            string[] docLines = source.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("///", StringComparison.Ordinal))
                .Select(l => System.Text.RegularExpressions.Regex.Replace(l, "<see cref=\"(?:[A-Z]:)?([^\"]+)\"\\s*/>", "$1"))
                .Select(l => System.Text.RegularExpressions.Regex.Replace(l, "</?[a-zA-Z]+[^>]*>", "")).ToArray();
            foreach (string line in outcome.Out.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0))
            {
                Assert.Contains(docLines, d => System.Net.WebUtility.HtmlDecode(d).Contains(line, StringComparison.Ordinal));
            }
            Assert.DoesNotContain("<summary>", outcome.Out, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void An_unknown_form_exits_2_and_lists_the_known_ones()
    {
        var outcome = CliRunner.Run("spec", "softmaks");
        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("unknown form 'softmaks'; known forms: softmax", outcome.Error, StringComparison.Ordinal);
    }
}
