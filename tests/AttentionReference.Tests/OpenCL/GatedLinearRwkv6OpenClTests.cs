using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Cli;
using AttentionReference.Tests.Forms.GatedLinear;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

/// <summary>A random rwkv6 problem for OpenCL: variant, shapes that do not fill a work-group, log decays down to −20,
/// chunk sizes that often do not divide T, batch or varlen, initial state or none, scale or the default.</summary>
public sealed record Rwkv6OpenClCase(string Variant, int B, int T, int H, int K, int V, GateRegime Regime, int ChunkSize,
    bool Varlen, bool WithState, bool WithScale, int Seed)
{
    public static Arbitrary<Rwkv6OpenClCase> Arbitrary { get; } =
        (from variant in Gen.Elements("recurrent", "chunked")
         from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 40)
         from h in Gen.Choose(1, 3)
         from k in Gen.Elements(1, 3, 8, 19)
         from v in Gen.Elements(1, 2, 5, 17)
         from regime in Gen.Elements(GateRegime.Mild, GateRegime.Strong, GateRegime.Mixed)
         from chunk in Gen.Choose(1, 45)
         from varlen in Gen.Elements(false, true)
         from withState in Gen.Elements(false, true)
         from withScale in Gen.Elements(false, true)
         from seed in Gen.Choose(0, int.MaxValue)
         select new Rwkv6OpenClCase(variant, varlen ? 1 : b, t, h, k, v, regime, chunk, varlen, withState, withScale, seed)).ToArbitrary();

    public Dictionary<string, Tensor> Inputs()
    {
        var random = new Random(Seed);
        var gates = new StatefulCase(B, T, H, K, V, Regime, Variant, ChunkSize, 0, WithState, Seed);
        var inputs = new Dictionary<string, Tensor>
        {
            ["q"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["k"] = TestTensors.Normal(random, 1, B, T, H, K),
            ["v"] = TestTensors.Normal(random, 1, B, T, H, V),
            ["w"] = gates.Gates(random, B, T, H, K),
            ["u"] = TestTensors.Normal(random, 1, H, K),
        };
        int n = B;
        if (Varlen)
        {
            var cuts = Enumerable.Range(0, 3).Select(_ => random.Next(T + 1)).Append(0).Append(T).Order().ToArray();
            inputs["cu_seqlens"] = new Tensor([cuts.Length], cuts.Select(x => (double)x).ToArray(), DType.I64);
            n = cuts.Length - 1;
        }
        if (WithState)
        {
            inputs["initial_state"] = TestTensors.Normal(random, 1, n, H, K, V);
        }
        return inputs;
    }

    public FormParameters Parameters()
    {
        var values = new Dictionary<string, string> { ["chunk_size"] = ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (WithScale)
        {
            values["scale"] = "0.37";
        }
        return new FormParameters(values);
    }
}

[Collection(OpenClSerial.Name)]
public sealed class GatedLinearRwkv6OpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // The kernels evaluate the reference's terms in its order (same exponent differences inside a chunk); exp of the
    // OpenCL library and FMA contraction differ by a few ulps per term over ≤ 40 steps of ≤ 19-term sums.
    private const double SameMathInDouble = 1e-12;

    // f32: u = 6e-8; ≤ 40 steps of ≤ 19-term products plus the bonus term, ≈ (T + K)·u ≈ 4e-6 relative to the sum of
    // |terms|, cancelled by random signs by up to ~10 in these shapes: 1e-4.
    // Observed: every case of 180 within 1e-5, some past 1e-6; the bound keeps a margin of 10.
    // Held at unit scale (TestTensors.CloseAtUnitScale): an output that random signs cancel to far below the sum of
    // |terms| is compared at the scale of its terms, not at its own tiny norm.
    private const double SinglePrecision = 1e-4;

    private static readonly IForm Rwkv6 = FormCatalog.Find("rwkv6");

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_for_recurrent_and_chunked() => PropertyRuns.Check(Prop.ForAll(Rwkv6OpenClCase.Arbitrary, c =>
    {
        var (cpu, gpu) = Both(c, fixture.F64);
        return TestTensors.Close(gpu["o"], cpu["o"], SameMathInDouble) && TestTensors.Close(gpu["final_state"], cpu["final_state"], SameMathInDouble);
    }), cases: 100);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_of_the_cpu_reference() => PropertyRuns.Check(Prop.ForAll(Rwkv6OpenClCase.Arbitrary, c =>
    {
        var (cpu, gpu) = Both(c, fixture.F32);
        return TestTensors.CloseAtUnitScale(gpu["o"], cpu["o"], SinglePrecision) && TestTensors.CloseAtUnitScale(gpu["final_state"], cpu["final_state"], SinglePrecision);
    }), cases: 60);

    [Fact]
    public void The_parallel_variant_without_a_kernel_exits_2_with_one_line_naming_the_variants_there_are()
    {
        using var temp = new TempFolder();
        var inputs = new Rwkv6OpenClCase("parallel", 1, 5, 1, 3, 2, GateRegime.Mild, 2, false, false, false, 5).Inputs();
        string input = temp.File("in.safetensors");
        var file = new TensorFile();
        foreach (var (name, tensor) in inputs)
        {
            file.Add(name, tensor);
        }
        TensorFiles.Write(input, file);

        var outcome = CliRunner.Run("run", "rwkv6", "--backend", "opencl", "--variant", "parallel", "--in", input, "--out", temp.File("out.safetensors"));

        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("--backend opencl: rwkv6 variant 'parallel' has no OpenCL kernel; variants on opencl: recurrent, chunked", outcome.Error, StringComparison.Ordinal);
        Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    private static (IReadOnlyDictionary<string, Tensor> Cpu, IReadOnlyDictionary<string, Tensor> Gpu) Both(Rwkv6OpenClCase c, IBackend gpu)
    {
        var inputs = c.Inputs();
        var parameters = c.Parameters();
        return (CpuBackend.Instance.Run(Rwkv6, c.Variant, inputs, parameters), gpu.Run(Rwkv6, c.Variant, inputs, parameters));
    }
}
