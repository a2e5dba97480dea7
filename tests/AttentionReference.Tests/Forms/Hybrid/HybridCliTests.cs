using AttentionReference.Forms.Hybrid;
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
                inputs["log_G"] = PowerTests.LogGates(random, false, 1, 9, 2); // power-attention's name for g
                break;
            case "nats_l":
                inputs["g"] = PowerTests.LogGates(random, false, 1, 9, 2);
                inputs["beta"] = new Tensor([1, 9, 2], Normal(1, 1, 9, 2).Data.Select(x => 1 / (1 + Math.Exp(-x))).ToArray());
                inputs["route"] = new Tensor([1, 3, 2], [1, 0, 0, 1, 1, 0]);
                inputs["initial_state"] = Normal(1, 1, 2, 3, 2);
                break;
        }
        return inputs;
    }

    private static IReadOnlyDictionary<string, Tensor> Library(string form, Dictionary<string, Tensor> x)
    {
        switch (form)
        {
            case "power":
                var power = Power.Chunked(x["q"], x["k"], x["v"], 4, x["log_G"], new PowerOptions { Degree = 4 });
                return new Dictionary<string, Tensor> { ["o"] = power.O, ["final_state"] = power.FinalState };
            case "nats_l":
                var nats = NatsL.Chunked(x["q"], x["k"], x["v"], x["g"], x["beta"], x["route"], 4, new NatsLOptions { InitialState = x["initial_state"] });
                return new Dictionary<string, Tensor> { ["o_linear"] = nats.OLinear, ["o_softmax"] = nats.OSoftmax, ["final_state"] = nats.FinalState };
            default:
                var based = Based.Chunked(x["q"], x["k"], x["v"], 4, new BasedOptions { Window = 4 });
                return new Dictionary<string, Tensor> { ["o"] = based.O, ["final_state"] = based.FinalState };
        }
    }

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
        foreach (var (name, expected) in Library(form, inputs))
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
