using AttentionReference.Forms;
using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>delta_rule's laws: the family's (<see cref="DeltaRuleFormLaws"/>), with no decay, and its parallel variant's.</summary>
public sealed class DeltaRuleTests : DeltaRuleFormLaws
{
    private protected override IForm Form { get; } = new DeltaRule();

    private protected override string[] Names { get; } = ["q", "k", "v", "beta"];

    private protected override bool HasDecay => false;

    private protected override Func<int, int, int, int, double> DecayOf(IReadOnlyDictionary<string, Tensor> x) => (_, _, _, _) => 0;

    [Law]
    public bool Parallel_equals_recurrent(DeltaCase c)
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return DeltaLaws.Agree(Variant("parallel", c)(x, c.InitialState(all), null), Variant("recurrent", c)(x, c.InitialState(all), null));
    }

    // β up to 1.99 with unit keys: I − βkkᵀ has the eigenvalue 1 − β ≈ −0.99, so the state neither grows nor decays
    // along k, and T = (I + A)⁻¹ diag(β) has entries that alternate in sign. Observed errors stay below 2e-15 for
    // T ≤ 17 and C ≤ 20 (A's off-diagonal entries are β·k_r·k_j with |k_r·k_j| ≤ 1 and mostly far below it for random
    // keys), so the usual bound holds here too.
    [Law]
    public bool Near_the_stability_edge_chunked_and_parallel_equal_recurrent(DeltaCase c)
    {
        c = c.NearTwo();
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        DeltaOutputs recurrent = Variant("recurrent", c)(x, c.InitialState(all), null);
        return DeltaLaws.Agree(Variant("chunked", c)(x, c.InitialState(all), null), recurrent)
            && DeltaLaws.Agree(Variant("parallel", c)(x, c.InitialState(all), null), recurrent);
    }

    [Law]
    public bool Beta_zero_leaves_the_state_unchanged_and_reads_it(DeltaCase c)
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        x["beta"] = Tensor.Zeros(x["beta"].ShapeArray());
        Tensor s0 = all["initial_state"];
        return Form.Variants.All(v =>
        {
            DeltaOutputs result = Variant(v, c)(x, s0, null);
            // o_t = scale · S_0ᵀ q_t (q normalised if asked), final_state = S_0 exactly.
            var expected = Textbook.DeltaFamily(x["q"], x["k"], x["v"], x["beta"], (_, _, _, _) => 0, c.L2Norm, s0);
            return result.FinalState.Data.SequenceEqual(s0.Data) && TestTensors.Close(result.O, expected.O, DeltaLaws.SameMathInDouble);
        });
    }

    [Fact]
    public void Bad_inputs_name_the_tensor()
    {
        var c = new DeltaCase(1, 4, 2, 1, 3, 2, 2, BetaRegime.Usual, 1, false, false, false, 1);
        var x = DeltaLaws.Pick(c.All(), Names);
        InputException Error(string variant, Dictionary<string, Tensor> inputs, params string[] parameters) =>
            Assert.Throws<InputException>(() => Form.Call(variant, inputs, parameters));
        Assert.Contains("tensor 'beta'", Error("recurrent", new(x) { ["beta"] = Tensor.Zeros(1, 4, 3) }).Message, StringComparison.Ordinal);
        Assert.Contains("tensor 'initial_state'", Error("recurrent", new(x) { ["initial_state"] = Tensor.Zeros(1, 2, 2, 3) }).Message, StringComparison.Ordinal);
        Assert.Contains("chunk_size", Error("chunked", x, "chunk_size=0").Message, StringComparison.Ordinal);
        Assert.Contains("GVA", Error("recurrent", new(x) { ["v"] = Tensor.Zeros(1, 4, 3, 2), ["beta"] = Tensor.Zeros(1, 4, 3) }).Message, StringComparison.Ordinal);
    }
}
