using AttentionReference.Forms;
using AttentionReference.Gpu;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Softmax;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// A random sparse call (SparseCase: a random 0/1 layout per head or shared, random global tokens, causal or not, GQA,
/// Tq ≠ Tk) past one group: T up to 24 (more keys than the CPU accelerator's 16 threads), K up to 19, V up to 19, block
/// sizes that do not divide T.
/// </summary>
public sealed record SparseGpuCase(SparseCase Case)
{
    public static Arbitrary<SparseGpuCase> Arbitrary { get; } =
        (from c in SparseCase.Arbitrary.Generator
         from tq in Gen.Choose(1, 24)
         from tk in Gen.Choose(1, 24)
         from k in Gen.Elements(1, 3, 17, 19)
         from v in Gen.Elements(1, 5, 19)
         from bq in Gen.Choose(1, 9)
         from bk in Gen.Choose(1, 9)
         select new SparseGpuCase(c with { Tq = tq, Tk = tk, K = k, V = v, Bq = bq, Bk = bk })).ToArbitrary();

    public override string ToString() => Case.ToString();
}

/// <summary>The GPU version of sparse (block, longformer, bigbird) equals the CPU reference, once per accelerator.</summary>
public abstract class SoftmaxSparseGpuLaws(AcceleratorFixture accelerator)
{
    // f32 against the f64 reference: inputs rounded to f32 (u = 6e-8) move a score by ≈ 2u·Σ|q_d k_d|/√K ≲ 1e-6
    // (K ≤ 19); the softmax adds ≈ u per key (≤ 24): ≈ 50u ≈ 3e-6 on the scale of |o| + max|v| and |lse| + 1; 1e-5
    // leaves room for the f32 exp and log.
    private const double SinglePrecision = 1e-5;

    private static readonly IForm Sparse = FormCatalog.Find("sparse");

    private static readonly string[] s_variants = ["block", "longformer", "bigbird"];

    [AcceleratorLaw(15)]
    public Property Gpu_f64_equals_the_cpu_in_every_pattern(SparseGpuCase c) => EveryPattern(c.Case, accelerator.F64, Agreement.SameMathInDouble);

    [AcceleratorLaw(5)]
    public Property Gpu_f32_is_within_the_f32_bound_in_every_pattern(SparseGpuCase c) => EveryPattern(c.Case, accelerator.F32, SinglePrecision);

    [AcceleratorLaw(1)]
    public bool Bad_input_is_refused_with_the_cpu_forms_message()
    {
        var c = new SparseCase(1, 6, 6, 1, 1, 2, 2, 2, 2, 1, false, true, 4);
        var (q, k, v) = c.Inputs(c.Tk);
        var wrongLayout = new Tensor([1, 2, 2], [1, 0, 0, 1], DType.I32); // Nq = Nk = 3 for T = 6, block 2
        var calls = new (string Variant, Dictionary<string, Tensor> Tensors, string[] Parameters)[]
        {
            ("block", new() { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = wrongLayout }, ["block_q=2", "block_k=2"]),
            ("block", new() { ["q"] = q, ["k"] = k, ["v"] = v }, ["block_q=2", "block_k=2"]),
            ("longformer", new() { ["q"] = q, ["k"] = k, ["v"] = v, ["global_tokens"] = new Tensor([1], [6], DType.I64) }, []),
            ("bigbird", new() { ["q"] = q, ["k"] = k, ["v"] = v, ["block_mask"] = wrongLayout }, ["block_q=2", "block_k=3"]),
        };
        foreach (var (variant, tensors, parameters) in calls)
        {
            var cpu = Assert.Throws<InputException>(() => SparseCase.Form.Call(variant, tensors, parameters));
            var gpu = Assert.Throws<InputException>(() => accelerator.F64.Run(Sparse, variant, tensors, FamilyTensors.Parameters(parameters)));
            Assert.Equal(cpu.Message, gpu.Message);
        }
        return true;
    }

    [AcceleratorLaw(1)]
    public bool Every_golden_case_of_sparse_verifies_on_the_gpu()
    {
        SoftmaxGoldens.AssertVerify(accelerator.F64, "sparse");
        return true;
    }

    private static Property EveryPattern(SparseCase c, GpuBackend gpu, double tolerance) => s_variants.Select(variant =>
    {
        var (tensors, parameters) = c.Call(variant);
        var cpu = SoftmaxOutputs.Of(SparseCase.Form.Call(variant, tensors, parameters));
        var result = SoftmaxOutputs.Of(gpu.Run(Sparse, variant, tensors, FamilyTensors.Parameters(parameters)));
        return Agreement.Close(result, cpu, tensors["v"], tolerance).Label(variant);
    }).Aggregate((a, b) => a.And(b));
}

[Accelerator("cpu")]
public sealed class SoftmaxSparseCpuAcceleratorTests(CpuAcceleratorFixture accelerator) : SoftmaxSparseGpuLaws(accelerator), IClassFixture<CpuAcceleratorFixture>;

[Accelerator("cuda")]
public sealed class SoftmaxSparseCudaTests(CudaFixture accelerator) : SoftmaxSparseGpuLaws(accelerator), IClassFixture<CudaFixture>;
