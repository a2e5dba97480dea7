using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>
/// <c>attnref run</c> and <c>attnref check</c> on files that carry fla's tensor names and shapes (g for gla's and
/// hgrn2's key gate, cu_seqlens, initial_state), for every form of the family.
/// </summary>
public sealed class GatedLinearCliTests
{
    // The CLI and the library run the same code on the same numbers.
    private const double Identical = 0;

    private static Dictionary<string, Tensor> FlaInputs(string form)
    {
        var random = new Random(3);
        Tensor Normal(params int[] shape) => TestTensors.Normal(random, 1, shape);
        Tensor Gate(params int[] shape) => new(shape, Normal(shape).Data.Select(x => -Math.Log(1 + Math.Exp(-x))).ToArray());
        var inputs = new Dictionary<string, Tensor> { ["q"] = Normal(1, 9, 2, 3), ["v"] = Normal(1, 9, 2, 4) };
        if (form != "hgrn2")
        {
            inputs["k"] = Normal(1, 9, 2, 3);
        }
        switch (form)
        {
            case "simple_gla":
                inputs["g"] = Gate(1, 9, 2);
                break;
            case "gla":
            case "hgrn2":
                inputs["g"] = Gate(1, 9, 2, 3); // fla's chunk_gla name for the key gate
                break;
        }
        inputs["initial_state"] = Normal(2, 2, 3, 4); // N = 2 sequences; F = K = 3 for linear's identity map
        inputs["cu_seqlens"] = new Tensor([3], [0, 4, 9], DType.I32);
        return inputs;
    }

    /// <summary>The library's outputs on the same tensors under their canonical names (gk for fla's g of gla and hgrn2).</summary>
    private static IReadOnlyDictionary<string, Tensor> Library(string form, Dictionary<string, Tensor> x)
    {
        var canonical = new Dictionary<string, Tensor>(x);
        if (form is "gla" or "hgrn2")
        {
            canonical["gk"] = x["g"];
            canonical.Remove("g");
        }
        return FormCatalog.Find(form).Call("chunked", canonical, "chunk_size=4");
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("retention")]
    [InlineData("simple_gla")]
    [InlineData("gla")]
    [InlineData("hgrn2")]
    public void Run_reads_fla_names_and_writes_what_the_library_computes(string form)
    {
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        var inputs = FlaInputs(form);
        var file = new TensorFile();
        foreach (var (name, tensor) in inputs)
        {
            file.Add(name, tensor);
        }
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", form, "--in", input, "--out", output, "--variant", "chunked", "--set", "chunk_size=4");
        Assert.True(outcome.ExitCode == 0, outcome.Error);
        var written = TensorFiles.Read(output);
        var expected = Library(form, inputs);
        TestTensors.AssertClose(written["o"], expected["o"], Identical, "o");
        TestTensors.AssertClose(written["final_state"], expected["final_state"], Identical, "final_state");

        // The reference's own output passes check; one element moved by 1e-6 fails the f64 profile.
        Assert.Equal(0, CliRunner.Run("check", form, "--in", input, "--candidate", output, "--set", "chunk_size=4").ExitCode);
        var bad = new TensorFile();
        Tensor o = written["o"].Clone();
        o.Data[5] += 1e-6;
        bad.Add("o", o);
        string badPath = temp.File("bad.safetensors");
        TensorFiles.Write(badPath, bad);
        Assert.Equal(1, CliRunner.Run("check", form, "--in", input, "--candidate", badPath).ExitCode);
    }

    [Fact]
    public void The_bhtd_layout_transposes_time_axis_tensors_and_leaves_states_alone()
    {
        // [B,H,T,D] in gives [B,H,T,D] out; initial_state [N,H,K,V] and cu_seqlens have no time axis and stay as given.
        using var temp = new TempFolder();
        string bthdIn = temp.File("bthd.safetensors"), bhtdIn = temp.File("bhtd.safetensors");
        string bthdOut = temp.File("bthd_out.safetensors"), bhtdOut = temp.File("bhtd_out.safetensors");
        var inputs = FlaInputs("gla");
        var (plain, swapped) = (new TensorFile(), new TensorFile());
        foreach (var (name, tensor) in inputs)
        {
            plain.Add(name, tensor);
            swapped.Add(name, tensor.Rank == 4 && name != "initial_state" ? Layouts.SwapTimeAndHeads(tensor) : tensor);
        }
        TensorFiles.Write(bthdIn, plain);
        TensorFiles.Write(bhtdIn, swapped);
        Assert.Equal(0, CliRunner.Run("run", "gla", "--in", bthdIn, "--out", bthdOut).ExitCode);
        Assert.Equal(0, CliRunner.Run("run", "gla", "--in", bhtdIn, "--out", bhtdOut, "--layout", "bhtd").ExitCode);
        var (a, b) = (TensorFiles.Read(bthdOut), TensorFiles.Read(bhtdOut));
        Assert.Equal(Layouts.SwapTimeAndHeads(a["o"]).Data, b["o"].Data);
        Assert.Equal(a["final_state"].Data, b["final_state"].Data);
    }

    [Fact]
    public void A_chunk_size_below_one_and_a_decay_outside_zero_one_are_bad_input()
    {
        var q = Tensor.Zeros(1, 3, 2, 2);
        var chunk = Assert.Throws<InputException>(() =>
            FormCatalog.Find("gla").Call("chunked", new Dictionary<string, Tensor> { ["q"] = q, ["k"] = q, ["v"] = q, ["gk"] = q }, "chunk_size=0"));
        Assert.Contains("chunk_size", chunk.Message, StringComparison.Ordinal);
        var gamma = Assert.Throws<InputException>(() => FormCatalog.Find("retention").Call("recurrent",
            new Dictionary<string, Tensor> { ["q"] = q, ["k"] = q, ["v"] = q, ["gamma"] = new Tensor([2], [0.5, 1.5]) }));
        Assert.Contains("gamma", gamma.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_misshapen_gate_is_bad_input_naming_the_tensor()
    {
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors");
        var file = new TensorFile();
        file.Add("q", Tensor.Zeros(1, 4, 2, 3)).Add("k", Tensor.Zeros(1, 4, 2, 3)).Add("v", Tensor.Zeros(1, 4, 2, 2)).Add("g", Tensor.Zeros(1, 4, 2, 5));
        TensorFiles.Write(input, file);
        var outcome = CliRunner.Run("run", "gla", "--in", input, "--out", temp.File("out.safetensors"));
        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("gk", outcome.Error, StringComparison.Ordinal);
        Assert.Contains("[B,T,H,K]", outcome.Error, StringComparison.Ordinal);
    }
}
