using AttentionReference.Forms;
using AttentionReference.OpenCL;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.OpenCL;

[Collection(OpenClSerial.Name)]
public sealed class SparseOpenClTests(OpenClFixture fixture) : IClassFixture<OpenClFixture>
{
    // f32 kernel against the f64 reference: inputs rounded to f32 (u = 6e-8) move a score by ≈ 2u·Σ|q_d k_d|/√K ≲ 1e-6
    // (K ≤ 17); the online softmax adds ≈ u per key (≤ 40): ≈ 60u ≈ 4e-6 on the scale of |o| + max|v| and |lse| + 1;
    // 1e-5 leaves room for f32 exp/log.
    private const double SinglePrecision = 1e-5;

    private static readonly IForm Sparse = FormCatalog.Find("sparse");

    private static readonly string[] s_variants = ["block", "longformer", "bigbird"];

    /// <summary>The CPU cases, longer (T up to 40, several blocks, partial ones included), with odd head dims.</summary>
    private static readonly Arbitrary<SparseCase> Cases =
        (from c in SparseCase.Arbitrary.Generator
         from tq in Gen.Choose(1, 40)
         from tk in Gen.Choose(1, 40)
         from k in Gen.Elements(1, 3, 17)
         from bq in Gen.Choose(1, 9)
         from bk in Gen.Choose(1, 9)
         select c with { Tq = tq, Tk = tk, K = k, Bq = bq, Bk = bk }).ToArbitrary();

    [Fact]
    public void OpenCL_f64_equals_the_cpu_reference_in_every_pattern() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
        s_variants.All(variant => Agree(fixture.F64, variant, c, Agreement.SameMathInDouble))), cases: 80);

    [Fact]
    public void OpenCL_f32_is_within_the_f32_bound_in_every_pattern() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
        s_variants.All(variant => Agree(fixture.F32, variant, c, SinglePrecision))), cases: 50);

    [Fact]
    public void Bad_input_is_refused_on_opencl_with_the_cpu_forms_message()
    {
        var c = new SparseCase(1, 6, 6, 1, 1, 2, 2, 2, 2, 1, false, true, 4);
        var (q, k, v) = c.Inputs(c.Tk);
        var wrongLayout = new Tensor([1, 2, 2], [1, 0, 0, 1], DType.I32); // Nq = Nk = 3 for T = 6, block 2
        var tensors = new Dictionary<string, Tensor> { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = wrongLayout };
        var cpu = Assert.Throws<InputException>(() => SparseCase.Form.Call("block", tensors, "block_q=2", "block_k=2"));
        var gpu = Assert.Throws<InputException>(() => fixture.F64.Run(Sparse, "block", tensors, FamilyTensors.Parameters(["block_q=2", "block_k=2"])));
        Assert.Equal(cpu.Message, gpu.Message);
    }

    private static bool Agree(OpenClBackend backend, string variant, SparseCase c, double tolerance)
    {
        var (tensors, parameters) = c.Call(variant);
        var cpu = SoftmaxOutputs.Of(SparseCase.Form.Call(variant, tensors, parameters));
        var gpu = SoftmaxOutputs.Of(backend.Run(Sparse, variant, tensors, FamilyTensors.Parameters(parameters)));
        return Agreement.Close(gpu, cpu, tensors["v"], tolerance);
    }
}
