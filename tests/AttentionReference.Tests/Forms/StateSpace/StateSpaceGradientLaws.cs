using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using static AttentionReference.Tests.Forms.StateSpace.StateSpaceTensors;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>
/// Backward passes of the state-space forms called through their contracts, and the finite-difference check of
/// Support/FiniteDifferences.cs (the laws of Common/StatefulGradientLaws.cs, for forms whose tests do not derive from
/// StatefulFormLaws).
/// </summary>
internal static class StateSpaceGradients
{
    // The backward passes of two variants compute the same sums in double in other orders, over the terms of the forward
    // and of the reverse-time recurrence (twice the forward's): 1e-11 relative to each gradient's norm leaves the forward
    // laws' margin of about 100 on sums of about twice the length (as StatefulGradientLaws).
    public const double SameGradientsInDouble = 1e-11;

    /// <summary>The backward pass of <paramref name="variant"/> on inputs that carry the cotangents, with parameters "name=value".</summary>
    public static IReadOnlyDictionary<string, Tensor> Gradients(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs, params string[] parameters)
    {
        var values = parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        var contract = ((Form)form).Contract;
        return ((Form)form).Backward(variant, contract.Bind(inputs, new FormParameters(values)));
    }

    /// <summary>The inputs with a random cotangent (standard normal) for every output of the form's definition.</summary>
    public static Dictionary<string, Tensor> WithCotangents(IForm form, IReadOnlyDictionary<string, Tensor> inputs, Random random, params string[] parameters)
    {
        var result = new Dictionary<string, Tensor>(inputs);
        foreach (var (name, output) in form.Call(((Form)form).Contract.Definition, inputs, parameters))
        {
            result["d" + name] = TestTensors.Normal(random, 1, output.ShapeArray());
        }
        return result;
    }

    /// <summary>The inputs without the cotangents (a forward run's inputs).</summary>
    public static Dictionary<string, Tensor> Forward(IForm form, IReadOnlyDictionary<string, Tensor> inputs) =>
        inputs.Where(p => !((Form)form).Contract.Cotangents.Any(t => t.Name == p.Key)).ToDictionary();

    /// <summary>
    /// Whether every gradient of the definition equals the central finite difference of its forward along a random
    /// direction, within <see cref="FiniteDifferences.Tolerance"/> (whose derivation is stated there); throws, naming the
    /// input, where one does not.
    /// </summary>
    public static bool EqualFiniteDifferences(IForm form, IReadOnlyDictionary<string, Tensor> inputs, Random random, params string[] parameters)
    {
        string definition = ((Form)form).Contract.Definition;
        var outputs = form.Call(definition, inputs, parameters);
        var cotangents = outputs.ToDictionary(p => "d" + p.Key, p => TestTensors.Normal(random, 1, p.Value.ShapeArray()));
        var gradients = Gradients(form, definition, new Dictionary<string, Tensor>(inputs).Concat(cotangents).ToDictionary(), parameters);
        var (_, magnitude) = FiniteDifferences.Pairing(cotangents, outputs);
        foreach (var (name, x) in inputs.Where(p => gradients.ContainsKey("d" + p.Key)))
        {
            Tensor u = TestTensors.Normal(random, 1, x.ShapeArray());
            double L(double epsilon) => FiniteDifferences.Pairing(cotangents,
                form.Call(definition, new Dictionary<string, Tensor>(inputs) { [name] = FiniteDifferences.Moved(x, u, epsilon) }, parameters)).Value;
            double finite = (L(FiniteDifferences.Step) - L(-FiniteDifferences.Step)) / (2 * FiniteDifferences.Step);
            double analytic = FiniteDifferences.Dot(gradients["d" + name], u);
            if (!(Math.Abs(finite - analytic) <= FiniteDifferences.Tolerance(magnitude, analytic)))
            {
                throw new InvalidOperationException($"{form.Name} d{name}: finite difference {finite:R}, gradient {analytic:R}, magnitude {magnitude:E2}");
            }
        }
        return true;
    }

    /// <summary>
    /// Whether every variant's gradients equal the definition's within <see cref="SameGradientsInDouble"/> (of each
    /// gradient's norm), and are finite.
    /// </summary>
    public static bool EveryVariantEqualsTheDefinition(IForm form, IReadOnlyDictionary<string, Tensor> inputs, params string[] parameters)
    {
        var expected = Gradients(form, ((Form)form).Contract.Definition, inputs, parameters);
        return expected.Values.All(g => Finite(g)) && form.Variants.All(variant =>
        {
            var actual = Gradients(form, variant, inputs, parameters);
            return actual.Count == expected.Count && expected.All(p => TestTensors.Close(actual[p.Key], p.Value, SameGradientsInDouble));
        });
    }

