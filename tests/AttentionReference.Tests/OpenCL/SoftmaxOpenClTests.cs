using AttentionReference.Forms;
using AttentionReference.Forms.Softmax;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

public sealed class SoftmaxOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // Both compute the same sums in double; the kernel streams keys with the online softmax, the reference
    // materialises a row: rounding-order differences of a few ulps per term, far below 1e-12.
    private const double SameMathInDouble = 1e-12;

    // f32 kernel against the f64 reference: unit roundoff 6e-8, dot products of ≤ 17 terms and sums over ≤ 9 keys,
    // each rescaled by exp once per key: ≈ 30u ≈ 2e-6 in the worst case; 1e-5 is the f32 profile's bound.
    private const double SinglePrecision = 1e-5;

    private static readonly IForm Softmax = FormCatalog.Find("softmax");

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(SoftmaxCase.Arbitrary, c =>
    {
        var (cpu, gpu) = Both(c, fixture.F64.Run);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["lse"], cpu["lse"], SameMathInDouble);
    }), cases: 100);

    /// <summary>Long enough for several query blocks (16 rows) and key tiles (8 keys), partial ones included, with
    /// windows that empty some rows, softcap, ALiBi and both alignments; head dims up to 130 (past the tiled kernel's
    /// V ≤ 128, where it hands over to the row kernel).</summary>
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

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(
        SoftmaxCase c, Func<IForm, string, IReadOnlyDictionary<string, Tensor>, FormParameters, IReadOnlyDictionary<string, Tensor>> gpu)
    {
        var (q, k, v) = c.Inputs();
        var inputs = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v };
        var parameters = new FormParameters(new Dictionary<string, string> { ["causal"] = c.Causal ? "true" : "false" });
        return (CpuBackend.Instance.Run(Softmax, "naive", inputs, parameters), gpu(Softmax, "naive", inputs, parameters));
    }
}
