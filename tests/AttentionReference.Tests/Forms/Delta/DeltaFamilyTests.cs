using AttentionReference.Forms;
using AttentionReference.Forms.Delta;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Delta;

/// <summary>
/// The laws every form of the delta-rule family satisfies in every variant, written once and run once per form by a
/// derived class (<see cref="DeltaRuleTests"/>, <see cref="GatedDeltaRuleTests"/>, <see cref="KdaTests"/>,
/// <see cref="Rwkv7Tests"/>), each form called through its contract.
/// </summary>
public abstract partial class DeltaFormLaws
{
    /// <summary>The form under test.</summary>
    private protected abstract IForm Form { get; }

    /// <summary>The tensors of a case's full set (<see cref="DeltaCase.All"/>) the form reads, as fla names them.</summary>
    private protected abstract string[] Names { get; }

    /// <summary>The case as the form takes it (kda: a headwise β; rwkv7: no GVA).</summary>
    private protected virtual DeltaCase Fit(DeltaCase c) => c;

    /// <summary>Whether the form reads a log decay (delta_rule does not).</summary>
    private protected virtual bool HasDecay => true;

    private protected DeltaRunner Variant(string variant, DeltaCase c) => DeltaLaws.Runner(Form, variant, c);

    [Law]
    public bool Chunked_equals_recurrent_for_any_chunk_size(DeltaCase c)
    {
        c = Fit(c);
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return DeltaLaws.Agree(Variant("chunked", c)(x, c.InitialState(all), null), Variant("recurrent", c)(x, c.InitialState(all), null));
    }

    // Log gates down to −20 per step: a chunk of 17 steps decays by up to e^−340 (≈ 1e-148). Decays are exp of
    // differences of log sums, never quotients of products, so nothing overflows and tiny factors are exact to rounding.
    [Law]
    public bool Chunked_equals_recurrent_with_log_gates_down_to_minus_20(DeltaCase c)
    {
        if (!HasDecay)
        {
            return true;
        }
        c = Fit(c.StrongGates());
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        DeltaOutputs chunked = Variant("chunked", c)(x, c.InitialState(all), null);
        return chunked.O.Data.All(double.IsFinite) && DeltaLaws.Agree(chunked, Variant("recurrent", c)(x, c.InitialState(all), null));
    }

    [Law]
    public bool Every_variant_passes_state_between_split_runs(DeltaCase c)
    {
        c = Fit(c);
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return Form.Variants.All(v => DeltaLaws.StatePassing(Variant(v, c), x, c.InitialState(all), c.Seed));
    }

    [Law]
    public bool Every_variant_with_cu_seqlens_equals_separate_runs(DeltaCase c)
    {
        c = Fit(c);
        var x = DeltaLaws.Pick(c.All(), Names);
        return Form.Variants.All(v => DeltaLaws.VarlenEqualsSeparateRuns(Variant(v, c), x, c.HV, c.K, c.V, c.Seed));
    }

    [Law]
    public bool Every_variant_is_causal_and_keeps_batch_entries_independent(DeltaCase c)
    {
        c = Fit(c);
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        return Form.Variants.All(v => DeltaLaws.Causal(Variant(v, c), x, c.InitialState(all), c.Seed)
            && DeltaLaws.BatchEntriesIndependent(Variant(v, c), x, c.InitialState(all)));
    }
}

/// <summary>
/// The laws of the forms built on the delta rule's step (delta_rule, gated_delta_rule, kda): the recurrent variant is the
/// matrix definition with the form's log decay, value heads read q/k heads in groups (GVA), and the in-kernel L2 norm.
/// </summary>
public abstract class DeltaRuleFormLaws : DeltaFormLaws
{
    /// <summary>γ(b, t, hv, d), the log decay the form applies to key channel d, from the case's tensors.</summary>
    private protected abstract Func<int, int, int, int, double> DecayOf(IReadOnlyDictionary<string, Tensor> x);

