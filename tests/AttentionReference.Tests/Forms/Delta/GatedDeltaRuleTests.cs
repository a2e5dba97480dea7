using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Delta;

public sealed class GatedDeltaRuleTests
{
    private static readonly string[] Names = ["q", "k", "v", "g", "beta"];
    private static readonly string[] AllVariants = ["recurrent", "chunked"];

    internal static DeltaRunner Variant(string variant, DeltaCase c) => (x, s0, cu) =>
    {
        var options = new DeltaOptions { UseQkL2Norm = c.L2Norm, InitialState = s0, CuSeqlens = cu };
        return variant switch
        {
            "recurrent" => GatedDeltaRule.Recurrent(x["q"], x["k"], x["v"], x["g"], x["beta"], options),
            "chunked" => GatedDeltaRule.Chunked(x["q"], x["k"], x["v"], x["g"], x["beta"], c.Chunk, options),
            _ => throw new ArgumentOutOfRangeException(nameof(variant)),
        };
    };

    [Fact]
    public void Recurrent_equals_the_matrix_definition() => PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        Tensor g = x["g"];
        var expected = Textbook.DeltaFamily(x["q"], x["k"], x["v"], x["beta"], (b, t, h, _) => g[b, t, h], c.L2Norm, c.InitialState(all));
        return DeltaLaws.Agree(Variant("recurrent", c)(x, c.InitialState(all), null), expected);
    }));

    // The generator's gates reach −20 per step (GateFloor = 20): a chunk of 17 such steps decays by e^−340, which
    // underflows nothing that matters because every decay is exp of a difference of log sums.
    [Fact]
    public void Chunked_equals_recurrent_for_any_chunk_size_and_strong_gates() => PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return DeltaLaws.Agree(Variant("chunked", c)(x, c.InitialState(all), null), Variant("recurrent", c)(x, c.InitialState(all), null));
    }));

    [Fact]
    public void With_g_zero_it_is_the_delta_rule() => PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        x["g"] = Tensor.Zeros(x["g"].ShapeArray());
        var options = c.Options(all);
        return DeltaLaws.Agree(Variant("recurrent", c)(x, c.InitialState(all), null), DeltaRule.Recurrent(x["q"], x["k"], x["v"], x["beta"], options))
            && DeltaLaws.Agree(Variant("chunked", c)(x, c.InitialState(all), null), DeltaRule.Chunked(x["q"], x["k"], x["v"], x["beta"], c.Chunk, options));
    }));

    // Log gates down to −20 per step: a chunk of 17 steps decays by up to e^−340 (≈ 1e-148). Decays are exp of
    // differences of log sums, never quotients of products, so nothing overflows and tiny factors are exact to rounding.
    [Fact]
    public void Chunked_equals_recurrent_with_log_gates_down_to_minus_20() => PropertyRuns.Check(Prop.ForAll(DeltaCase.StrongGates, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        DeltaResult chunked = Variant("chunked", c)(x, c.InitialState(all), null);
        return chunked.O.Data.All(double.IsFinite) && DeltaLaws.Agree(chunked, Variant("recurrent", c)(x, c.InitialState(all), null));
    }));

    [Fact]
    public void Every_variant_passes_state_between_split_runs() => PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return AllVariants.All(v => DeltaLaws.StatePassing(Variant(v, c), x, c.InitialState(all), c.Seed));
    }));

    [Fact]
    public void Every_variant_with_cu_seqlens_equals_separate_runs() => PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c =>
    {
        var x = DeltaLaws.Pick(c.All(), Names);
        return AllVariants.All(v => DeltaLaws.VarlenEqualsSeparateRuns(Variant(v, c), x, c.HV, c.K, c.V, c.Seed));
    }));

    [Fact]
    public void Every_variant_is_causal_and_keeps_batch_entries_independent() => PropertyRuns.Check(Prop.ForAll(DeltaCase.Arbitrary, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return AllVariants.All(v => DeltaLaws.Causal(Variant(v, c), x, c.InitialState(all), c.Seed)
            && DeltaLaws.BatchEntriesIndependent(Variant(v, c), x, c.InitialState(all)));
    }));
}