    /// <summary>
    /// The laws above at once, for an edge case: every variant's gradients are finite, the definition's equal finite
    /// differences, and every variant's equal the definition's.
    /// </summary>
    public static bool FiniteAndAgreeing(IForm form, IReadOnlyDictionary<string, Tensor> inputs, int seed, params string[] parameters)
    {
        var x = WithCotangents(form, inputs, new Random(seed), parameters);
        return form.Variants.All(variant => Gradients(form, variant, x, parameters).Values.All(Finite))
            && EqualFiniteDifferences(form, inputs, new Random(seed), parameters)
            && EveryVariantEqualsTheDefinition(form, x, parameters);
    }

    /// <summary>a + b, elementwise.</summary>
    public static Tensor Sum(Tensor a, Tensor b) => new(a.ShapeArray(), a.Data.Zip(b.Data, (x, y) => x + y).ToArray());
}

/// <summary>
/// The gradient laws of the stateful state-space forms (mamba, ssd), in every variant: the definition's gradients equal
/// finite differences; every variant's backward equals the definition's; two parts with the state gradient passed back
/// equal one run; varlen (empty sequences included) equals separate runs; and the edge cases engines get wrong (issue
/// #19), which the random cases reach only by chance: one step, a sequence shorter than one chunk, a last partial chunk,
/// strong decay at every step.
/// </summary>
public abstract partial class StatefulStateSpaceLaws<TCase>
{
    /// <summary>The case's parameters ("name=value"), as <see cref="Run"/> passes them.</summary>
    protected abstract string[] Parameters(TCase c);

    /// <summary>
    /// The case with <paramref name="steps"/> steps, chunks (ssd) or scan blocks (mamba) of <paramref name="chunk"/> steps
    /// (the case's own where null), and with <paramref name="strong"/> every step's log decay Δ·A in [−50, −10] (the
    /// strong regime: summed over 60 steps it passes −709, where a decay factorised as exp(Σa)·exp(−Σa) overflows).
    /// </summary>
    protected abstract TCase Edge(TCase c, int steps, int? chunk = null, bool strong = false);

    private IReadOnlyDictionary<string, Tensor> Gradients(TCase c, string variant, IReadOnlyDictionary<string, Tensor> x) =>
        StateSpaceGradients.Gradients(Form, variant, x, Parameters(c));

    private Dictionary<string, Tensor> WithCotangents(TCase c, IReadOnlyDictionary<string, Tensor> x, int seed) =>
        StateSpaceGradients.WithCotangents(Form, x, new Random(seed), Parameters(c));

    [Law(50)]
    public bool Gradients_of_the_definition_equal_central_finite_differences(TCase c) =>
        StateSpaceGradients.EqualFiniteDifferences(Form, Inputs(c), new Random(Sizes(c).Seed + 3), Parameters(c));

    [Law(50)]
    public bool Backward_of_every_variant_equals_the_backward_of_the_definition(TCase c) =>
        StateSpaceGradients.EveryVariantEqualsTheDefinition(Form, WithCotangents(c, Inputs(c), Sizes(c).Seed + 3), Parameters(c));

    [Law(20)]
    public bool At_one_step_every_variant_has_the_gradients_of_the_definition_and_of_finite_differences(TCase c) =>
        FiniteAndAgreeing(Edge(c, 1));

    [Law(20)]
    public bool Backward_of_a_sequence_shorter_than_one_chunk(TCase c)
    {
        var (steps, split, _) = Sizes(c);
        int t = Math.Max(steps, 1);
        return EveryVariantEqualsTheDefinition(Edge(c, t, t + 1 + (split % 5)));
    }

    [Law(20)]
    public bool Backward_with_a_last_partial_chunk(TCase c)
    {
        var (steps, split, _) = Sizes(c);
        int chunk = 2 + (split % 7);
        int t = (chunk * (1 + (steps % 4))) + 1 + (split / 7 % (chunk - 1)); // whole chunks, then 1 … chunk − 1 steps
        var edge = Edge(c, t, chunk);
        return EveryVariantEqualsTheDefinition(edge) && Backward_in_two_parts_with_the_state_gradient_passed_back_equals_one_run(edge);
    }

