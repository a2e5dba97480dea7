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

/// <summary>A random mamba problem: shapes, B/C kind (0 time-invariant, 1 shared, 2 grouped), block size, regime, options, split, seed.</summary>
public sealed record MambaCase(int B, int D, int L, int N, int Kind, int BlockSize, StepRegime Regime, bool Extras, bool Softplus, int Split, int Seed)
{
    public static Arbitrary<MambaCase> Arbitrary { get; } =
        (from b in Gen.Choose(1, 2)
         from d in Gen.Elements(2, 4)
         from l in Gen.Choose(0, 20)
         from n in Gen.Choose(1, 4)
         from kind in Gen.Choose(0, 2)
         from block in Gen.Choose(1, 22)
         from regime in Gen.Elements(StepRegime.Mild, StepRegime.Strong, StepRegime.Mixed)
         from extras in Gen.Elements(false, true)
         from softplus in Gen.Elements(false, true)
         from split in Gen.Choose(0, 1000)
         from seed in Gen.Choose(0, int.MaxValue)
         select new MambaCase(b, d, l, n, kind, block, regime, extras, softplus && regime == StepRegime.Mild, split, seed)).ToArbitrary();

    public Dictionary<string, Tensor> Inputs(int batch = 0, int[]? cuSeqlens = null)
    {
        var random = new Random(Seed);
        var shape = new StateSpaceCases.MambaShape(batch == 0 ? B : batch, D, L, N, Kind) { Extras = Extras, CuSeqlens = cuSeqlens };
        var inputs = StateSpaceCases.MambaInputs(Source(random), shape, Softplus);
        Tensor a = inputs["A"];
        // Δ[b, d, l] multiplies A[d, :]; the smallest |A_dn| is n = 0's
        Steps(inputs["delta"], i => Math.Abs(a[(i / L) % D, 0]), Regime, random);
        if (Regime != StepRegime.Mild)
        {
            inputs.Remove("delta_bias");
        }
        return inputs;
    }

    /// <summary>The case's parameters: delta_softplus and block_size (another block size where given).</summary>
    public string[] Parameters(int? blockSize = null) =>
    [
        "delta_softplus=" + (Softplus ? "true" : "false"),
        "block_size=" + (blockSize ?? BlockSize).ToString(CultureInfo.InvariantCulture),
    ];

}

/// <summary>
/// mamba's laws: the variants agree, B/C groups, delta_bias and softplus, bad input; and the family's stateful laws
/// (state passing, varlen, causality) in every variant.
/// </summary>
public sealed class MambaTests : StatefulStateSpaceLaws<MambaCase>
{
    private static readonly bool[] s_softplusOrNot = [false, true];

    protected override IForm Form { get; } = new Mamba();

    protected override Dictionary<string, Tensor> Inputs(MambaCase c, int batch = 0, int[]? cuSeqlens = null) => c.Inputs(batch, cuSeqlens);

    protected override (int Steps, int Split, int Seed) Sizes(MambaCase c) => (c.L, c.Split, c.Seed);

    // u, delta, z, o and a selective B or C have their steps on the last axis ([B,D,L], [B,G,N,L])
    protected override int? StepAxis(string name, Tensor x) =>
        name is "u" or "delta" or "z" or "o" || (name is "B" or "C" && x.Rank >= 3) ? x.Rank - 1 : null;

    protected override IReadOnlyDictionary<string, Tensor> Run(MambaCase c, string variant, IReadOnlyDictionary<string, Tensor> x) =>
        Form.Call(variant, x, c.Parameters());

    protected override string[] Parameters(MambaCase c) => c.Parameters();

    // The strong regime draws Δ directly, without softplus (as the generator pairs them).
    protected override MambaCase Edge(MambaCase c, int steps, int? chunk = null, bool strong = false) =>
        strong ? c with { L = steps, BlockSize = chunk ?? c.BlockSize, Regime = StepRegime.Strong, Softplus = false }
            : c with { L = steps, BlockSize = chunk ?? c.BlockSize };

    [Law]
    public bool Scan_equals_recurrent_for_any_block_size(MambaCase c)
    {
        // The scan multiplies the same factors as the loop, grouped differently: a few roundings per step (F64).
        var x = c.Inputs();
        var reference = Run(c, "recurrent", x);
        return Finite(reference["o"]) && Agree(Run(c, "scan", x), reference);
    }

