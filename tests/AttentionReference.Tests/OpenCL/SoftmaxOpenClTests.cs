using AttentionReference.Forms;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

[Collection(OpenClSerial.Name)]
public sealed class SoftmaxOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // Both compute the same sums in double; the kernel streams keys with the online softmax, the reference
    // materialises a row: rounding-order differences of a few ulps per term, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32 kernel against the f64 reference: unit roundoff 6e-8, dot products of ≤ 17 terms and sums over ≤ 9 keys,
    // each rescaled by exp once per key: ≈ 30u ≈ 2e-6 in the worst case; 1e-5 is the f32 profile's bound.
    private const double SinglePrecision = 1e-5;

    private static readonly IForm Softmax = FormCatalog.Find("softmax");

    private static readonly string[] s_keyedVariants = ["naive", "tiled", "split"];

    // The variants that run softmax_tiled (split with P parts of the keys).
    private static readonly string[] s_tiledKernelVariants = ["tiled", "split"];

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(SoftmaxCase.Arbitrary, c =>
    {
        var (cpu, gpu) = Both(c, fixture.F64.Run);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["lse"], cpu["lse"], SameMathInDouble);
    }), cases: 100);

    /// <summary>Windows that empty some rows, softcap, ALiBi and both alignments on one query block and key tile of
    /// the tiled kernel (64 rows, 64 keys), partial ones; head dims up to 130 (two passes of 128 value columns).</summary>
    private static readonly FsCheck.Arbitrary<(SoftmaxCase Case, Dictionary<string, string> Parameters, bool Alibi)> LongCases =
        (from c in SoftmaxCase.Arbitrary.Generator
         from tq in Gen.Choose(1, 40)
         from tk in Gen.Choose(1, 40)
         from dv in Gen.Elements(1, 5, 8, 33, 130)
         from left in Gen.Elements(-1, 0, 3, 17)
         from right in Gen.Elements(-1, 0, 2)
         from softcap in Gen.Elements(0.0, 0.7, 30.0)
         from topLeft in Gen.Elements(false, true)
         from alibi in Gen.Elements(false, true)
         select (c with { Tq = tq, Tk = tk, V = dv }, new Dictionary<string, string>
         {
             ["causal"] = c.Causal ? "true" : "false",
             ["window_left"] = left.ToString(System.Globalization.CultureInfo.InvariantCulture),
             ["window_right"] = right.ToString(System.Globalization.CultureInfo.InvariantCulture),
             ["softcap"] = softcap.ToString(System.Globalization.CultureInfo.InvariantCulture),
             ["causal_align"] = topLeft ? "top_left" : "bottom_right",
         }, alibi)).ToArbitrary();

    [Fact]
    public void OpenCL_tiled_f64_equals_the_cpu_reference_across_blocks_windows_softcap_and_alibi() => PropertyRuns.Check(Prop.ForAll(LongCases, x =>
    {
        var (q, k, v) = x.Case.Inputs();
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        if (x.Alibi)
        {
            inputs["alibi_slopes"] = new Tensor([x.Case.Hq], Enumerable.Range(1, x.Case.Hq).Select(h => Math.Pow(2, -h)).ToArray());
        }
        var parameters = new FormParameters(x.Parameters);
        var cpu = CpuBackend.Instance.Run(Softmax, "naive", inputs, parameters);
        var gpu = fixture.F64.Run(Softmax, "tiled", inputs, parameters);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["lse"], cpu["lse"], SameMathInDouble);
    }), cases: 100);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_of_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(SoftmaxCase.Arbitrary, c =>
    {
        var (cpu, gpu) = Both(c, fixture.F32.Run);
        return TestTensors.Close(gpu["o"], cpu["o"], SinglePrecision) && TestTensors.Close(gpu["lse"], cpu["lse"], SinglePrecision);
    }), cases: 100);

    [Fact]
    public void Empty_rows_give_zero_and_minus_infinity_on_opencl_too()
    {
        var c = new SoftmaxCase(1, 5, 2, 1, 1, 4, 3, true, 7); // Tq > Tk under causal: rows 0..2 see no key
        var (cpu, gpu) = Both(c, fixture.F64.Run);
        Assert.Equal(cpu["lse"].Data.Select(double.IsNegativeInfinity), gpu["lse"].Data.Select(double.IsNegativeInfinity));
        TestTensors.AssertClose(gpu["o"], cpu["o"], SameMathInDouble, "o");
    }

    [Fact]
    public void Check_with_the_opencl_backend_passes_the_right_example()
    {
        var outcome = CliRunner.Run("check", "softmax", "--backend", "opencl",
            "--in", RepoPaths.Of("examples", "softmax", "input.safetensors"),
            "--candidate", RepoPaths.Of("examples", "softmax", "candidate_good.safetensors"));
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains("opencl reference", outcome.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void A_device_that_does_not_exist_exits_2_naming_the_devices_there_are()
    {
        var outcome = CliRunner.Run("run", "softmax", "--backend", "opencl", "--device", "no-such-device-xyz",
            "--in", RepoPaths.Of("examples", "softmax", "input.safetensors"), "--out", Path.Combine(Path.GetTempPath(), "never.safetensors"));
        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("no OpenCL device matches 'no-such-device-xyz'; devices:", outcome.Error, StringComparison.Ordinal);
        Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    /// <summary>Every option at once (masks of every broadcast shape with emptied rows, windows, softcap, ALiBi, GQA,
    /// Tq ≠ Tk, K ≠ V) on partial query blocks and key tiles, and head dims up to 130 (two passes of 128 value columns
    /// in the tiled kernel).</summary>
    private static readonly FsCheck.Arbitrary<SoftmaxOptionsCase> OptionCases =
        (from c in SoftmaxOptionsCase.Generator
         from tq in Gen.Choose(1, 40)
         from tk in Gen.Choose(1, 40)
         from dk in Gen.Elements(1, 3, 17)
         from dv in Gen.Elements(1, 5, 33, 130)
         select c with { Tq = tq, Tk = tk, K = dk, V = dv }).ToArbitrary();

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_in_every_variant_with_every_option() => PropertyRuns.Check(Prop.ForAll(OptionCases, c =>
    {
        var x = c.Inputs();
        foreach (var (name, cpu) in c.AllVariants(x))
        {
            var gpu = RunOpenCl(fixture.F64, name, x, c.VariantParameters(name));
            if (!Agreement.Close(gpu, cpu, x.V))
            {
                return false.Label(name);
            }
        }
        return true.ToProperty();
    }), cases: 60);

    // f32 kernels against the f64 reference: inputs rounded to f32 (u = 6e-8) move a score by ≈ 2u·scale·Σ|q_d k_d|
    // ≲ 1e-6 (K ≤ 17 normal entries) and an ALiBi bias by u·slope·distance ≤ 40u; the online softmax adds ≈ u per key
    // (≤ 40) to l and o, the merge ≈ u per part: ≈ 100u ≈ 6e-6 on the scale of |o| + max|v| and |lse| + 1 in the
    // worst case; 2e-5 leaves room for the f32 exp/log (≤ 4 ulp).
    private const double SinglePrecisionEveryOption = 2e-5;

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_in_every_variant_with_every_option() => PropertyRuns.Check(Prop.ForAll(OptionCases, c =>
    {
        var x = c.Inputs();
        foreach (var (name, cpu) in c.AllVariants(x))
        {
            var gpu = RunOpenCl(fixture.F32, name, x, c.VariantParameters(name));
            if (!Agreement.Close(gpu, cpu, x.V, SinglePrecisionEveryOption))
            {
                return false.Label(name);
            }
        }
        return true.ToProperty();
    }), cases: 40);

    /// <summary>
    /// Every option on sequences of up to 150 queries and keys: several query blocks of the tiled kernel (64 rows) and
    /// key tiles (64 keys, in sub-tiles of 8 for V), partial ones, tiles skipped left of a window and above the
    /// diagonal; K around its chunk of 8 dims (7, 8, 9, 20), V around its column pairs and passes (1, 3, 40, 129).
    /// </summary>
    private static readonly FsCheck.Arbitrary<SoftmaxOptionsCase> ManyTileCases =
        (from c in SoftmaxOptionsCase.Generator
         from tq in Gen.Choose(1, 150)
         from tk in Gen.Choose(1, 150)
         from dk in Gen.Elements(1, 7, 8, 9, 20)
         from dv in Gen.Elements(1, 3, 40, 129)
         from wl in Gen.Elements(-1, -1, 0, 5, 70)
         from wr in Gen.Elements(-1, -1, 0, 9, 65)
         select c with { B = 1, Group = Math.Min(c.Group, 2), Tq = tq, Tk = tk, K = dk, V = dv, WindowLeft = wl, WindowRight = wr }).ToArbitrary();

    [Fact]
    public void OpenCL_tiled_and_split_f64_equal_the_cpu_reference_over_many_query_blocks_and_key_tiles() =>
        PropertyRuns.Check(Prop.ForAll(ManyTileCases, c =>
    {
        var x = c.Inputs();
        var cpu = x.Run("naive");
        foreach (string name in s_tiledKernelVariants)
        {
            if (!Agreement.Close(RunOpenCl(fixture.F64, name, x, c.VariantParameters(name)), cpu, x.V))
            {
                return false.Label(name);
            }
        }
        return true.ToProperty();
    }), cases: 30);

    /// <summary>Head dims up to 256 (32 chunks of K, two passes of V) and several tiles.</summary>
    private static readonly FsCheck.Arbitrary<SoftmaxOptionsCase> WideHeadCases =
        (from c in SoftmaxOptionsCase.Generator
         from tq in Gen.Choose(1, 80)
         from tk in Gen.Choose(1, 80)
         from dk in Gen.Elements(64, 128, 200, 256)
         from dv in Gen.Elements(64, 128, 200, 256)
         select c with { B = 1, Hkv = 1, Group = 1, Tq = tq, Tk = tk, K = dk, V = dv }).ToArbitrary();

    [Fact]
    public void OpenCL_tiled_f64_equals_the_cpu_reference_with_head_dims_up_to_256() => PropertyRuns.Check(Prop.ForAll(WideHeadCases, c =>
    {
        var x = c.Inputs();
        return Agreement.Close(RunOpenCl(fixture.F64, "tiled", x, c.VariantParameters("tiled")), x.Run("naive"), x.V);
    }), cases: 12);

    /// <summary>
    /// A NaN, +∞ or −∞ in a few values of v, over several tiles, with masks and windows: the tiled kernel switches
    /// such a V sub-tile to its careful loop; every output must be what the reference gives: the same non-finite values
    /// at the same places (v_j[d] reaches o_i[d] exactly when j ∈ A_i), the finite ones within 1e-12.
    /// </summary>
    [Fact]
    public void A_NaN_or_infinity_in_v_reaches_the_same_outputs_as_in_the_reference_on_opencl() =>
        PropertyRuns.Check(Prop.ForAll(ManyTileCases, c =>
    {
        var x = c.Inputs();
        var random = new Random(c.Seed);
        double[] specials = [double.NaN, double.PositiveInfinity, double.NegativeInfinity];
        for (int n = 0; n < 3; n++)
        {
            x.V.Data[random.Next(x.V.Length)] = specials[random.Next(specials.Length)];
        }
        var cpu = x.Run("naive");
        foreach (string name in s_tiledKernelVariants)
        {
            if (!Agreement.Close(RunOpenCl(fixture.F64, name, x, c.VariantParameters(name)), cpu, x.V))
            {
                return false.Label(name);
            }
        }
        return true.ToProperty();
    }), cases: 30);

    [Fact]
    public void A_NaN_in_v_reaches_o_even_where_its_weight_underflows_to_zero_on_opencl()
    {
        // 100 queries and keys (two query blocks, two key tiles), K = V = 1, causal: key 70 scores −2000 below the
        // others, so exp(s − m) = 0 for every row that sees it, yet its NaN reaches those rows (0·NaN), as in the
        // reference; rows before 70 never see it and stay finite.
        var q = new Tensor([1, 100, 1, 1], Enumerable.Repeat(1.0, 100).ToArray());
        var k = new Tensor([1, 100, 1, 1], Enumerable.Range(0, 100).Select(j => j == 70 ? -2000.0 : 0.01 * j).ToArray());
        var v = new Tensor([1, 100, 1, 1], Enumerable.Range(0, 100).Select(j => j == 70 ? double.NaN : Math.Sin(j)).ToArray());
        var x = new SoftmaxInputs(q, k, v) { Causal = true };
        var cpu = x.Run("naive");
        Assert.True(double.IsNaN(cpu.O.Data[70]) && double.IsFinite(cpu.O.Data[69])); // the law's premise
        foreach (string name in s_keyedVariants)
        {
            Assert.True(Agreement.Close(RunOpenCl(fixture.F64, name, x, "block_q=64", "block_k=64", "num_splits=3"), cpu, v), name);
        }
    }

    [Fact]
    public void OpenCL_varlen_equals_the_cpu_reference_in_every_variant() =>
        PropertyRuns.Check(Prop.ForAll(VarlenCase.Arbitrary, c =>
    {
        var s = c.Shared;
        var x = c.Inputs();
        var cpu = x.Run("naive");
        foreach (string name in s_keyedVariants)
        {
            string[] parameters = [FamilyTensors.Parameter("block_q", s.BlockQ), FamilyTensors.Parameter("block_k", s.BlockK), FamilyTensors.Parameter("num_splits", s.NumSplits)];
            if (!Agreement.Close(RunOpenCl(fixture.F64, name, x, parameters), cpu, x.V))
            {
                return false.Label(name);
            }
        }
        return true.ToProperty();
    }), cases: 60);

    [Fact]
    public void OpenCL_decode_equals_the_cpu_reference_with_a_paged_or_contiguous_cache() =>
        PropertyRuns.Check(Prop.ForAll(DecodeCase.Arbitrary, c =>
    {
        var (x, paged, contiguous) = c.Inputs();
        string splits = FamilyTensors.Parameter("num_splits", c.Shared.NumSplits);
        foreach (var (name, cache) in new[] { ("paged", paged), ("contiguous", contiguous) })
        {
            var cpu = SoftmaxOutputs.Of(SoftmaxInputs.Form.Call("decode", cache, x.Parameters(splits)));
            var gpu = SoftmaxOutputs.Of(fixture.F64.Run(Softmax, "decode", cache, x.FormParameters(splits)));
            if (!Agreement.Close(gpu, cpu, cache["v_cache"]))
            {
                return false.Label(name);
            }
        }
        return true.ToProperty();
    }), cases: 60);

    [Fact]
    public void A_NaN_in_a_masked_value_row_reaches_nothing_on_opencl_either()
    {
        // Key 3 is masked for every query; its v is NaN. The tiled kernel loads it into its tile but must not use it.
        var c = new SoftmaxOptionsCase(1, 20, 12, 1, 2, 3, 4, false, false, -1, -1, 0, false, MaskChoice.None, 0, 4, 4, 3, 11);
        var x = c.Inputs();
        x.V[0, 3, 0, 1] = double.NaN;
        var mask = new Tensor([20, 12], Enumerable.Range(0, 240).Select(e => e % 12 == 3 ? 0.0 : 1.0).ToArray(), DType.I32);
        x = x with { Mask = mask };
        foreach (string name in s_keyedVariants)
        {
            var gpu = RunOpenCl(fixture.F64, name, x, "block_q=4", "block_k=4", "num_splits=3");
            Assert.DoesNotContain(gpu.O.Data, double.IsNaN);
            Assert.True(Agreement.Close(gpu, x.Run("naive"), x.V), name);
        }
    }

    [Fact]
    public void Bad_input_is_refused_on_opencl_with_the_cpu_forms_message()
    {
        var c = new SoftmaxOptionsCase(1, 3, 4, 1, 1, 2, 2, false, false, -1, -1, 0, false, MaskChoice.Bool, 4, 4, 4, 3, 1);
        var x = c.Inputs();
        var badMask = x with { Mask = new Tensor([2, 4], new double[8], DType.I32) };
        var cpuError = Assert.Throws<InputException>(() => badMask.Run("naive"));
        var gpuError = Assert.Throws<InputException>(() => RunOpenCl(fixture.F64, "tiled", badMask));
        Assert.Equal(cpuError.Message, gpuError.Message);
        var unknown = Assert.Throws<InputException>(() => RunOpenCl(fixture.F64, "flash", x));
        Assert.Contains("variants on opencl: naive, tiled, split, decode", unknown.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_form_without_a_kernel_is_bad_input_naming_the_way_out()
    {
        // Bad input is what the CLI turns into exit 2 with its one line.
        var error = Assert.Throws<InputException>(() => fixture.F64.Run(new KernelLessForm(), "naive", new Dictionary<string, Tensor>(), new FormParameters(new Dictionary<string, string>())));
        Assert.Equal("--backend opencl: kernel_less has no OpenCL kernel yet; use --backend cpu", error.Message);
    }

    private sealed class KernelLessForm : IForm
    {
        public string Name => "kernel_less";
        public string Family => "test";
        public string SourceFile => "none";
        public IReadOnlyList<string> Variants { get; } = ["naive"];
        public IReadOnlyList<TensorSpec> Inputs { get; } = [];
        public IReadOnlyList<TensorSpec> Outputs { get; } = [];
        public IReadOnlyList<ParameterSpec> Parameters { get; } = [];

        public IReadOnlyDictionary<string, Tensor> Run(string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) =>
            throw new InvalidOperationException("never run on the CPU here");
    }

    /// <summary>Runs <paramref name="variant"/> on an OpenCL backend with the case's options as the CLI passes them.</summary>
    private static SoftmaxOutputs RunOpenCl(OpenClBackend backend, string variant, SoftmaxInputs x, params string[] more) =>
        SoftmaxOutputs.Of(backend.Run(Softmax, variant, x.Tensors(variant), x.FormParameters(more)));

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(
        SoftmaxCase c, Func<IForm, string, IReadOnlyDictionary<string, Tensor>, FormParameters, IReadOnlyDictionary<string, Tensor>> gpu)
    {
        var (q, k, v) = c.Inputs();
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        var parameters = new FormParameters(new Dictionary<string, string> { ["causal"] = c.Causal ? "true" : "false" });
        return (CpuBackend.Instance.Run(Softmax, "naive", inputs, parameters), gpu(Softmax, "naive", inputs, parameters));
    }
}