    [Law(20)]
    public bool Gradients_stay_finite_and_agree_with_strong_decay_at_every_step(TCase c)
    {
        // 60 steps of Δ·A ≤ −10 sum below −600 (−3000 at most): every variant keeps its decays as exp of sums ≤ 0, so
        // nothing overflows; the gradients are finite and agree as in any other case.
        return FiniteAndAgreeing(Edge(c, 60, strong: true));
    }

    private bool FiniteAndAgreeing(TCase c) => StateSpaceGradients.FiniteAndAgreeing(Form, Inputs(c), Sizes(c).Seed + 3, Parameters(c));

    private bool EveryVariantEqualsTheDefinition(TCase c) =>
        StateSpaceGradients.EveryVariantEqualsTheDefinition(Form, WithCotangents(c, Inputs(c), Sizes(c).Seed + 3), Parameters(c));

    [Law(50)]
    public bool Backward_in_two_parts_with_the_state_gradient_passed_back_equals_one_run(TCase c)
    {
        var (steps, split, seed) = Sizes(c);
        split = steps == 0 ? 0 : split % (steps + 1);
        var x = WithCotangents(c, Inputs(c), seed + 3);
        return Form.Variants.All(variant =>
        {
            var whole = Gradients(c, variant, x);
            // Forward over the first part to reach the second part's initial state, backward over the second part from
            // dfinal_state, then backward over the first part from the second part's dinitial_state.
            var first = Steps(x, 0, split);
            var second = Steps(x, split, steps - split);
            second["initial_state"] = Run(c, variant, StateSpaceGradients.Forward(Form, first))["final_state"];
            var late = Gradients(c, variant, second);
            first["dfinal_state"] = late["dinitial_state"];
            var early = Gradients(c, variant, first);
            return whole.All(p =>
            {
                Tensor joined = StepAxis(p.Key[1..], x[p.Key[1..]]) is { } axis ? Concat(early[p.Key], late[p.Key], axis)
                    : p.Key == "dinitial_state" ? early[p.Key]
                    : StateSpaceGradients.Sum(early[p.Key], late[p.Key]); // a parameter collects its gradient from both parts
                return TestTensors.Close(joined, p.Value, StateSpaceGradients.SameGradientsInDouble);
            });
        });
    }

    [Law(50)]
    public bool Backward_varlen_with_empty_sequences_equals_separate_runs(TCase c)
    {
        var (steps, split, seed) = Sizes(c);
        int cut = steps == 0 ? 0 : split % (steps + 1);
        int[] cu = [0, 0, cut, cut, steps, steps], empty = [0, 2, 4]; // the first, a middle and the last sequence are empty
        var x = WithCotangents(c, Inputs(c, batch: 1, cuSeqlens: cu), seed + 3);
        return Form.Variants.All(variant =>
        {
            var packed = Gradients(c, variant, x);
            var summed = new Dictionary<string, Tensor>();
            for (int n = 0; n + 1 < cu.Length; n++)
            {
                var alone = Steps(x, cu[n], cu[n + 1] - cu[n], n);
                alone["dfinal_state"] = Slice(x["dfinal_state"], 0, n, 1);
                foreach (var (name, gradient) in Gradients(c, variant, alone))
                {
                    // Each sequence's own gradients come from the same arithmetic either way (F64 leaves room for
                    // vector kernels whose order may follow a row's alignment).
                    Tensor? own = StepAxis(name[1..], x[name[1..]]) is { } axis ? Slice(packed[name], axis, cu[n], cu[n + 1] - cu[n])
                        : name == "dinitial_state" ? Slice(packed[name], 0, n, 1)
                        : null;
                    if (own is not null && !TestTensors.Close(gradient, own, F64))
                    {
                        return false;
                    }
                    if (own is null)
                    {
                        summed[name] = summed.TryGetValue(name, out Tensor? sum) ? StateSpaceGradients.Sum(sum, gradient) : gradient;
                    }
                }
            }
            // A parameter shared by the sequences collects its gradient from each; summed in another order.
            // An empty sequence's dinitial_state is its dfinal_state, passed through untouched.
            return summed.All(p => TestTensors.Close(p.Value, packed[p.Key], StateSpaceGradients.SameGradientsInDouble))
                && empty.All(n => Slice(packed["dinitial_state"], 0, n, 1).Data.SequenceEqual(Slice(x["dfinal_state"], 0, n, 1).Data));
        });
    }
}
