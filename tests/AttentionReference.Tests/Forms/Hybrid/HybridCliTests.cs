using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary><c>attnref run</c>, <c>check</c> and <c>spec</c> for power, nats_l and based, from files.</summary>
public sealed class HybridCliTests
{
    // The CLI and the library run the same code on the same numbers.
    private const double Identical = 0;

    private static Dictionary<string, Tensor> Inputs(string form)
    {
        var random = new Random(5);
        Tensor Normal(double scale, params int[] shape) => TestTensors.Normal(random, scale, shape);
        var inputs = new Dictionary<string, Tensor> { ["q"] = Normal(1, 1, 9, 2, 3), ["k"] = Normal(1 / Math.Sqrt(3), 1, 9, 2, 3), ["v"] = Normal(1, 1, 9, 2, 2) };
        switch (form)
        {
            case "power":
                inputs["log_G"] = HybridTensors.LogGates(random, false, 1, 9, 2); // power-attention's name for g
                break;
            case "nats_l":
                inputs["g"] = HybridTensors.LogGates(random, false, 1, 9, 2);
                inputs["beta"] = new Tensor([1, 9, 2], Normal(1, 1, 9, 2).Data.Select(x => 1 / (1 + Math.Exp(-x))).ToArray());
                inputs["route"] = new Tensor([1, 3, 2], [1, 0, 0, 1, 1, 0]);
                inputs["initial_state"] = Normal(1, 1, 2, 3, 2);
                break;
        }
        return inputs;
    }

    /// <summary>The library's chunked variant (chunk size 4), called through the form's contract as the CLI calls it.</summary>
    private static IReadOnlyDictionary<string, Tensor> Library(string form, Dictionary<string, Tensor> x, string setting) =>
        FormCatalog.Find(form).Call("chunked", x, "chunk_size=4", setting);

    [Theory]
    [InlineData("power", "deg=4")]
    [InlineData("nats_l", "scale=0.5773502691896258")]
    [InlineData("based", "window=4")]
    public void Run_writes_what_the_library_computes_and_check_accepts_it_and_refuses_a_moved_element(string form, string setting)
    {
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        var inputs = Inputs(form);
        var file = new TensorFile();
        foreach (var (name, tensor) in inputs)
        {
            file.Add(name, tensor);
        }
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", form, "--in", input, "--out", output, "--variant", "chunked", "--set", "chunk_size=4", "--set", setting);
        Assert.True(outcome.ExitCode == 0, outcome.Error);
        var written = TensorFiles.Read(output);
        foreach (var (name, expected) in Library(form, inputs, setting))
        {
            TestTensors.AssertClose(written[name], expected, Identical, name);
        }

        // The reference's own output passes check (computed by the default variant); one element moved by 1e-6 fails.
        var ok = CliRunner.Run("check", form, "--in", input, "--candidate", output, "--set", "chunk_size=4", "--set", setting);
        Assert.True(ok.ExitCode == 0, ok.Out + ok.Error);
        var bad = new TensorFile();
        string moved = form == "nats_l" ? "o_softmax" : "o";
        Tensor o = written[moved].Clone();
        o.Data[5] += 1e-6;
        bad.Add(moved, o);
        string badPath = temp.File("bad.safetensors");
        TensorFiles.Write(badPath, bad);
        Assert.Equal(1, CliRunner.Run("check", form, "--in", input, "--candidate", badPath, "--set", "chunk_size=4", "--set", setting).ExitCode);
    }

    [Theory]
    [InlineData("power", "deg=1000", "parameter 'deg'")]
    [InlineData("based", "linear_scale=NaN", "parameter 'linear_scale'")]
    [InlineData("based", "linear_scale=1e400", "parameter 'linear_scale'")]
    [InlineData("based", "scale=-inf", "parameter 'scale'")]
    public void A_hostile_parameter_exits_2_with_one_line_naming_it_and_writes_nothing(string form, string setting, string named)
    {
        // Issue #21, causes 9 and 10: power's deg = 1000 on a 2×8×2×3 input took 27 s and 2.6 GB; based accepted a
        // non-finite linear_scale and wrote all-NaN outputs.
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        var random = new Random(9);
        var file = new TensorFile();
        foreach (string name in new[] { "q", "k", "v" })
        {
            file.Add(name, TestTensors.Normal(random, 1, 2, 8, 2, 3));
        }
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", form, "--in", input, "--out", output, "--set", setting);
        Assert.Equal(2, outcome.ExitCode);
        string line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(named, line, StringComparison.Ordinal);
        Assert.Equal([input], Directory.GetFiles(temp.Path)); // no output, no temporary file
    }

    [Theory]
    [InlineData("power", "C(K+p−1, p)")]
    [InlineData("nats_l", "r_c = 1:  S ← exp(δ · Σ_{t∈c} g_t) S̄")]
    [InlineData("based", "o_t = o_lin_t + o_win_t")]
    public void Spec_prints_the_forms_doc_comment(string form, string phrase)
    {
        var outcome = CliRunner.Run("spec", form);
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains(phrase, outcome.Out, StringComparison.Ordinal);
    }
}
