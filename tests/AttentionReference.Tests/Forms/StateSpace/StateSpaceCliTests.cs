using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.IO;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary><c>attnref run</c> and <c>attnref check</c> on files with mamba's and S4D's names, for every case of the family.</summary>
public sealed class StateSpaceCliTests
{
    public static TheoryData<string> Cases { get; } =
        new(GoldenCases.All.Where(c => c.Form is "s4d" or "h3" or "mamba" or "ssd").Select(c => c.Id));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Run_writes_what_the_library_computes_and_check_accepts_it(string id)
    {
        var golden = GoldenCases.All.Single(c => c.Id == id);
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        var inputs = golden.Inputs();
        var file = new TensorFile();
        foreach (var (name, tensor) in inputs)
        {
            file.Add(name, tensor);
        }
        TensorFiles.Write(input, file);
        string[] sets = golden.Parameters.SelectMany(p => new[] { "--set", $"{p.Key}={p.Value}" }).ToArray();

        var outcome = CliRunner.Run(["run", golden.Form, "--in", input, "--out", output, "--variant", golden.Variant, .. sets]);
        Assert.True(outcome.ExitCode == 0, outcome.Error);
        var written = TensorFiles.Read(output);
        var expected = FormCatalog.Find(golden.Form).Run(golden.Variant, inputs, new FormParameters(golden.Parameters));
        foreach (var (name, tensor) in expected)
        {
            Assert.Equal(tensor.Data, written[name].Data); // the CLI and the library run the same code on the same numbers
        }

        Assert.Equal(0, CliRunner.Run(["check", golden.Form, "--in", input, "--candidate", output, "--variant", golden.Variant, .. sets]).ExitCode);
        var bad = new TensorFile();
        var first = expected.First();
        var moved = first.Value.Clone();
        moved.Data[^1] += 1e-3 * (1 + Math.Abs(moved.Data[^1]));
        bad.Add(first.Key, moved);
        string badPath = temp.File("bad.safetensors");
        TensorFiles.Write(badPath, bad);
        Assert.Equal(1, CliRunner.Run(["check", golden.Form, "--in", input, "--candidate", badPath, "--variant", golden.Variant, .. sets]).ExitCode);
    }

    [Theory]
    [InlineData("s4d", "s4d.py")]
    [InlineData("h3", "h3.py")]
    [InlineData("mamba", "selective_scan_ref")]
    [InlineData("ssd", "ssd_minimal.py")]
    public void Spec_prints_the_form_doc_comment_with_its_sources(string form, string source)
    {
        var outcome = CliRunner.Run("spec", form);
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains(source, outcome.Out, StringComparison.Ordinal);
    }
}
