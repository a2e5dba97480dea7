using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Cli;

/// <summary>
/// The reproducers of issue #21 that concern values rather than files: zero heads (cause 5), chunk sizes far past the
/// sequence (cause 6), zero-element tensors with a time axis of 2³¹−1 (cause 7) and non-finite real parameters
/// (cause 10). Empty extents are valid calls with empty outputs; a size past the sequence is the whole sequence; a
/// non-finite real is refused by the one parameter rule, for every form.
/// </summary>
public sealed class HostileValueTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private string Write(string name, TensorFile file)
    {
        string path = _temp.File(name);
        TensorFiles.Write(path, file);
        return path;
    }

    /// <summary>Exit 2, one line holding every fragment, and nothing written beside the input.</summary>
    private void Refused(CliRunner.Outcome outcome, string input, params string[] fragments)
    {
        Assert.Equal(2, outcome.ExitCode);
        string line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.All(fragments, fragment => Assert.Contains(fragment, line, StringComparison.Ordinal));
        Assert.Equal([input], Directory.GetFiles(_temp.Path));
    }

    private static TensorFile Qkv(Random random, params int[] shape) => new TensorFile()
        .Add("q", TestTensors.Normal(random, 1, shape))
        .Add("k", TestTensors.Normal(random, 1, shape))
        .Add("v", TestTensors.Normal(random, 1, shape));

    // Cause 5: q, k, v of shape [1,4,0,4] divided by the head count.

    [Theory]
    [InlineData("softmax")]
    [InlineData("based")]
    [InlineData("linear")]
    [InlineData("power")]
    public void Zero_heads_give_empty_outputs(string form)
    {
        string input = Write("in.safetensors", Qkv(new Random(5), 1, 4, 0, 4)), output = _temp.File("out.safetensors");
        var outcome = CliRunner.Run("run", form, "--in", input, "--out", output);
        Assert.Equal(0, outcome.ExitCode);
        Tensor o = TensorFiles.Read(output)["o"];
        Assert.Equal([1, 4, 0, 4], o.Shape);
        Assert.Empty(o.Data);
    }

    // Cause 6: chunk_size=30000 on eight steps took 51 s and 14 GB; 2³¹−1 overflowed. Every form's every chunk, block
    // and split size at int.MaxValue is GoldenEveryVariantTests' job; this is the reproducer through the command line.

    [Theory]
    [InlineData("30000")]
    [InlineData("2147483647")]
    public void A_chunk_past_the_sequence_is_the_whole_sequence(string chunkSize)
    {
        var random = new Random(6);
        TensorFile file = Qkv(random, 1, 8, 1, 4).Add("beta", new Tensor([1, 8, 1], Enumerable.Repeat(0.5, 8).ToArray()));
        string input = Write("in.safetensors", file);
        string huge = _temp.File("huge.safetensors"), whole = _temp.File("whole.safetensors");
        Assert.Equal(0, CliRunner.Run("run", "delta_rule", "--variant", "chunked", "--in", input, "--out", huge, "--set", $"chunk_size={chunkSize}").ExitCode);
        Assert.Equal(0, CliRunner.Run("run", "delta_rule", "--variant", "chunked", "--in", input, "--out", whole, "--set", "chunk_size=8").ExitCode);
        Assert.Equal(TensorFiles.Read(whole)["o"].Data, TensorFiles.Read(huge)["o"].Data); // the same single chunk, bit for bit
    }

    // Cause 7: forgetting with zero-element tensors of shape [0, 2³¹−1, ...] ran out of memory.

    [Theory]
    [InlineData("naive")]
    [InlineData("tiled")]
    public void Zero_element_tensors_with_a_huge_time_axis_give_empty_outputs(string variant)
    {
        const int T = int.MaxValue;
        var file = new TensorFile()
            .Add("q", Tensor.Zeros(0, T, 1, 4)).Add("k", Tensor.Zeros(0, T, 1, 4)).Add("v", Tensor.Zeros(0, T, 1, 4))
            .Add("g", Tensor.Zeros(0, T, 1));
        string input = Write("in.safetensors", file), output = _temp.File("out.safetensors");
        Assert.Equal(0, CliRunner.Run("run", "forgetting", "--variant", variant, "--in", input, "--out", output).ExitCode);
        Assert.Equal([0, T, 1, 4], TensorFiles.Read(output)["o"].Shape);
    }

    // Cause 9's kin: taylor2's feature dimension 1 + K + K² from a shape alone. A 320 KB file with K = 20 000 asked
    // for 19 GB before the bound; past 2^22 it is refused at binding, before any state is made.

    [Theory]
    [InlineData("linear", "feature_map=taylor2")]
    [InlineData("based", "chunk_size=64")]
    public void A_feature_dimension_past_the_bound_is_refused(string form, string setting)
    {
        const int K = 2048; // 1 + K + K² = 4 196 353 > 2^22
        var file = new TensorFile().Add("q", Tensor.Zeros(1, 1, 1, K)).Add("k", Tensor.Zeros(1, 1, 1, K)).Add("v", Tensor.Zeros(1, 1, 1, 1));
        string input = Write("in.safetensors", file);
        var outcome = CliRunner.Run("run", form, "--in", input, "--out", _temp.File("out.safetensors"), "--set", setting);
        Refused(outcome, input, "tensor 'k'", "largest feature dimension 4194304");
    }

    // Cause 14's last part: with T = 2³¹−1 a chunk count was computed in int and printed negative.

    [Fact]
    public void A_wrong_chunk_count_at_the_largest_time_axis_is_stated_without_overflow()
    {
        const int T = int.MaxValue;
        var file = new TensorFile()
            .Add("q", Tensor.Zeros(0, T, 1, 4)).Add("k", Tensor.Zeros(0, T, 1, 4)).Add("v", Tensor.Zeros(0, T, 1, 4))
            .Add("g", Tensor.Zeros(0, T, 1)).Add("beta", Tensor.Zeros(0, T, 1)).Add("route", Tensor.Zeros(0, 1, 1));
        string input = Write("in.safetensors", file);
        var outcome = CliRunner.Run("run", "nats_l", "--in", input, "--out", _temp.File("out.safetensors"), "--set", "chunk_size=64");
        Refused(outcome, input, "⌈2147483647/64⌉ = 33554432 chunks, found 1"); // ⌈(2³¹−1)/64⌉ = 2²⁵
    }

    // Cause 10: a non-finite scale was accepted by thirteen forms and wrote all-NaN outputs.

    public static TheoryData<string, string> RealParameters()
    {
        var data = new TheoryData<string, string>();
        foreach (Form form in FormCatalog.All.OfType<Form>())
        {
            foreach (ParameterSpec spec in form.Parameters.Where(p => p is Parameter<double> or Parameter<double?>))
            {
                data.Add(form.Name, spec.Name);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(RealParameters))]
    public void A_non_finite_real_parameter_is_refused_by_every_form(string form, string parameter)
    {
        // A valid call of the form: the first of its golden cases (its outputs in the file are ignored by run).
        string golden = Directory.GetFiles(RepoPaths.Of("golden", form), "*.safetensors").Order(StringComparer.Ordinal).First();
        string input = _temp.File("in.safetensors");
        File.Copy(golden, input);
        foreach (string value in new[] { "NaN", "1e400", "-inf" })
        {
            var outcome = CliRunner.Run("run", form, "--in", input, "--out", _temp.File("out.safetensors"), "--set", $"{parameter}={value}");
            Refused(outcome, input, $"parameter '{parameter}'");
        }
    }
}
