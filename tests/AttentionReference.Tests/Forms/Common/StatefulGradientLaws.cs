using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Common;

/// <summary>The gradient laws of every stateful form that has a backward pass (issue #19).</summary>
public abstract partial class StatefulFormLaws
{
    private bool HasGradients => Form is Form { HasGradients: true };

    [Law(50)]
    public bool Gradients_of_the_definition_equal_central_finite_differences(StatefulCase c)
    {
        if (!HasGradients)
        {
            return true;
        }
        var random = new Random(c.Seed);
        var inputs = WithStates(c, random, Inputs(c, random, c.B, Math.Min(c.T, 12)), c.B);
        string definition = ((Form)Form).Contract.Definition;
        var outputs = Run(definition, inputs, c);
        var cotangents = outputs.ToDictionary(p => "d" + p.Key, p => TestTensors.Normal(random, 1, p.Value.ShapeArray()));
        var gradients = Gradients(definition, new Dictionary<string, Tensor>(inputs).Concat(cotangents).ToDictionary(), c);
        var (_, magnitude) = FiniteDifferences.Pairing(cotangents, outputs);
        foreach (var (name, x) in inputs.Where(p => ((Form)Form).Contract.Gradients.Any(g => g.Name == "d" + p.Key)))
        {
            Tensor u = TestTensors.Normal(random, 1, x.ShapeArray());
            double L(double epsilon) => FiniteDifferences.Pairing(cotangents,
                Run(definition, new Dictionary<string, Tensor>(inputs) { [name] = FiniteDifferences.Moved(x, u, epsilon) }, c)).Value;
            double finite = (L(FiniteDifferences.Step) - L(-FiniteDifferences.Step)) / (2 * FiniteDifferences.Step);
            double analytic = FiniteDifferences.Dot(gradients["d" + name], u);
            if (!(Math.Abs(finite - analytic) <= FiniteDifferenceTolerance(magnitude, analytic)))
            {
                throw new InvalidOperationException($"d{name}: finite difference {finite:R}, gradient {analytic:R}, magnitude {magnitude:E2}");
            }
        }
        return true;
    }

    // The backward passes of two variants compute the same sums in double in other orders, over the terms of the
    // forward and of the reverse-time recurrence (twice the forward's): 1e-11 relative to each gradient's norm leaves the
    // forward laws' margin of about 100 on sums of about twice the length.
    protected const double SameGradientsInDouble = 1e-11;

    [Law(50)]
    public bool Backward_of_every_variant_equals_the_backward_of_the_definition(StatefulCase c)
    {
        if (!HasGradients || !SupportsBackward(c.Variant))
        {
            return true;
        }
        var random = new Random(c.Seed);
        var inputs = WithCotangents(c, random, WithStates(c, random, Inputs(c, random, c.B, c.T), c.B));
        var expected = Gradients(((Form)Form).Contract.Definition, inputs, c);
        var actual = Gradients(c.Variant, inputs, c);
        return expected.All(p => GradientClose(c, p.Key, actual[p.Key], p.Value));
    }

    [Law(50)]
    public bool Backward_in_two_parts_with_the_state_gradient_passed_back_equals_one_run(StatefulCase c)
    {
        if (!HasGradients || !SupportsBackward(c.Variant) || !IsCausal(c) || !PassesAllItReadsOn(c))
        {
            return true;
        }
        var random = new Random(c.Seed);
        var inputs = WithCotangents(c, random, WithStates(c, random, Inputs(c, random, c.B, c.T), c.B));
        int t = c.Split % (c.T + 1);
        var whole = Gradients(c.Variant, inputs, c);
        // Forward over the first part to reach the second part's initial state, backward over the second part from the
        // given dfinal_state, then backward over the first part from the second part's dinitial_state.
        var firstInputs = SliceTime(inputs, 0, t);
        var secondInputs = SliceTime(inputs, t, c.T);
        foreach (var (name, state) in FinalStates(Run(c.Variant, Forward(firstInputs), c)))
        {
            secondInputs["initial_" + name["final_".Length..]] = state;
        }
        var second = Gradients(c.Variant, secondInputs, c);
        foreach (string name in FinalStates(Run(c.Variant, Forward(firstInputs), c)).Select(p => p.Key))
        {
            firstInputs["d" + name] = second["dinitial_" + name["final_".Length..]];
        }
        var first = Gradients(c.Variant, firstInputs, c);
        return whole.All(p =>
        {
            Tensor joined = HasTimeAxis(p.Key[1..]) ? ConcatTime(first[p.Key], second[p.Key])
                : p.Key.StartsWith("dinitial_", StringComparison.Ordinal) ? first[p.Key]
                : Sum(first[p.Key], second[p.Key]); // a parameter without time axis collects its gradient from both parts
            return GradientClose(c, p.Key, joined, p.Value);
        });
    }

