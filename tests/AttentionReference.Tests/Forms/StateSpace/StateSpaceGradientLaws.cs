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
