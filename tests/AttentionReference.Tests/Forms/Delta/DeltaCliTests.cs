using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary><c>attnref run</c> and <c>check</c> for every delta-family form and variant, fed with fla's tensor names.</summary>
public sealed class DeltaCliTests
{
    private static readonly DeltaCase Case = new(B: 1, T: 7, H: 2, Group: 1, K: 4, V: 3, Chunk: 3, BetaRegime.Usual, GateFloor: 2,
        PerValueBeta: false, L2Norm: true, WithInitialState: true, Seed: 11);

    public static TheoryData<string, string> FormsAndVariants => new()
    {
        { "delta_rule", "recurrent" }, { "delta_rule", "chunked" }, { "delta_rule", "parallel" },
        { "gated_delta_rule", "recurrent" }, { "gated_delta_rule", "chunked" },
        { "kda", "recurrent" }, { "kda", "chunked" },
        { "rwkv7", "recurrent" }, { "rwkv7", "chunked" },
    };

    /// <summary>The input file as fla's callers name the tensors: kda's gate as g, rwkv7's query and decay as r and w.</summary>
    private static TensorFile FlaInput(string form, Tensor cuSeqlens)
    {
        var all = Case.All();
        var file = new TensorFile();
        string[] names = form switch
        {
            "delta_rule" => ["q", "k", "v", "beta"],
            "gated_delta_rule" => ["q", "k", "v", "g", "beta"],
            "kda" => ["q", "k", "v", "gk", "beta"],
            _ => ["q", "k", "v", "a", "b", "w"],
        };
        foreach (string name in names)
        {
            string flaName = (form, name) switch { ("kda", "gk") => "g", ("rwkv7", "q") => "r", _ => name };
            file.Add(flaName, all[name]);
        }
        file.Add("initial_state", TestTensors.Normal(new Random(3), 1, cuSeqlens.Length - 1, Case.HV, Case.K, Case.V));
        file.Add("cu_seqlens", cuSeqlens);
        return file;
    }

    /// <summary>The form called in the library with the canonical names, the same parameters as the command line.</summary>
    private static IReadOnlyDictionary<string, Tensor> Library(string form, string variant, TensorFile input, string[] parameters)
    {
        var inputs = input.Names.ToDictionary(name => (form, name) switch
        {
            ("kda", "g") => "gk",
            ("rwkv7", "r") => "q",
            ("rwkv7", "w") => "gk",
            _ => name,
        }, name => input[name]);
        return FormCatalog.Find(form).Call(variant, inputs, parameters);
    }

    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void Run_with_fla_names_and_cu_seqlens_writes_the_librarys_outputs_and_check_accepts_them(string form, string variant)
    {
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        TensorFile file = FlaInput(form, new Tensor([3], [0, 2, 7], DType.I64));
        TensorFiles.Write(input, file);
        string[] parameters = form == "rwkv7" ? ["chunk_size=3", "scale=1"] : ["chunk_size=3", "use_qk_l2norm_in_kernel=true"];
        string[] settings = parameters.SelectMany(p => new[] { "--set", p }).ToArray();

        var run = CliRunner.Run(["run", form, "--in", input, "--out", output, "--variant", variant, .. settings]);
        Assert.True(run.ExitCode == 0, run.Error);
        TensorFile written = TensorFiles.Read(output);
        var expected = Library(form, variant, file, parameters);
        Assert.Equal(expected["o"].Data, written["o"].Data);
        Assert.Equal(expected["final_state"].Data, written["final_state"].Data);
        Assert.Equal(variant, written.Metadata["variant"]);

        var check = CliRunner.Run(["check", form, "--in", input, "--candidate", output, "--variant", variant, .. settings]);
        Assert.True(check.ExitCode == 0, check.Out + check.Error);
    }

    [Theory]
    [MemberData(nameof(FormsAndVariants))]
    public void The_runner_given_cotangents_with_fla_names_returns_the_librarys_gradients_under_the_contracts_names(string form, string variant)
    {
        TensorFile file = FlaInput(form, new Tensor([3], [0, 2, 7], DType.I64));
        var random = new Random(5);
        file.Add("do", TestTensors.Normal(random, 1, 1, Case.T, Case.HV, Case.V));
        file.Add("dht", TestTensors.Normal(random, 1, 2, Case.HV, Case.K, Case.V)); // fla's name of dfinal_state
        string[] parameters = form == "rwkv7" ? ["chunk_size=3", "scale=1"] : ["chunk_size=3", "use_qk_l2norm_in_kernel=true"];
        var values = parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);

