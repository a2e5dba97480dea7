using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

/// <summary><c>attnref run</c> and <c>check</c> with cotangents: the gradients written and judged (issue #19).</summary>
public sealed class GradientCliTests
{
    private static readonly string[] s_written = ["o", "final_state", "dq", "dk", "dv", "dg"];

    private static (TensorFile Inputs, TensorFile Cotangents) SimpleGla()
    {
        var random = new Random(11);
        var inputs = new TensorFile()
            .Add("q", TestTensors.Normal(random, 1, 1, 6, 2, 3))
            .Add("k", TestTensors.Normal(random, 1, 1, 6, 2, 3))
            .Add("v", TestTensors.Normal(random, 1, 1, 6, 2, 2))
            .Add("g", new Tensor([1, 6, 2], TestTensors.Normal(random, 1, 1, 6, 2).Data.Select(x => -Math.Log(1 + Math.Exp(-x))).ToArray()));
        var cotangents = new TensorFile().Add("do", TestTensors.Normal(random, 1, 1, 6, 2, 2));
        return (inputs, cotangents);
    }

    [Fact]
    public void Run_with_a_grad_file_writes_the_gradients_and_names_the_cotangents_taken_as_zero()
    {
        using var temp = new TempFolder();
        var (inputs, cotangents) = SimpleGla();
        TensorFiles.Write(temp.File("in.safetensors"), inputs);
        TensorFiles.Write(temp.File("grad.safetensors"), cotangents);
        var outcome = CliRunner.Run("run", "simple_gla", "--in", temp.File("in.safetensors"), "--grad", temp.File("grad.safetensors"),
            "--out", temp.File("out.safetensors"), "--variant", "recurrent");
        Assert.True(outcome.ExitCode == 0, outcome.Error);
        Assert.Contains("taken as zero: dfinal_state", outcome.Out, StringComparison.Ordinal);
        var written = TensorFiles.Read(temp.File("out.safetensors"));
        Assert.All(s_written, name => Assert.True(written.Contains(name), name));
        Assert.False(written.Contains("dinitial_state")); // no initial state was given: nothing to differentiate
    }

    [Fact]
    public void Check_judges_the_gradients_a_candidate_holds_and_fails_one_wrong_element()
    {
        using var temp = new TempFolder();
        var (inputs, cotangents) = SimpleGla();
        foreach (string name in cotangents.Names)
        {
            inputs.Add(name, cotangents[name]); // cotangents in the input file itself
        }
        TensorFiles.Write(temp.File("in.safetensors"), inputs);
        Assert.Equal(0, CliRunner.Run("run", "simple_gla", "--in", temp.File("in.safetensors"), "--out", temp.File("ref.safetensors"), "--variant", "recurrent").ExitCode);
        var reference = TensorFiles.Read(temp.File("ref.safetensors"));
        var candidate = new TensorFile().Add("dk", reference["dk"]).Add("dg", reference["dg"]);
        TensorFiles.Write(temp.File("good.safetensors"), candidate);
        var good = CliRunner.Run("check", "simple_gla", "--in", temp.File("in.safetensors"), "--candidate", temp.File("good.safetensors"), "--variant", "recurrent");
        Assert.True(good.ExitCode == 0, good.Out + good.Error);
        Assert.Contains("dg", good.Out, StringComparison.Ordinal);
        Tensor bad = reference["dk"].Clone();
        bad.Data[7] += 1e-6;
        TensorFiles.Write(temp.File("bad.safetensors"), new TensorFile().Add("dk", bad));
        var failed = CliRunner.Run("check", "simple_gla", "--in", temp.File("in.safetensors"), "--candidate", temp.File("bad.safetensors"), "--variant", "recurrent");
        Assert.Equal(1, failed.ExitCode);
        Assert.Contains("dk", failed.Out, StringComparison.Ordinal);
    }
}