    [Law(50)]
    public bool Backward_varlen_equals_separate_runs(StatefulCase c)
    {
        if (!HasGradients || !SupportsBackward(c.Variant))
        {
            return true;
        }
        var random = new Random(c.Seed);
        int[] cu = Boundaries(random, c.T);
        int n = cu.Length - 1;
        var packed = WithStates(c, random, Inputs(c, random, 1, c.T), n);
        packed["cu_seqlens"] = new Tensor([n + 1], cu.Select(x => (double)x).ToArray(), DType.I64);
        packed = WithCotangents(c, random, packed);
        var together = Gradients(c.Variant, packed, c);
        var summed = new Dictionary<string, Tensor>();
        for (int s = 0; s < n; s++)
        {
            var alone = SliceTime(packed, cu[s], cu[s + 1]);
            alone.Remove("cu_seqlens");
            foreach (string name in alone.Keys.Where(k => k.StartsWith("initial_", StringComparison.Ordinal) || k.StartsWith("dfinal_", StringComparison.Ordinal)).ToArray())
            {
                alone[name] = Row(packed[name], s);
            }
            var separate = Gradients(c.Variant, alone, c);
            foreach (var (name, gradient) in separate)
            {
                // Each sequence's own gradients come from the same arithmetic either way: bit for bit.
                bool same = HasTimeAxis(name[1..]) ? SliceTime(together[name], cu[s], cu[s + 1]).Data.SequenceEqual(gradient.Data)
                    : name.StartsWith("dinitial_", StringComparison.Ordinal) ? Row(together[name], s).Data.SequenceEqual(gradient.Data)
                    : true;
                if (!same)
                {
                    return false;
                }
                if (!HasTimeAxis(name[1..]) && !name.StartsWith("dinitial_", StringComparison.Ordinal))
                {
                    summed[name] = summed.TryGetValue(name, out Tensor? sum) ? Sum(sum, gradient) : gradient;
                }
            }
        }
        // A parameter shared by the sequences collects its gradient from each; summed in another order.
        return summed.All(p => GradientClose(c, p.Key, p.Value, together[p.Key]));
    }

    /// <summary>
    /// The bound on |finite difference − ⟨dX, u⟩|: <see cref="FiniteDifferences.Tolerance"/>, which takes |L‴| of the order
    /// of the magnitude M; a form whose loss is steeper than that in some cases (a normalised output just past its
    /// clamp) widens it, saying by how much it was seen to be.
    /// </summary>
    protected virtual double FiniteDifferenceTolerance(double magnitude, double analytic) => FiniteDifferences.Tolerance(magnitude, analytic);

    /// <summary>
    /// Whether the gradient <paramref name="name"/> of two backward passes agrees along different paths: within
    /// <see cref="SameGradientsInDouble"/> relative to its norm, unless a form holds a gradient to another yardstick (one
    /// that cancels to nearly zero by an invariance of the form, as a normalised output's dq along φ(q), is rounded
    /// relative to the size of its terms, not to its own).
    /// </summary>
    protected virtual bool GradientClose(StatefulCase c, string name, Tensor actual, Tensor expected) =>
        TestTensors.Close(actual, expected, SameGradientsInDouble);

    /// <summary>Whether the form's backward pass covers <paramref name="variant"/> (each variant gains one as it is written).</summary>
    private bool SupportsBackward(string variant)
    {
        try
        {
            var probe = Inputs(new StatefulCase(1, 1, 1, 1, 1, GateRegime.Mild, variant, 1, 0, false, 1), new Random(1), 1, 1);
            Gradients(variant, probe, new StatefulCase(1, 1, 1, 1, 1, GateRegime.Mild, variant, 1, 0, false, 1));
            return true;
        }
        catch (InputException e) when (e.Unsupported)
        {
            return false;
        }
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

    /// <summary>The inputs without the cotangents (a forward run's inputs).</summary>
    private Dictionary<string, Tensor> Forward(IReadOnlyDictionary<string, Tensor> inputs) =>
        inputs.Where(p => !((Form)Form).Contract.Cotangents.Any(t => t.Name == p.Key)).ToDictionary();

    private static Tensor Sum(Tensor a, Tensor b) => new(a.ShapeArray(), a.Data.Zip(b.Data, (x, y) => x + y).ToArray());

    /// <summary>The backward pass of <paramref name="variant"/> on inputs that carry the cotangents.</summary>
    protected IReadOnlyDictionary<string, Tensor> Gradients(string variant, IReadOnlyDictionary<string, Tensor> inputs, StatefulCase c)
    {
        var form = (Form)Form;
        return form.Backward(Variant(variant), form.Contract.Bind(inputs,
            Parameters(c).With("chunk_size", c.ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture))));
    }
}