        RunResult result = FormRunner.Run(FormCatalog.Find(form), file.Tensors, new Dictionary<string, string>(),
            new RunOptions { Variant = variant, Overrides = values });
        var bound = (Form)FormCatalog.Find(form);
        var expected = bound.Backward(variant, bound.Contract.Bind(file.Tensors, new FormParameters(values)));
        string[] names = form switch
        {
            "delta_rule" => ["dq", "dk", "dv", "dbeta", "dinitial_state"],
            "gated_delta_rule" => ["dq", "dk", "dv", "dg", "dbeta", "dinitial_state"],
            "kda" => ["dq", "dk", "dv", "dgk", "dbeta", "dinitial_state"],
            _ => ["dq", "dk", "dv", "da", "db", "dgk", "dinitial_state"],
        };
        Assert.Equal(names.Order(), expected.Keys.Order());
        foreach (string name in names)
        {
            Assert.Equal(expected[name].Data, result.Outputs[name].Data);
        }
    }

    [Fact]
    public void Check_fails_a_candidate_with_one_wrong_state_element()
    {
        using var temp = new TempFolder();
        string input = temp.File("in.safetensors"), output = temp.File("out.safetensors");
        TensorFiles.Write(input, FlaInput("kda", new Tensor([2], [0, 7], DType.I32)));
        Assert.Equal(0, CliRunner.Run("run", "kda", "--in", input, "--out", output, "--variant", "chunked").ExitCode);
        TensorFile candidate = TensorFiles.Read(output);
        candidate["final_state"].Data[5] += 1e-6;
        TensorFiles.Write(output, candidate);
        var check = CliRunner.Run("check", "kda", "--in", input, "--candidate", output);
        Assert.Equal(1, check.ExitCode);
        Assert.Contains("final_state", check.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void The_bhtd_layout_transposes_every_time_axis_input_including_per_value_beta()
    {
        using var temp = new TempFolder();
        var c = Case with { PerValueBeta = true, B = 2 };
        var all = c.All();
        var bthd = new TensorFile();
        var bhtd = new TensorFile();
        foreach (string name in new[] { "q", "k", "v", "g", "beta" })
        {
            bthd.Add(name, all[name]);
            bhtd.Add(name, Layouts.SwapTimeAndHeads(all[name]));
        }
        TensorFiles.Write(temp.File("bthd.safetensors"), bthd);
        TensorFiles.Write(temp.File("bhtd.safetensors"), bhtd);
        Assert.Equal(0, CliRunner.Run("run", "gated_delta_rule", "--in", temp.File("bthd.safetensors"), "--out", temp.File("o1.safetensors"), "--variant", "chunked").ExitCode);
        Assert.Equal(0, CliRunner.Run("run", "gated_delta_rule", "--in", temp.File("bhtd.safetensors"), "--out", temp.File("o2.safetensors"), "--variant", "chunked", "--layout", "bhtd").ExitCode);
        TensorFile first = TensorFiles.Read(temp.File("o1.safetensors")), second = TensorFiles.Read(temp.File("o2.safetensors"));
        Assert.Equal(Layouts.SwapTimeAndHeads(first["o"]).Data, second["o"].Data);
        Assert.Equal(first["final_state"].Data, second["final_state"].Data); // [N,HV,K,V] has no time axis
    }

    [Theory]
    [InlineData("delta_rule", "S_t = (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ")]
    [InlineData("gated_delta_rule", "S_t = (I − β_t k_t k_tᵀ) exp(g_t) S_{t−1} + β_t k_t v_tᵀ")]
    [InlineData("kda", "S_t = (I − β_t k_t k_tᵀ) Diag(exp(gk_t)) S_{t−1} + β_t k_t v_tᵀ")]
    [InlineData("rwkv7", "S_t = (Diag(exp(gk_t)) + b_t a_tᵀ) S_{t−1} + k_t v_tᵀ")]
    public void Spec_prints_the_forms_equation(string form, string equation)
    {
        var outcome = CliRunner.Run("spec", form);
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains(equation, outcome.Out, StringComparison.Ordinal);
    }
}
