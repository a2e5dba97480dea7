using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Softmax;

/// <summary>
/// The softmax family's gradient laws' tools (issue #19): a form's backward pass through its contract, random
/// cotangents, the finite-difference check of a definition's gradients, and the comparison of two backward passes.
/// </summary>
internal static class FamilyGradients
{
    /// <summary>
    /// Two backward passes computing the same sums in double in other orders (tiles, parts, the absorbed order, the
    /// reverse cumulative sum of forgetting's dg): a few ulps per term over sums of at most ~17·9 terms, each gradient
    /// built from about twice the forward's terms: 1e-11 relative to its norm leaves the forward laws' margin of ~100.
    /// </summary>
    public const double SameGradientsInDouble = 1e-11;

    /// <summary>The backward pass of <paramref name="variant"/> on inputs that carry the cotangents.</summary>
    public static IReadOnlyDictionary<string, Tensor> Gradients(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs,
        params string[] parameters)
    {
        var contract = ((Form)form).Contract;
        return ((Form)form).Backward(variant, contract.Bind(inputs, FamilyTensors.Parameters(parameters)));
    }

    /// <summary>The inputs with a standard-normal cotangent for every output of <paramref name="variant"/> (dlse of an empty row included).</summary>
    public static Dictionary<string, Tensor> WithCotangents(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs,
        string[] parameters, Random random)
    {
        var result = new Dictionary<string, Tensor>(inputs);
        foreach (var (name, output) in form.Call(variant, inputs, parameters))
        {
            result["d" + name] = TestTensors.Normal(random, 1, output.ShapeArray());
        }
        return result;
    }

    /// <summary>
    /// Null when every gradient of <paramref name="variant"/> equals the central finite difference of
    /// L = Σ_Y ⟨c_Y, Y⟩ along a random direction of its input (Support/FiniteDifferences.cs: the step, and the bound's
    /// derivation); else which gradient and by how much. The cotangents c_Y are random; the entries of Y that are not
    /// finite (lse = −∞ of a row with no allowed key, which no input moves) are left out of L. Every differentiable
    /// input the call gives must have its gradient.
    /// </summary>
    public static string? FiniteDifferenceMismatch(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs,
        string[] parameters, Random random)
    {
        var withCotangents = WithCotangents(form, variant, inputs, parameters, random);
        var cotangents = withCotangents.Where(p => !inputs.ContainsKey(p.Key)).ToDictionary();
        var gradients = Gradients(form, variant, withCotangents, parameters);
        double magnitude = Pairing(cotangents, form.Call(variant, inputs, parameters)).Magnitude;
        var contract = ((Form)form).Contract;
        foreach (var (name, x) in inputs.Where(p => contract.Gradients.Any(g => g.Name == "d" + p.Key)))
        {
            if (!gradients.TryGetValue("d" + name, out Tensor? gradient))
            {
                return $"d{name}: missing";
            }
            Tensor u = TestTensors.Normal(random, 1, x.ShapeArray());
            double L(double epsilon) => Pairing(cotangents,
                form.Call(variant, new Dictionary<string, Tensor>(inputs) { [name] = FiniteDifferences.Moved(x, u, epsilon) }, parameters)).Value;
            double finite = (L(FiniteDifferences.Step) - L(-FiniteDifferences.Step)) / (2 * FiniteDifferences.Step);
            double analytic = FiniteDifferences.Dot(gradient, u);
            if (!(Math.Abs(finite - analytic) <= FiniteDifferences.Tolerance(magnitude, analytic)))
            {
                return $"d{name}: finite difference {finite:R}, gradient {analytic:R}, magnitude {magnitude:E2}";
            }
        }
        return null;
    }

    /// <summary>Every gradient of <paramref name="expected"/> within ‖a − b‖/‖b‖ ≤ <paramref name="tolerance"/> of its namesake, and no other.</summary>
    public static bool Same(IReadOnlyDictionary<string, Tensor> actual, IReadOnlyDictionary<string, Tensor> expected,
        double tolerance = SameGradientsInDouble) =>
        actual.Count == expected.Count && FormCalls.AllClose(actual, expected, tolerance);

    /// <summary>x with its gradients renamed: "dk" → "dk_cache" and the like (decode's names for naive's).</summary>
    public static Dictionary<string, Tensor> Renamed(IReadOnlyDictionary<string, Tensor> gradients, params (string From, string To)[] names) =>
        gradients.ToDictionary(p => names.FirstOrDefault(n => n.From == p.Key).To ?? p.Key, p => p.Value);

    /// <summary>Σ_Y ⟨c_Y, Y⟩ over the finite entries of the outputs with a cotangent, and Σ |c_Y| |Y| (the magnitude M).</summary>
    private static (double Value, double Magnitude) Pairing(IReadOnlyDictionary<string, Tensor> cotangents, IReadOnlyDictionary<string, Tensor> outputs)
    {
        double value = 0, magnitude = 0;
        foreach (var (name, y) in outputs)
        {
            if (cotangents.TryGetValue("d" + name, out Tensor? c))
            {
                for (int i = 0; i < y.Length; i++)
                {
                    if (double.IsFinite(y.Data[i]))
                    {
                        value += c.Data[i] * y.Data[i];
                        magnitude += Math.Abs(c.Data[i] * y.Data[i]);
                    }
                }
            }
        }
        return (value, magnitude);
    }
}
