using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Forms.Delta;

public sealed class KdaTests
{
    private static readonly string[] Names = ["q", "k", "v", "gk", "beta"];
    private static readonly string[] AllVariants = ["recurrent", "chunked"];

    /// <summary>KDA takes a headwise β only (as fla's chunk_kda): cases with per-value β are run without it.</summary>
    private static Arbitrary<DeltaCase> Cases { get; } =
        DeltaCase.Arbitrary.Generator.Select(c => c with { PerValueBeta = false }).ToArbitrary();

    private static Arbitrary<DeltaCase> StrongGates { get; } =
        DeltaCase.StrongGates.Generator.Select(c => c with { PerValueBeta = false }).ToArbitrary();

    internal static DeltaRunner Variant(string variant, DeltaCase c) => (x, s0, cu) =>
    {
        var options = new DeltaOptions { UseQkL2Norm = c.L2Norm, InitialState = s0, CuSeqlens = cu };
        return variant switch
        {
            "recurrent" => Kda.Recurrent(x["q"], x["k"], x["v"], x["gk"], x["beta"], options),
            "chunked" => Kda.Chunked(x["q"], x["k"], x["v"], x["gk"], x["beta"], c.Chunk, options),
            _ => throw new ArgumentOutOfRangeException(nameof(variant)),
        };
    };

    [Fact]
    public void Recurrent_equals_the_matrix_definition_with_the_decay_applied_first() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        Tensor gk = x["gk"];
        var expected = Textbook.DeltaFamily(x["q"], x["k"], x["v"], x["beta"], (b, t, h, d) => gk[b, t, h, d], c.L2Norm, c.InitialState(all));
        return DeltaLaws.Agree(Variant("recurrent", c)(x, c.InitialState(all), null), expected);
    }));

    [Fact]
    public void Chunked_equals_recurrent_for_any_chunk_size_and_strong_gates() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return DeltaLaws.Agree(Variant("chunked", c)(x, c.InitialState(all), null), Variant("recurrent", c)(x, c.InitialState(all), null));
    }));

    [Fact]
    public void With_gk_constant_over_K_it_is_the_gated_delta_rule() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, ["q", "k", "v", "g", "beta"]);
        Tensor g = x["g"];
        var gk = Tensor.Zeros(c.B, c.T, c.HV, c.K);
        for (int i = 0; i < gk.Length; i++)
        {
            gk.Data[i] = g.Data[i / c.K];
        }
        var kdaInputs = new Dictionary<string, Tensor>(x) { ["gk"] = gk };
        return AllVariants.All(v => DeltaLaws.Agree(Variant(v, c)(kdaInputs, c.InitialState(all), null),
            GatedDeltaRuleTests.Variant(v, c)(x, c.InitialState(all), null)));
    }));

    [Fact]
    public void Kda_is_rwkv7_with_a_equal_to_minus_beta_decayed_k_and_b_equal_to_k() => PropertyRuns.Check(Prop.ForAll(
        Cases.Generator.Select(c => c with { Group = 1, L2Norm = false }).ToArbitrary(), c =>
    {
        // (I − βkkᵀ) D S + βkvᵀ = D S + k (−β (exp(gk) ⊙ k))ᵀ S + (βk) vᵀ: the DPLR rule with a = −β exp(gk) ⊙ k, b = k,
        // keys βk, and the same decay.
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        var (a, keys) = (Tensor.Zeros(c.B, c.T, c.H, c.K), Tensor.Zeros(c.B, c.T, c.H, c.K));
        for (int i = 0; i < a.Length; i++)
        {
            double beta = x["beta"].Data[i / c.K];
            a.Data[i] = -beta * Math.Exp(x["gk"].Data[i]) * x["k"].Data[i];
            keys.Data[i] = beta * x["k"].Data[i];
        }
        var options = new Rwkv7Options { InitialState = c.InitialState(all) };
        DeltaResult kda = Variant("recurrent", c)(x, c.InitialState(all), null);
        return DeltaLaws.Agree(Rwkv7.Recurrent(x["q"], keys, x["v"], a, x["k"], x["gk"], options), kda)
            && DeltaLaws.Agree(Rwkv7.Chunked(x["q"], keys, x["v"], a, x["k"], x["gk"], c.Chunk, options), kda);
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
        return AllVariants.All(v => DeltaLaws.VarlenEqualsSeparateRuns(Variant(v, c), x, c.HV, c.K, c.V, c.Seed));
    }));

    [Fact]
    public void Every_variant_is_causal_and_keeps_batch_entries_independent() => PropertyRuns.Check(Prop.ForAll(Cases, c =>
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return AllVariants.All(v => DeltaLaws.Causal(Variant(v, c), x, c.InitialState(all), c.Seed)
            && DeltaLaws.BatchEntriesIndependent(Variant(v, c), x, c.InitialState(all)));
    }));

    [Fact]
    public void Per_value_beta_is_refused_as_fla_refuses_it()
    {
        var c = new DeltaCase(1, 3, 1, 1, 2, 2, 2, BetaRegime.Usual, 1, true, false, false, 5);
        var x = DeltaLaws.Pick(c.All(), Names);
        var error = Assert.Throws<InputException>(() => Kda.Recurrent(x["q"], x["k"], x["v"], x["gk"], x["beta"]));
        Assert.StartsWith("tensor 'beta': kda takes a headwise beta", error.Message, StringComparison.Ordinal);
    }
}
