using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary><c>attnref run/check/spec/forms</c> for rwkv6 and mlstm, from files, in-process.</summary>
public sealed class Rwkv6MlstmCliTests
{
    // The command line runs the same code on the same numbers (f64 files convert exactly): bit-identical results.
    private static void AssertSame(Tensor actual, Tensor expected, string name) =>
        Assert.True(actual.Data.SequenceEqual(expected.Data) && actual.Shape.SequenceEqual(expected.Shape), $"{name} differs");

    private static (Tensor Q, Tensor K, Tensor V, Tensor W, Tensor U, Tensor S0) RwkvInputs()
    {
        var c = new Rwkv6Case(2, 7, 2, 3, 4, DecayRegime.Mixed, true, 3, 11);
        var (q, k, v, w, u, s0) = c.Inputs();
        return (q, k, v, w, u, s0!);
    }

    private static (Tensor Q, Tensor K, Tensor V, Tensor I, Tensor F, Tensor C0, Tensor N0, Tensor M0) MlstmInputs()
    {
        var c = new MlstmCase(2, 7, 2, 3, 4, DecayRegime.Mixed, true, false, 0, 3, 12);
        var (q, k, v, i, f) = c.Inputs();
        var (c0, n0, m0) = c.State(2);
        return (q, k, v, i, f, c0!, n0!, m0!);
    }

    [Fact]
    public void Run_rwkv6_reads_r_as_q_and_writes_what_the_library_computes()
    {
        using var temp = new TempFolder();
        var (q, k, v, w, u, s0) = RwkvInputs();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        var file = new TensorFile().Add("r", q).Add("k", k).Add("v", v).Add("w", w).Add("u", u).Add("initial_state", s0);
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", "rwkv6", "--in", input, "--out", output, "--variant", "chunked", "--set", "chunk_size=3");

        Assert.Equal(0, outcome.ExitCode);
        var written = TensorFiles.Read(output);
        var expected = FormCatalog.Find("rwkv6").Call("chunked", new Dictionary<string, Tensor>
        {
            ["q"] = q, ["k"] = k, ["v"] = v, ["w"] = w, ["u"] = u, ["initial_state"] = s0,
        }, "chunk_size=3");
        AssertSame(written["o"], expected["o"], "o");
        AssertSame(written["final_state"], expected["final_state"], "final_state");
        Assert.Equal("chunked", written.Metadata["variant"]);
    }

    [Fact]
    public void Check_rwkv6_passes_the_reference_of_another_variant_and_fails_a_changed_element()
    {
        using var temp = new TempFolder();
        var (q, k, v, w, u, s0) = RwkvInputs();
        string input = temp.File("in.safetensors"), good = temp.File("good.safetensors"), bad = temp.File("bad.safetensors");
        TensorFiles.Write(input, new TensorFile().Add("q", q).Add("k", k).Add("v", v).Add("w", w).Add("u", u).Add("initial_state", s0));
        var parallel = FormCatalog.Find("rwkv6").Call("parallel", new Dictionary<string, Tensor>
        {
            ["q"] = q, ["k"] = k, ["v"] = v, ["w"] = w, ["u"] = u, ["initial_state"] = s0,
        });
        TensorFiles.Write(good, new TensorFile().Add("o", parallel["o"]).Add("final_state", parallel["final_state"]));
        var broken = parallel["o"].Clone();
        broken.Data[5] += 1e-3;
        TensorFiles.Write(bad, new TensorFile().Add("o", broken));

        // The default variant (recurrent) checks the parallel variant's numbers within the f64 profile.
        Assert.Equal(0, CliRunner.Run("check", "rwkv6", "--in", input, "--candidate", good).ExitCode);
        var failed = CliRunner.Run("check", "rwkv6", "--in", input, "--candidate", bad);
        Assert.Equal(1, failed.ExitCode);
        Assert.Contains("FAIL", failed.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_mlstm_reads_mlstm_kernels_state_names_and_parameters()
    {
        using var temp = new TempFolder();
        var (q, k, v, i, f, c0, n0, m0) = MlstmInputs();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        var file = new TensorFile().Add("q", q).Add("k", k).Add("v", v).Add("i", i).Add("f", f)
            .Add("c_initial", c0).Add("n_initial", n0).Add("m_initial", m0);
        file.Metadata["eps"] = "1e-6";
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", "mlstm", "--in", input, "--out", output, "--variant", "parallel");

        Assert.Equal(0, outcome.ExitCode);
        var written = TensorFiles.Read(output);
        var expected = FormCatalog.Find("mlstm").Call("parallel", MlstmCase.Named(q, k, v, i, f, c0, n0, m0), "eps=1e-6");
        foreach (string name in new[] { "o", "final_state", "final_normalizer", "final_max" })
        {
            AssertSame(written[name], expected[name], name);
        }
    }

    [Fact]
    public void Mlstm_in_the_bhtd_layout_transposes_the_gates_too()
    {
        using var temp = new TempFolder();
        var (q, k, v, i, f, _, _, _) = MlstmInputs();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        var file = new TensorFile();
        foreach (var (name, x) in new[] { ("q", q), ("k", k), ("v", v), ("i", i), ("f", f) })
        {
            file.Add(name, Layouts.SwapTimeAndHeads(x));
        }
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", "mlstm", "--in", input, "--out", output, "--layout", "bhtd", "--variant", "chunked");

        Assert.Equal(0, outcome.ExitCode);
        var expected = FormCatalog.Find("mlstm").Call("chunked", MlstmCase.Named(q, k, v, i, f), "chunk_size=16");
        AssertSame(TensorFiles.Read(output)["o"], Layouts.SwapTimeAndHeads(expected["o"]), "o");
    }

    [Fact]
    public void A_forget_gate_of_the_wrong_shape_exits_2_naming_f()
    {
        using var temp = new TempFolder();
        var (q, k, v, i, _, _, _, _) = MlstmInputs();
        string input = temp.File("in.safetensors");
        TensorFiles.Write(input, new TensorFile().Add("q", q).Add("k", k).Add("v", v).Add("i", i).Add("f", q));

        var outcome = CliRunner.Run("run", "mlstm", "--in", input, "--out", temp.File("out.safetensors"));

        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("'f'", outcome.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("out.safetensors")));
    }

    [Theory]
    [InlineData("rwkv6", "S_t = Diag(exp(w_t)) S_{t−1} + k_t v_tᵀ")]
    [InlineData("mlstm", "m_t  = max(log f_t + m_{t−1}, i_t)")]
    public void Spec_prints_the_equations_of_the_doc_comment(string form, string equation)
    {
        var outcome = CliRunner.Run("spec", form);
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains(equation, outcome.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Forms_lists_both_with_their_variants_and_aliases()
    {
        // The JSON listing, not the table: the table's wrapping depends on how many forms there are.
        var outcome = CliRunner.Run("forms", "--json");
        Assert.Equal(0, outcome.ExitCode);
        using var json = System.Text.Json.JsonDocument.Parse(outcome.Out);
        var forms = json.RootElement.EnumerateArray().ToDictionary(f => f.GetProperty("name").GetString()!);
        string[] Aliases(string form) => forms[form].GetProperty("inputs").EnumerateArray()
            .SelectMany(i => i.GetProperty("aliases").EnumerateArray().Select(a => a.GetString()!)).ToArray();
        Assert.Contains("r", Aliases("rwkv6"));
        Assert.Contains("c_initial", Aliases("mlstm"));
        Assert.Equal(["recurrent", "parallel", "chunked"], forms["mlstm"].GetProperty("variants").EnumerateArray().Select(v => v.GetString()));
    }
}