    [Law]
    public bool Recurrent_equals_the_matrix_definition_with_the_decay_applied_first(DeltaCase c)
    {
        c = Fit(c);
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        var expected = Textbook.DeltaFamily(x["q"], x["k"], x["v"], x["beta"], DecayOf(x), c.L2Norm, c.InitialState(all));
        return DeltaLaws.Agree(Variant("recurrent", c)(x, c.InitialState(all), null), expected);
    }

    [Law]
    public bool Gva_equals_mha_with_repeated_query_and_key_heads(DeltaCase c)
    {
        c = Fit(c);
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        var repeated = new Dictionary<string, Tensor>(x) { ["q"] = RepeatHeads(x["q"], c.Group), ["k"] = RepeatHeads(x["k"], c.Group) };
        // Identical arithmetic on identical numbers: bit for bit.
        return Form.Variants.All(v => DeltaLaws.Identical(Variant(v, c)(x, c.InitialState(all), null), Variant(v, c)(repeated, c.InitialState(all), null)));
    }

    [Law]
    public bool In_kernel_l2_norm_equals_normalising_the_inputs_first(DeltaCase c)
    {
        c = Fit(c);
        var all = c.All();
        var x = DeltaLaws.Pick(all, Names);
        var normalised = new Dictionary<string, Tensor>(x) { ["q"] = L2Normalised(x["q"]), ["k"] = L2Normalised(x["k"]) };
        var inKernel = c with { L2Norm = true };
        var outside = c with { L2Norm = false };
        return Form.Variants.All(v => DeltaLaws.Identical(Variant(v, inKernel)(x, c.InitialState(all), null), Variant(v, outside)(normalised, c.InitialState(all), null)));
    }

    /// <summary>[B,T,H,D] with each head repeated <paramref name="group"/> times: [B,T,H·group,D].</summary>
    internal static Tensor RepeatHeads(Tensor x, int group)
    {
        int[] shape = x.ShapeArray();
        var repeated = Tensor.Zeros(shape[0], shape[1], shape[2] * group, shape[3]);
        for (int b = 0; b < shape[0]; b++)
        {
            for (int t = 0; t < shape[1]; t++)
            {
                for (int h = 0; h < shape[2] * group; h++)
                {
                    for (int d = 0; d < shape[3]; d++)
                    {
                        repeated[b, t, h, d] = x[b, t, h / group, d];
                    }
                }
            }
        }
        return repeated;
    }

    /// <summary>Every row (last axis) divided by √(Σx² + ε), fla's l2norm.</summary>
    internal static Tensor L2Normalised(Tensor x)
    {
        Tensor y = x.Clone();
        int width = x.Dim(x.Rank - 1);
        for (int row = 0; row < x.Length / width; row++)
        {
            QkL2Norm.Normalise(y.Data.AsSpan(row * width, width));
        }
        return y;
    }
}

/// <summary>The reductions between the forms of the family (FORMS.md), each in every variant the two forms share.</summary>
public sealed class DeltaReductionTests
{
    private static readonly string[] s_shared = ["recurrent", "chunked"];

    private static DeltaOutputs Run(IForm form, string variant, DeltaCase c, IReadOnlyDictionary<string, Tensor> x, Tensor? s0) =>
        DeltaLaws.Runner(form, variant, c)(x, s0, null);

    [Law]
    public bool Gated_delta_rule_with_g_zero_is_the_delta_rule(DeltaCase c)
    {
        var all = c.All();
        var x = DeltaLaws.Pick(all, "q", "k", "v", "g", "beta");
        x["g"] = Tensor.Zeros(x["g"].ShapeArray());
        return s_shared.All(v =>
            DeltaLaws.Agree(Run(new GatedDeltaRule(), v, c, x, c.InitialState(all)), Run(new DeltaRule(), v, c, DeltaLaws.Pick(x, "q", "k", "v", "beta"), c.InitialState(all))));
    }

