using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

public sealed class BoolMaskCliTests
{
    [Fact]
    public void A_bool_mask_file_gives_the_same_outputs_as_the_equivalent_additive_mask()
    {
        // A PyTorch-style bool mask (True = keep) and the additive mask with 0 / −inf must agree bit for bit.
        using var temp = new TempFolder();
        var random = new Random(5);
        var keep = Enumerable.Range(0, 6 * 7).Select(_ => random.Next(3) > 0 ? 1.0 : 0.0).ToArray();
        var inputs = new TensorFile()
            .Add("q", TestTensors.Normal(random, 1, 1, 6, 2, 4))
            .Add("k", TestTensors.Normal(random, 1, 1, 7, 2, 4))
            .Add("v", TestTensors.Normal(random, 1, 1, 7, 2, 3));
        TensorFiles.Write(temp.File("bool.safetensors"), Copy(inputs).Add("mask", new Tensor([6, 7], keep, DType.Bool)));
        TensorFiles.Write(temp.File("additive.safetensors"),
            Copy(inputs).Add("mask", new Tensor([6, 7], keep.Select(x => x == 1 ? 0 : double.NegativeInfinity).ToArray())));
        Assert.Equal(0, CliRunner.Run("run", "softmax", "--in", temp.File("bool.safetensors"), "--out", temp.File("a.safetensors")).ExitCode);
        Assert.Equal(0, CliRunner.Run("run", "softmax", "--in", temp.File("additive.safetensors"), "--out", temp.File("b.safetensors")).ExitCode);
        var (a, b) = (TensorFiles.Read(temp.File("a.safetensors")), TensorFiles.Read(temp.File("b.safetensors")));
        Assert.Equal(b["o"].Data, a["o"].Data);
        Assert.Equal(b["lse"].Data, a["lse"].Data);
    }

    [Fact]
    public void A_bool_tensor_where_floats_are_expected_is_bad_input()
    {
        using var temp = new TempFolder();
        var file = new TensorFile()
            .Add("q", new Tensor([1, 1, 1, 2], [1, 0], DType.Bool))
            .Add("k", Tensor.Zeros(1, 1, 1, 2))
            .Add("v", Tensor.Zeros(1, 1, 1, 2));
        TensorFiles.Write(temp.File("in.safetensors"), file);
        var outcome = CliRunner.Run("run", "softmax", "--in", temp.File("in.safetensors"), "--out", temp.File("out.safetensors"));
        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("tensor 'q': expected a float tensor, found bool", outcome.Error, StringComparison.Ordinal);
    }

    private static TensorFile Copy(TensorFile file)
    {
        var copy = new TensorFile();
        foreach (var (name, tensor) in file.Tensors)
        {
            copy.Add(name, tensor);
        }
        return copy;
    }

    [Theory]
    [InlineData(2)]
    [InlineData(-1)]
    public void An_integer_mask_holding_more_than_0_and_1_is_bad_input(int value)
    {
        // The contract says 0 (drop) or 1 (keep); any other integer is refused, never read as a keep or a drop.
        using var temp = new TempFolder();
        var random = new Random(3);
        var file = new TensorFile()
            .Add("q", TestTensors.Normal(random, 1, 1, 2, 1, 2))
            .Add("k", TestTensors.Normal(random, 1, 1, 2, 1, 2))
            .Add("v", TestTensors.Normal(random, 1, 1, 2, 1, 2))
            .Add("mask", new Tensor([2, 2], [1, 0, value, 1], DType.I32));
        TensorFiles.Write(temp.File("in.safetensors"), file);
        var outcome = CliRunner.Run("run", "softmax", "--in", temp.File("in.safetensors"), "--out", temp.File("out.safetensors"));
        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("tensor 'mask'", outcome.Error, StringComparison.Ordinal);
        Assert.Contains("0 (drop) or 1 (keep)", outcome.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("out.safetensors")));
    }
}
