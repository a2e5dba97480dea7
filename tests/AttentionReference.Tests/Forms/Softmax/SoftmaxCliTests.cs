using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>`attnref run/check softmax` with the variants and their tensors, from files, in-process.</summary>
public sealed class SoftmaxCliTests
{
    private static string Write(TempFolder temp, string name, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var file = new TensorFile();
        foreach (var (key, tensor) in tensors)
        {
            file.Add(key, tensor);
        }
        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            file.Metadata[key] = value;
        }
        string path = temp.File(name);
        TensorFiles.Write(path, file);
        return path;
    }

    [Fact]
    public void Run_tiled_with_a_mask_and_parameters_from_metadata_and_the_command_line_equals_the_library()
    {
        using var temp = new TempFolder();
        var random = new Random(17);
        var (q, k, v) = (TestTensors.Normal(random, 1, 2, 5, 4, 3), TestTensors.Normal(random, 1, 2, 7, 2, 3), TestTensors.Normal(random, 1, 2, 7, 2, 2));
        var mask = new Tensor([2, 1, 5, 7], Enumerable.Range(0, 70).Select(n => n % 4 == 0 ? double.NegativeInfinity : 0.1 * (n % 5)).ToArray());
        string input = Write(temp, "in.safetensors", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["mask"] = mask },
            new Dictionary<string, string> { ["causal"] = "true", ["block_q"] = "2" });
        string output = temp.File("out.safetensors");

        var outcome = CliRunner.Run("run", "softmax", "--in", input, "--out", output, "--variant", "tiled", "--set", "block_k=3", "--set", "softcap=4");

        Assert.True(outcome.ExitCode == 0, outcome.Error);
        var written = TensorFiles.Read(output);
        // The CLI runs the library's code on the same doubles (the f64 file round trip is exact): identical bits, which
        // also shows that block_k and softcap came from the command line (block_q does not change a row's arithmetic).
        var expected = new SoftmaxInputs(q, k, v) { Causal = true, Softcap = 4, Mask = mask }.Run("tiled", "block_q=2", "block_k=3");
        Assert.Equal(expected.O.Data, written.Tensors["o"].Data);
        Assert.Equal(expected.Lse.Data, written.Tensors["lse"].Data);
        Assert.Equal("tiled", written.Metadata["variant"]);
        Assert.Equal("3", written.Metadata["block_k"]);
        Assert.Equal("2", written.Metadata["block_q"]); // from the input's metadata
    }

    [Fact]
    public void In_the_bhtd_layout_q_k_v_are_transposed_and_the_mask_is_read_as_sdpa_gives_it()
    {
        // SDPA's layout: q [B,H,T,D] and attn_mask [B,H,Tq,Tk] in both layouts (the mask has no [B,T,...] form).
        using var temp = new TempFolder();
        var random = new Random(37);
        var (q, k, v) = (TestTensors.Normal(random, 1, 1, 4, 2, 3), TestTensors.Normal(random, 1, 1, 5, 2, 3), TestTensors.Normal(random, 1, 1, 5, 2, 2));
        var mask = new Tensor([1, 2, 4, 5], Enumerable.Range(0, 40).Select(n => n % 3 == 0 ? 0.0 : 1.0).ToArray());
        string input = Write(temp, "in.safetensors", new Dictionary<string, Tensor>
        {
            ["q"] = Layouts.SwapTimeAndHeads(q), ["k"] = Layouts.SwapTimeAndHeads(k), ["v"] = Layouts.SwapTimeAndHeads(v), ["mask"] = mask,
        });
        string output = temp.File("out.safetensors");

        var outcome = CliRunner.Run("run", "softmax", "--in", input, "--out", output, "--layout", "bhtd", "--set", "mask_type=bool");

        Assert.True(outcome.ExitCode == 0, outcome.Error);
        var expected = new SoftmaxInputs(q, k, v) { Mask = mask, MaskType = "bool" }.Run("naive");
        Assert.Equal(Layouts.SwapTimeAndHeads(expected.O).Data, TensorFiles.Read(output).Tensors["o"].Data);
        Assert.Equal(Layouts.SwapTimeAndHeads(expected.Lse).Data, TensorFiles.Read(output).Tensors["lse"].Data);
    }

    [Fact]
    public void Run_decode_reads_a_paged_cache_with_its_integer_tables()
    {
        using var temp = new TempFolder();
        var random = new Random(23);
        var q = TestTensors.Normal(random, 1, 2, 1, 2, 4);
        var kCache = TestTensors.Normal(random, 1, 5, 2, 1, 4);
        var vCache = TestTensors.Normal(random, 1, 5, 2, 1, 3);
        var table = new Tensor([2, 2], [3, 0, 4, 1], DType.I32);
        var lengths = new Tensor([2], [3, 2], DType.I64);
        string input = Write(temp, "in.safetensors", new Dictionary<string, Tensor>
        {
            ["q"] = q, ["k_cache"] = kCache, ["v_cache"] = vCache, ["block_table"] = table, ["cache_seqlens"] = lengths,
        });
        string output = temp.File("out.safetensors");

        var outcome = CliRunner.Run("run", "softmax", "--in", input, "--out", output, "--variant", "decode", "--set", "causal=true", "--set", "num_splits=2");

        Assert.True(outcome.ExitCode == 0, outcome.Error);
        var expected = SoftmaxOutputs.Of(SoftmaxInputs.Form.Call("decode", new Dictionary<string, Tensor>
        {
            ["q"] = q, ["k_cache"] = kCache, ["v_cache"] = vCache, ["block_table"] = table, ["cache_seqlens"] = lengths,
        }, "causal=true", "num_splits=2"));
        Assert.Equal(expected.O.Data, TensorFiles.Read(output).Tensors["o"].Data);
    }

    [Fact]
    public void Check_accepts_a_split_candidate_against_the_naive_reference()
    {
        using var temp = new TempFolder();
        var random = new Random(29);
        var (q, k, v) = (TestTensors.Normal(random, 1, 1, 4, 2, 3), TestTensors.Normal(random, 1, 1, 6, 1, 3), TestTensors.Normal(random, 1, 1, 6, 1, 3));
        string input = Write(temp, "in.safetensors", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v },
            new Dictionary<string, string> { ["window_left"] = "2" });
        var split = new SoftmaxInputs(q, k, v) { WindowLeft = 2 }.Run("split", "num_splits=5");
        string candidate = Write(temp, "cand.safetensors", new Dictionary<string, Tensor> { ["o"] = split.O, ["lse"] = split.Lse });

        var outcome = CliRunner.Run("check", "softmax", "--in", input, "--candidate", candidate);

        Assert.True(outcome.ExitCode == 0, outcome.Out + outcome.Error);
    }

    [Theory]
    [InlineData("cu_seqlens", "cu_seqlens_q")]
    [InlineData("bad_mask", "mask")]
    [InlineData("cache_with_naive", "k_cache")]
    public void A_bad_combination_exits_2_with_one_line_naming_the_tensor(string kind, string tensor)
    {
        using var temp = new TempFolder();
        var random = new Random(31);
        var tensors = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, 2, 3, 1, 2),
            ["k"] = TestTensors.Normal(random, 1, 2, 3, 1, 2),
            ["v"] = TestTensors.Normal(random, 1, 2, 3, 1, 2),
        };
        switch (kind)
        {
            case "cu_seqlens": // varlen needs B = 1
                tensors["cu_seqlens_q"] = new Tensor([2], [0, 3], DType.I32);
                tensors["cu_seqlens_k"] = new Tensor([2], [0, 3], DType.I32);
                break;
            case "bad_mask":
                tensors["mask"] = Tensor.Zeros(3, 2);
                break;
            default:
                tensors["k_cache"] = tensors["k"];
                break;
        }
        string input = Write(temp, "in.safetensors", tensors);

        var outcome = CliRunner.Run("run", "softmax", "--in", input, "--out", temp.File("out.safetensors"), "--variant", "split");

        Assert.Equal(2, outcome.ExitCode);
        string line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"'{tensor}'", line, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("out.safetensors")));
    }
}
