using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Gpu;

/// <summary>The GPU backend for some forms only; every other form is unsupported, so that its goldens are skipped.</summary>
internal sealed class FormsOnGpu(GpuBackend gpu, params string[] forms) : IBackend
{
    public string Name => gpu.Name;

    public string DeviceName => gpu.DeviceName;

    public IReadOnlyDictionary<string, Tensor> Run(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters) =>
        forms.Contains(form.Name)
            ? gpu.Run(form, variant, inputs, parameters)
            : throw new InputException($"{form.Name} is not under test here") { Unsupported = true };

    /// <summary>Every shipped golden of <paramref name="form"/>, verified on <paramref name="gpu"/>: all pass, none skipped.</summary>
    public static void AssertGoldensVerify(GpuBackend gpu, string form)
    {
        var results = GoldenStore.Verify(RepoPaths.Of("golden"), new FormsOnGpu(gpu, form))
            .Where(r => r.Id.StartsWith(form + "/", StringComparison.Ordinal) && !r.IsGradient) // gradient goldens: CPU only
            .ToList();
        Assert.NotEmpty(results);
        Assert.All(results, r => Assert.True(r.Passed,
            $"{r.Id}: {r.Skipped ?? r.Problem ?? string.Join("; ", r.Comparisons.Where(c => !c.Passed))}"));
    }
}

/// <summary>Every golden case of linear verifies on the GPU backend (CPU accelerator, f64).</summary>
public sealed class LinearGoldenGpuTests(CpuAcceleratorFixture accelerator) : IClassFixture<CpuAcceleratorFixture>
{
    [Fact]
    public void Every_linear_golden_verifies_on_the_gpu_backend() => FormsOnGpu.AssertGoldensVerify(accelerator.F64, "linear");
}
