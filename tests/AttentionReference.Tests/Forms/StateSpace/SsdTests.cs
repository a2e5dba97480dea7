using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Forms.StateSpace;
using AttentionReference.Golden.Cases;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>A random ssd problem: shapes, chunk size (often not dividing T), step regime, options, split point, seed.</summary>
public sealed record SsdCase(int B, int T, int H, int P, int G, int N, int Chunk, StepRegime Regime, bool Extras, int Split, int Seed)
{
    public static Arbitrary<SsdCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from t in Gen.Choose(0, 20)
         from g in Gen.Choose(1, 2)
         from ratio in Gen.Choose(1, 2)
         from p in Gen.Choose(1, 3)
         from n in Gen.Choose(1, 4)
         from chunk in Gen.Choose(1, 22)
         from regime in Gen.Elements(StepRegime.Mild, StepRegime.Strong, StepRegime.Mixed)
         from extras in Gen.Elements(false, true)
         from split in Gen.Choose(0, 1000)
         from seed in Gen.Choose(0, int.MaxValue)
         select new SsdCase(b, t, g * ratio, p, g, n, chunk, regime, extras, split, seed)).ToArbitrary();

    /// <summary>The inputs (D, and with extras z, D per channel, initial_state).</summary>
    public Dictionary<string, Tensor> Inputs(int batch = 0, int[]? cuSeqlens = null)
    {
        var random = new Random(Seed);
        var shape = new StateSpaceCases.SsdShape(batch == 0 ? B : batch, T, H, P, G, N) { Extras = Extras, CuSeqlens = cuSeqlens };
        var inputs = StateSpaceCases.SsdInputs(Source(random), shape, softplus: false);
        if (Extras)
        {
            inputs.Remove("dt_bias"); // Δ is drawn directly here, so that the regimes hold; softplus has its own law
        }
        Tensor a = inputs["A"];
        Steps(inputs["dt"], i => Math.Abs(a.Data[i % H]), Regime, random);
        return inputs;
    }

    /// <summary>"chunk_size=Q".</summary>
    public string ChunkSize => "chunk_size=" + Chunk.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// ssd's laws: the variants agree, dt_bias and softplus, bad input; and the family's stateful laws (state passing,
/// varlen, causality) in every variant.
/// </summary>
public sealed class SsdTests : StatefulStateSpaceLaws<SsdCase>
{
    protected override IForm Form { get; } = new Ssd();

    protected override Dictionary<string, Tensor> Inputs(SsdCase c, int batch = 0, int[]? cuSeqlens = null) => c.Inputs(batch, cuSeqlens);

    protected override (int Steps, int Split, int Seed) Sizes(SsdCase c) => (c.T, c.Split, c.Seed);

    // x, dt, B, C, z and o are [B,T,...]
    protected override int? StepAxis(string name, Tensor x) => name is "x" or "dt" or "B" or "C" or "z" or "o" ? 1 : null;

    protected override IReadOnlyDictionary<string, Tensor> Run(SsdCase c, string variant, IReadOnlyDictionary<string, Tensor> x) =>
        Form.Call(variant, x, c.ChunkSize);

    protected override string[] Parameters(SsdCase c) => [c.ChunkSize];

    protected override SsdCase Edge(SsdCase c, int steps, int? chunk = null, bool strong = false) =>
        c with { T = steps, Chunk = chunk ?? c.Chunk, Regime = strong ? StepRegime.Strong : c.Regime };

    [Law]
    public bool Quadratic_equals_chunked_equals_recurrent_for_any_chunk_size(SsdCase c)
    {
        // Every variant sums the same products in double, in orders that differ by a few roundings per step; strong
        // decays only shrink terms (no division by a cumulative product): F64.
        var x = c.Inputs();
        var reference = Run(c, "recurrent", x);
        return Finite(reference["o"]) && Finite(reference["final_state"])
            && Agree(Run(c, "quadratic", x), reference) && Agree(Run(c, "chunked", x), reference);
    }

    [Law]
    public bool Softplus_of_dt_plus_dt_bias_is_the_step_size(SsdCase c)
    {
        // Held to torch's softplus written out here (threshold 20), not to the form's own: the same Δ to a few ulps
        // (log of 1 + e^z against log1p), which the outputs carry to well within 1e-12.
        var x = c.Inputs();
        var bias = TestTensors.Normal(new Random(c.Seed), 1, c.H);
        var raw = TestTensors.Normal(new Random(c.Seed + 2), 3, x["dt"].ShapeArray());
        var stepped = raw.Clone();
        for (int i = 0; i < stepped.Length; i++)
        {
            double z = raw.Data[i] + bias.Data[i % c.H];
            stepped.Data[i] = z > 20 ? z : Math.Log(1 + Math.Exp(z));
        }
        var viaBias = new Dictionary<string, Tensor>(x) { ["dt"] = raw, ["dt_bias"] = bias };
        var direct = new Dictionary<string, Tensor>(x) { ["dt"] = stepped };
        return TestTensors.Close(Form.Call("chunked", viaBias, c.ChunkSize, "dt_softplus=true")["o"], Form.Call("recurrent", direct)["o"], F64);
    }

    [Fact]
    public void Groups_not_dividing_heads_and_a_chunk_size_below_one_are_bad_input()
    {
        var x = Tensor.Zeros(1, 4, 3, 2);
        var dt = Tensor.Zeros(1, 4, 3);
        Dictionary<string, Tensor> WithBC(Tensor bc) => new() { ["x"] = x, ["dt"] = dt, ["A"] = Tensor.Zeros(3), ["B"] = bc, ["C"] = bc };
        var groups = Assert.Throws<InputException>(() => Form.Call("recurrent", WithBC(Tensor.Zeros(1, 4, 2, 2))));
        Assert.Contains("G = 2", groups.Message, StringComparison.Ordinal);
        var chunk = Assert.Throws<InputException>(() => Form.Call("chunked", WithBC(Tensor.Zeros(1, 4, 1, 2)), "chunk_size=0"));
        Assert.Contains("chunk_size", chunk.Message, StringComparison.Ordinal);
    }
}
