using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Forms.Common;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>
/// The laws of gla, simple_gla, retention, hgrn2, rwkv6, mlstm and linear (no gate): the stateful-form laws, and the edge
/// cases of the backward pass that engines get wrong (issue #19) and the random cases reach only by chance: one step, a
/// sequence shorter than one chunk, a last partial chunk, empty varlen sequences, log gates of −20 at every step.
/// </summary>
public abstract class GatedLinearFormLaws : StatefulFormLaws
{
    private static readonly string[] s_otherVariants = ["parallel", "chunked"], s_logGates = ["gk", "g", "gv"];

    [Law(20)]
    public bool Gradients_at_one_step(StatefulCase c) =>
        Gradients_of_the_definition_equal_central_finite_differences(c with { T = 1 })
        && Backward_of_every_variant_equals_the_backward_of_the_definition(c with { T = 1 });

    [Law(20)]
    public bool Backward_of_a_sequence_shorter_than_one_chunk(StatefulCase c)
    {
        int t = Math.Max(c.T, 1);
        return Backward_of_every_variant_equals_the_backward_of_the_definition(
            c with { T = t, Variant = "chunked", ChunkSize = t + 1 + c.ChunkSize % 5 });
    }

    [Law(20)]
    public bool Backward_with_a_last_partial_chunk(StatefulCase c)
    {
        int chunk = 2 + c.ChunkSize % 7;
        int t = chunk * (1 + c.T % 4) + 1 + c.Split % (chunk - 1); // whole chunks, then 1 … C − 1 steps
        var edge = c with { T = t, Variant = "chunked", ChunkSize = chunk };
        return Backward_of_every_variant_equals_the_backward_of_the_definition(edge)
            && Backward_in_two_parts_with_the_state_gradient_passed_back_equals_one_run(edge);
    }

    [Law(20)]
    public bool Empty_varlen_sequences_pass_the_state_gradient_through_and_change_nothing_else(StatefulCase c)
    {
        var random = new Random(c.Seed);
        int cut = c.Split % (c.T + 1);
        // Five sequences, the first, the middle and the last empty, against the same call without them.
        int[] cu = [0, 0, cut, cut, c.T, c.T], kept = [1, 3];
        var packed = WithStates(c, random, Inputs(c, random, 1, c.T), cu.Length - 1);
        packed["cu_seqlens"] = CuSeqlens(cu);
        packed = WithCotangents(c, random, packed);
        var compact = new Dictionary<string, Tensor>(packed) { ["cu_seqlens"] = CuSeqlens([0, cut, c.T]) };
        foreach (string name in packed.Keys.Where(k => k.StartsWith("initial_", StringComparison.Ordinal) || k.StartsWith("dfinal_", StringComparison.Ordinal)))
        {
            compact[name] = Rows(packed[name], kept);
        }
        var withEmpty = Gradients(c.Variant, packed, c);
        var without = Gradients(c.Variant, compact, c);
        // The same arithmetic on the same numbers for every non-empty sequence, and nothing added by an empty one: bit for bit.
        return withEmpty.All(p => !p.Key.StartsWith("dinitial_", StringComparison.Ordinal)
            ? p.Value.Data.SequenceEqual(without[p.Key].Data)
            : Rows(p.Value, kept).Data.SequenceEqual(without[p.Key].Data)
                && Rows(p.Value, [0, 2, 4]).Data.SequenceEqual(Rows(packed["dfinal_" + p.Key["dinitial_".Length..]], [0, 2, 4]).Data));
    }

    [Law(20)]
    public bool Gradients_stay_finite_and_agree_with_log_gates_of_minus_20_at_every_step(StatefulCase c)
    {
        // 60 steps of −20 sum to −1200: exp(+1200) = ∞, so a decay factorised as exp(Γ_t)·exp(−Γ_j) gives 0·∞ = NaN.
        var random = new Random(c.Seed);
        var inputs = WithCotangents(c, random, WithStates(c, random, AtLogGate(c, Inputs(c, random, c.B, 60), -20), c.B));
        var expected = Gradients(((Form)Form).Contract.Definition, inputs, c);
        return expected.Values.All(g => g.Data.All(double.IsFinite))
            && s_otherVariants.All(variant =>
                Gradients(variant, inputs, c).All(p => p.Value.Data.All(double.IsFinite) && GradientClose(c, p.Key, p.Value, expected[p.Key])));
    }

    /// <summary>
    /// Every log gate (gk, g, gv) at <paramref name="logGate"/>; retention's decays γ = exp(logGate). A form whose gates
    /// have other names or enter through an activation (rwkv6's w, mlstm's forget gate) says how it sets them.
    /// </summary>
    protected virtual Dictionary<string, Tensor> AtLogGate(StatefulCase c, Dictionary<string, Tensor> inputs, double logGate)
    {
        foreach (string name in s_logGates.Where(inputs.ContainsKey))
        {
            Array.Fill(inputs[name].Data, logGate);
        }
        if (Form.Inputs.Any(s => s.Name == "gamma"))
        {
            int heads = inputs["q"].Dim(2);
            inputs["gamma"] = new Tensor([heads], Enumerable.Repeat(Math.Exp(logGate), heads).ToArray());
        }
        return inputs;
    }

    /// <summary>The inputs with a random cotangent for every output of the form.</summary>
    private Dictionary<string, Tensor> WithCotangents(StatefulCase c, Random random, Dictionary<string, Tensor> inputs)
    {
        foreach (var (name, output) in Run(((Form)Form).Contract.Definition, inputs, c))
        {
            inputs["d" + name] = TestTensors.Normal(random, 1, output.ShapeArray());
        }
        return inputs;
    }

    private static Tensor CuSeqlens(int[] cu) => new([cu.Length], cu.Select(x => (double)x).ToArray(), DType.I64);

    /// <summary>The rows <paramref name="rows"/> of <paramref name="x"/> along its first axis.</summary>
    private static Tensor Rows(Tensor x, int[] rows)
    {
        int[] shape = x.ShapeArray();
        int inner = shape.Skip(1).Aggregate(1, (a, d) => a * d);
        shape[0] = rows.Length;
        return new Tensor(shape, rows.SelectMany(r => x.Data.Skip(r * inner).Take(inner)).ToArray(), x.DType);
    }
}