    [Law(50)]
    public bool Scan_with_a_block_size_near_int_max_equals_recurrent(MambaCase c)
    {
        // (j + 1)·block_size overflowed int here once; a block longer than the sequence is the whole sequence.
        var x = c.Inputs();
        return Agree(Form.Call("scan", x, c.Parameters(int.MaxValue - (c.Seed % 3))), Run(c, "recurrent", x));
    }

    [Law]
    public bool Grouped_B_repeats_each_group_over_its_channels(MambaCase c)
    {
        // [B,G,N,L] with G = 1 equals the shared [B,N,L] form (and G = D per-channel projections, by the same indexing)
        var x = c.Inputs();
        if (x["B"].Rank != 3)
        {
            return true; // the law is about the shared form's two spellings
        }
        var grouped = new Dictionary<string, Tensor>(x)
        {
            ["B"] = x["B"].Reshape(c.B, 1, c.N, c.L),
            ["C"] = x["C"].Reshape(c.B, 1, c.N, c.L),
        };
        return Form.Variants.All(variant => TestTensors.Close(Run(c, variant, grouped)["o"], Run(c, variant, x)["o"], 0));
    }

    [Law]
    public bool Delta_bias_and_softplus_are_the_step_size_softplus_of_delta_plus_delta_bias_with_no_bias(MambaCase c)
    {
        // (delta, delta_bias, delta_softplus) = (softplus(delta + delta_bias), no bias, no softplus), and without
        // softplus (delta, delta_bias) = (delta + delta_bias, no bias): the form adds the bias before the softplus and
        // applies the softplus only when asked. The same Δ reaches the same arithmetic: bit for bit.
        var x = c.Inputs();
        x.Remove("delta_bias");
        var random = new Random(c.Seed + 2);
        var bias = TestTensors.Normal(random, 0.5, c.D);
        return s_softplusOrNot.All(softplus =>
        {
            // with softplus any delta will do; without it, a small bias keeps Δ of the case's sign (decay, not growth)
            Tensor delta = softplus ? TestTensors.Normal(random, 1, c.B, c.D, c.L) : x["delta"];
            Tensor b = softplus ? bias : new Tensor([c.D], bias.Data.Select(v => v / 100).ToArray());
            var step = delta.Clone();
            for (int i = 0; i < step.Length; i++)
            {
                double z = delta.Data[i] + b.Data[(i / Math.Max(c.L, 1)) % c.D];
                step.Data[i] = softplus ? StateSpaceMath.Softplus(z) : z;
            }
            var viaBias = new Dictionary<string, Tensor>(x) { ["delta"] = delta, ["delta_bias"] = b };
            var direct = new Dictionary<string, Tensor>(x) { ["delta"] = step };
            return Form.Variants.All(variant =>
            {
                var a = Form.Call(variant, viaBias, "delta_softplus=" + (softplus ? "true" : "false"));
                var e = Form.Call(variant, direct, "delta_softplus=false");
                return a["o"].Data.SequenceEqual(e["o"].Data) && a["final_state"].Data.SequenceEqual(e["final_state"].Data);
            });
        });
    }

    [Fact]
    public void A_group_count_not_dividing_the_channels_and_a_block_size_below_one_are_bad_input()
    {
        var u = Tensor.Zeros(1, 4, 3);
        var a = Tensor.Zeros(4, 2);
        var grouped = Tensor.Zeros(1, 3, 2, 3);
        var groups = Assert.Throws<InputException>(() =>
            Form.Call("recurrent", new Dictionary<string, Tensor> { ["u"] = u, ["delta"] = u, ["A"] = a, ["B"] = grouped, ["C"] = grouped }));
        Assert.Contains("G = 3", groups.Message, StringComparison.Ordinal);
        var shared = Tensor.Zeros(1, 2, 3);
        var block = Assert.Throws<InputException>(() =>
            Form.Call("scan", new Dictionary<string, Tensor> { ["u"] = u, ["delta"] = u, ["A"] = a, ["B"] = shared, ["C"] = shared }, "block_size=0"));
        Assert.Contains("block_size", block.Message, StringComparison.Ordinal);
    }
}
