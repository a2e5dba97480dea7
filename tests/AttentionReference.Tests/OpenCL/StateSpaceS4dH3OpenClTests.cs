using AttentionReference.Forms;
using AttentionReference.Golden.Cases;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.OpenCL;

/// <summary>How the step sizes dt = exp(log_dt) of a diagonal-SSM case are drawn, per channel (s4d) or head (h3).</summary>
public enum DtRegime
{
    /// <summary>The golden recipe: dt ≈ e^−3 ≈ 0.05.</summary>
    Mild,
    /// <summary>dt ≈ e^4 ≈ 55: |dt·A| from about 10 to past 1000 (Ā underflows to 0), angles dt·A_imag up to ~3500 rad.</summary>
    Strong,
    /// <summary>dt ≈ e^−18 ≈ 1.5e-8: Ā = 1 − O(1e-8), B̄ ≈ dt, where e^{dtA} − 1 must keep its digits.</summary>
    Tiny,
    /// <summary>Each channel or head mild, strong or tiny.</summary>
    Mixed,
}

/// <summary>
/// A random s4d or h3 problem for OpenCL: variant, shapes that do not fill a work-group of 64 (odd T up to 40 and 0,
/// s4d channels up to 67, h3 heads and head dims odd), mode counts on both sides of the kernels' block of 8 modes,
/// complex or real (real_a) modes, D and shift_D present or absent, shift taps fewer or more than T, and a dt regime.
/// </summary>
public sealed record DiagonalOpenClCase(string Form, string Variant, int B, int T, int H, int N, int D, int M,
    bool RealA, bool WithSkip, DtRegime Regime, int Seed)
{
    public static Arbitrary<DiagonalOpenClCase> For(string form, params DtRegime[] regimes) =>
        (from variant in Gen.Elements("recurrent", "convolution")
         from b in Gen.Choose(1, 2)
         from t in Gen.Elements(0, 1, 2, 7, 13, 24, 31, 40)
         from h in form == "s4d" ? Gen.Elements(1, 3, 19, 67) : Gen.Elements(1, 2, 3)
         from n in Gen.Elements(1, 3, 8, 9, 17)
         from d in Gen.Elements(1, 2, 5)
         from m in Gen.Elements(1, 2, 4, 45)
         from realA in Gen.Elements(false, true)
         from withSkip in Gen.Elements(false, true)
         from regime in Gen.Elements(regimes)
         from seed in Gen.Choose(0, int.MaxValue)
         select new DiagonalOpenClCase(form, variant, b, t, h, n, d, m, realA, withSkip, regime, seed)).ToArbitrary();

    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        Dictionary<string, Tensor> inputs;
        if (Form == "s4d")
        {
            inputs = new Dictionary<string, Tensor> { ["u"] = TestTensors.Normal(random, 1, B, T, H) };
            StateSpaceCases.AddDiagonalSsm(inputs, Source(random), H, N, RealA);
        }
        else
        {
            inputs = StateSpaceCases.H3Inputs(Source(random), B, T, H, D, M, N);
            if (RealA)
            {
                inputs.Remove("A_imag"); // A_real = −½·e^(N(0, 0.3²)) is as good a real spectrum as any
                inputs.Remove("C_imag");
            }
            if (!WithSkip)
            {
                inputs.Remove("shift_D");
            }
        }
        if (!WithSkip)
        {
            inputs.Remove("D");
        }
        double[] shifts = [0, 7, -15];
        inputs["log_dt"] = new Tensor([H], inputs["log_dt"].Data.Select(x => x + Regime switch
        {
            DtRegime.Mild => 0,
            DtRegime.Strong => 7,
            DtRegime.Tiny => -15,
            _ => shifts[random.Next(3)],
        }).ToArray());
        return inputs;
    }

    public FormParameters Parameters() => new(RealA ? new Dictionary<string, string> { ["real_a"] = "true" } : []);
}

