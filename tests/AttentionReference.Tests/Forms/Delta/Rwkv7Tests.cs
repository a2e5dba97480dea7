using AttentionReference.Forms.Delta;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Delta;

public sealed class Rwkv7Tests
{
    private static readonly string[] Names = ["q", "k", "v", "a", "b", "w"];
    private static readonly string[] AllVariants = ["recurrent", "chunked"];
    private static Arbitrary<DeltaCase> Cases => DeltaCase.WithoutGva;
    private static Arbitrary<DeltaCase> StrongGates { get; } =
        DeltaCase.StrongGates.Generator.Select(c => c with { Group = 1 }).ToArbitrary();

    private static DeltaRunner Variant(string variant, DeltaCase c) => (x, s0, cu) =>
    {
        var options = new Rwkv7Options { InitialState = s0, CuSeqlens = cu };
        return variant switch
        {
            "recurrent" => Rwkv7.Recurrent(x["q"], x["k"], x["v"], x["a"], x["b"], x["w"], options),
            "chunked" => Rwkv7.Chunked(x["q"], x["k"], x["v"], x["a"], x["b"], x["w"], c.Chunk, options),
            _ => throw new ArgumentOutOfRangeException(nameof(variant)),
        };
    };

    [Fact]
    public void Recurrent_equals_the_dplr_matrix_definition() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        var expected = Textbook.Dplr(x["q"], x["k"], x["v"], x["a"], x["b"], x["w"], c.InitialState(all));
        return DeltaLaws.Agree(Variant("recurrent", c)(x, c.InitialState(all), null), expected);
    }));

    [Fact]
    public void Chunked_equals_recurrent_for_any_chunk_size_and_strong_gates() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return DeltaLaws.Agree(Variant("chunked", c)(x, c.InitialState(all), null), Variant("recurrent", c)(x, c.InitialState(all), null));
    }));

    // Log gates down to −20 per step: a chunk of 17 steps decays by up to e^−340 (≈ 1e-148). Decays are exp of
    // differences of log sums, never quotients of products, so nothing overflows and tiny factors are exact to rounding.
    [Fact]
    public void Chunked_equals_recurrent_with_log_gates_down_to_minus_20() => PropertyRuns.Check(Prop.ForAll(StrongGates, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        DeltaResult chunked = Variant("chunked", c)(x, c.InitialState(all), null);
        return chunked.O.Data.All(double.IsFinite) && DeltaLaws.Agree(chunked, Variant("recurrent", c)(x, c.InitialState(all), null));
    }));

    [Fact]
    public void Every_variant_passes_state_between_split_runs() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return AllVariants.All(v => DeltaLaws.StatePassing(Variant(v, c), x, c.InitialState(all), c.Seed));
    }));

    [Fact]
    public void Every_variant_with_cu_seqlens_equals_separate_runs() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var x = DeltaLaws.Pick(c.All(), Names);
        return AllVariants.All(v => DeltaLaws.VarlenEqualsSeparateRuns(Variant(v, c), x, c.H, c.K, c.V, c.Seed));
    }));

    [Fact]
    public void Every_variant_is_causal_and_keeps_batch_entries_independent() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return AllVariants.All(v => DeltaLaws.Causal(Variant(v, c), x, c.InitialState(all), c.Seed)
            && DeltaLaws.BatchEntriesIndependent(Variant(v, c), x, c.InitialState(all)));
    }));
}