    [Law]
    public bool Kda_with_gk_constant_over_K_is_the_gated_delta_rule(DeltaCase c)
    {
        c = c with { PerValueBeta = false }; // kda takes a headwise β only
        var all = c.All();
        var x = DeltaLaws.Pick(all, "q", "k", "v", "g", "beta");
        Tensor g = x["g"];
        var gk = Tensor.Zeros(c.B, c.T, c.HV, c.K);
        for (int i = 0; i < gk.Length; i++)
        {
            gk.Data[i] = g.Data[i / c.K];
        }
        var kdaInputs = new Dictionary<string, Tensor>(x) { ["gk"] = gk };
        kdaInputs.Remove("g");
        return s_shared.All(v =>
            DeltaLaws.Agree(Run(new Kda(), v, c, kdaInputs, c.InitialState(all)), Run(new GatedDeltaRule(), v, c, x, c.InitialState(all))));
    }

    [Law(50)]
    public bool Gated_delta_rule_with_g_zero_has_the_delta_rules_gradients(DeltaCase c)
    {
        var x = WithCotangents(c, new DeltaRule(), DeltaLaws.Pick(c.All(), "q", "k", "v", "beta"));
        var gated = new Dictionary<string, Tensor>(x) { ["g"] = Tensor.Zeros(c.B, c.T, c.HV) };
        return s_shared.All(v =>
        {
            var expected = DeltaLaws.Gradients(new DeltaRule(), v, c, x);
            var actual = DeltaLaws.Gradients(new GatedDeltaRule(), v, c, gated);
            // dg is the gradient of a decay the delta rule does not have.
            return DeltaLaws.SameGradients(actual.Where(p => p.Key != "dg").ToDictionary(), expected);
        });
    }

    [Law(50)]
    public bool Kda_with_gk_constant_over_K_has_the_gated_delta_rules_gradients_and_dgk_summed_over_K_is_dg(DeltaCase c)
    {
        c = c with { PerValueBeta = false }; // kda takes a headwise β only
        var gated = WithCotangents(c, new GatedDeltaRule(), DeltaLaws.Pick(c.All(), "q", "k", "v", "g", "beta"));
        var kda = new Dictionary<string, Tensor>(gated) { ["gk"] = OnEveryKey(gated["g"], c.K) };
        kda.Remove("g");
        return s_shared.All(v =>
        {
            var expected = DeltaLaws.Gradients(new GatedDeltaRule(), v, c, gated);
            var actual = DeltaLaws.Gradients(new Kda(), v, c, kda);
            Tensor dgk = actual["dgk"], summed = Tensor.Zeros(c.B, c.T, c.HV);
            for (int i = 0; i < dgk.Length; i++)
            {
                summed.Data[i / c.K] += dgk.Data[i];
            }
            return DeltaLaws.SameGradients(actual.Where(p => p.Key != "dgk").Append(new("dg", summed)).ToDictionary(), expected);
        });
    }

    /// <summary>The case's initial state (if any) and random cotangents of <paramref name="form"/>'s outputs added to <paramref name="x"/>.</summary>
    private static Dictionary<string, Tensor> WithCotangents(DeltaCase c, IForm form, Dictionary<string, Tensor> x)
    {
        if (c.WithInitialState)
        {
            x["initial_state"] = c.All()["initial_state"];
        }
        var outputs = form.Call("recurrent", x, DeltaLaws.Parameters(form, c));
        return x.Concat(DeltaLaws.Cotangents(new Random(c.Seed), outputs, withoutState: c.Seed % 4 == 0)).ToDictionary();
    }

    /// <summary>gk [B,T,HV,K] with g_t on every key channel.</summary>
    private static Tensor OnEveryKey(Tensor g, int width)
    {
        var gk = Tensor.Zeros([.. g.ShapeArray(), width]);
        for (int i = 0; i < gk.Length; i++)
        {
            gk.Data[i] = g.Data[i / width];
        }
        return gk;
    }