[Collection(OpenClSerial.Name)]
public sealed class StateSpaceS4dH3OpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // The kernels evaluate the reference's terms in its order (the same Complex operations, Smith's division, Kahan's
    // expm1, sums over modes, lags and channels in the same sequence); what differs is exp, sin, cos and log of the
    // OpenCL library (a few ulps each, against the .NET runtime's), carried through ≤ 40 steps and ≤ 17 modes.
    // Observed on PoCL: ≤ 2.3e-15 over 1200 cases of every regime.
    private const double SameMathInDouble = 1e-12;

    // f32: u = 6e-8. Ā, B̄ come from f32 exp/cos/sin of an f32 dt·A (a few u each), and the convolution's
    // exp(l·dtA) of an angle l·dt·A_imag up to ~120 rad in the mild regime, whose f32 rounding alone is ~120·u ≈ 7e-6
    // absolute in the phase; the recurrence carries an error of Ā through ≤ 40 steps (≈ 40·4u ≈ 1e-5). Sums over
    // ≤ 17 modes (× 2 for conjugates) and ≤ 40 lags of random-sign terms can cancel the result by ~10 against the
    // sum of |terms|: ≈ 1e-4 relative at the very worst, 1e-5 typically. Observed on PoCL: ≤ 2.3e-6 over 1200 cases
    // of every regime, so 1e-4 keeps a margin of 40 over what is seen and still fails on a wrong term.
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double SinglePrecision = 1e-4;

    private static readonly IForm S4d = FormCatalog.Find("s4d"), H3 = FormCatalog.Find("h3");

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_for_s4d_recurrent_and_convolution() => PropertyRuns.Check(Prop.ForAll(
        DiagonalOpenClCase.For("s4d", DtRegime.Mild, DtRegime.Mild, DtRegime.Mixed), c =>
        {
            var (cpu, gpu) = Both(c, fixture.F64);
            return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble);
        }), cases: 80);

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_for_h3_recurrent_and_convolution() => PropertyRuns.Check(Prop.ForAll(
        DiagonalOpenClCase.For("h3", DtRegime.Mild, DtRegime.Mild, DtRegime.Mixed), c =>
        {
            var (cpu, gpu) = Both(c, fixture.F64);
            return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble);
        }), cases: 80);

    [Fact]
    public void Strong_decay_and_tiny_steps_stay_finite_and_equal_to_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(
        Gen.Elements("s4d", "h3").SelectMany(form => DiagonalOpenClCase.For(form, DtRegime.Strong, DtRegime.Tiny).Generator).ToArbitrary(), c =>
        {
            // Without D when tiny: D·u ≈ 1 would hide the ≈ dt response whose digits are the point.
            var (cpu, gpu) = Both(c with { WithSkip = c.WithSkip && c.Regime != DtRegime.Tiny }, fixture.F64);
            return Finite(gpu["o"]) && TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble);
        }), cases: 60);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_of_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(
        Gen.Elements("s4d", "h3").SelectMany(form => DiagonalOpenClCase.For(form, DtRegime.Mild, DtRegime.Mixed).Generator).ToArbitrary(), c =>
        {
            var (cpu, gpu) = Both(c, fixture.F32);
            return TestTensors.CloseAtUnitScale(gpu["o"], cpu["o"], SinglePrecision);
        }), cases: 80);

    [Fact]
    public void The_fft_variant_without_a_kernel_exits_2_with_one_line_naming_the_variants_there_are()
    {
        using var temp = new TempFolder();
        var c = new DiagonalOpenClCase("s4d", "fft", 1, 5, 2, 3, 1, 1, false, true, DtRegime.Mild, 5);
        string input = temp.File("in.safetensors");
        var file = new TensorFile();
        foreach (var (name, tensor) in c.Inputs())
        {
            file.Add(name, tensor);
        }
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", "s4d", "--backend", "opencl", "--variant", "fft", "--in", input, "--out", temp.File("out.safetensors"));

        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("--backend opencl: s4d variant 'fft' has no OpenCL kernel; variants on opencl: recurrent, convolution", outcome.Error, StringComparison.Ordinal);
        Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Bad_input_is_refused_with_the_cpu_forms_own_error()
    {
        var c = new DiagonalOpenClCase("h3", "recurrent", 1, 5, 2, 3, 2, 2, true, true, DtRegime.Mild, 7);
        var inputs = c.Inputs();
        inputs["A_imag"] = Tensor.Zeros(2, 3); // real_a with a complex part given
        var cpu = Assert.Throws<InputException>(() => CpuBackend.Instance.Run(H3, "recurrent", inputs, c.Parameters()));
        var gpu = Assert.Throws<InputException>(() => fixture.F64.Run(H3, "recurrent", inputs, c.Parameters()));
        Assert.Equal(cpu.Message, gpu.Message);
        Assert.Equal("A_imag", gpu.Tensor);
    }

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(DiagonalOpenClCase c, IBackend gpu)
    {
        var form = c.Form == "s4d" ? S4d : H3;
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(form, c.Variant, inputs, parameters), gpu.Run(form, c.Variant, inputs, parameters));
    }
}