    [Law]
    public bool Kda_is_rwkv7_with_a_equal_to_minus_beta_decayed_k_and_b_equal_to_k(DeltaCase c)
    {
        // (I − βkkᵀ) D S + βkvᵀ = D S + k (−β (exp(gk) ⊙ k))ᵀ S + (βk) vᵀ: the DPLR rule with a = −β exp(gk) ⊙ k, b = k,
        // keys βk, and the same decay.
        c = c with { PerValueBeta = false, Group = 1, L2Norm = false };
        var all = c.All();
        var x = DeltaLaws.Pick(all, "q", "k", "v", "gk", "beta");
        var (a, keys) = (Tensor.Zeros(c.B, c.T, c.H, c.K), Tensor.Zeros(c.B, c.T, c.H, c.K));
        for (int i = 0; i < a.Length; i++)
        {
            double beta = x["beta"].Data[i / c.K];
            a.Data[i] = -beta * Math.Exp(x["gk"].Data[i]) * x["k"].Data[i];
            keys.Data[i] = beta * x["k"].Data[i];
        }
        var rwkv7Inputs = new Dictionary<string, Tensor> { ["q"] = x["q"], ["k"] = keys, ["v"] = x["v"], ["a"] = a, ["b"] = x["k"], ["gk"] = x["gk"] };
        DeltaOutputs kda = Run(new Kda(), "recurrent", c, x, c.InitialState(all));
        return s_shared.All(v => DeltaLaws.Agree(Run(new Rwkv7(), v, c, rwkv7Inputs, c.InitialState(all)), kda));
    }

    [Law(50)]
    public bool Kdas_gradients_are_rwkv7s_taken_back_through_a_equal_to_minus_beta_decayed_k_and_b_equal_to_k(DeltaCase c)
    {
        // rwkv7 on k' = β k, a = −β e ⊙ k, b = k (e = exp(gk); q, v, gk and the states as they are) is kda, so by the chain
        // rule  dk = β dk' − β e ⊙ da + db,   dβ = Σ_d k ⊙ (dk' − e ⊙ da),   dgk = dgk' + a ⊙ da  (∂a/∂gk = a).
        c = c with { PerValueBeta = false, Group = 1, L2Norm = false };
        var x = WithCotangents(c, new Kda(), DeltaLaws.Pick(c.All(), "q", "k", "v", "gk", "beta"));
        Tensor k = x["k"], gk = x["gk"], β = x["beta"];
        var (a, keys) = (Tensor.Zeros(c.B, c.T, c.H, c.K), Tensor.Zeros(c.B, c.T, c.H, c.K));
        for (int i = 0; i < a.Length; i++)
        {
            a.Data[i] = -β.Data[i / c.K] * Math.Exp(gk.Data[i]) * k.Data[i];
            keys.Data[i] = β.Data[i / c.K] * k.Data[i];
        }
        var rwkv7Inputs = new Dictionary<string, Tensor>(x) { ["k"] = keys, ["a"] = a, ["b"] = k };
        rwkv7Inputs.Remove("beta");
        return s_shared.All(v =>
        {
            var expected = DeltaLaws.Gradients(new Kda(), v, c, x);
            var rwkv7 = DeltaLaws.Gradients(new Rwkv7(), v, c, rwkv7Inputs);
            Tensor dk = Tensor.Zeros(c.B, c.T, c.H, c.K), dgk = Tensor.Zeros(c.B, c.T, c.H, c.K), dβ = Tensor.Zeros(c.B, c.T, c.H);
            double[] dkPrime = rwkv7["dk"].Data, da = rwkv7["da"].Data, db = rwkv7["db"].Data, dgkPrime = rwkv7["dgk"].Data;
            for (int i = 0; i < dk.Length; i++)
            {
                double βi = β.Data[i / c.K], e = Math.Exp(gk.Data[i]);
                dk.Data[i] = βi * dkPrime[i] - βi * e * da[i] + db[i];
                dβ.Data[i / c.K] += k.Data[i] * (dkPrime[i] - e * da[i]);
                dgk.Data[i] = dgkPrime[i] + a.Data[i] * da[i];
            }
            var actual = rwkv7.Where(p => p.Key is not ("da" or "db")).ToDictionary();
            (actual["dk"], actual["dgk"], actual["dbeta"]) = (dk, dgk, dβ);
            return DeltaLaws.SameGradients(actual, expected);
        });
    }
}
