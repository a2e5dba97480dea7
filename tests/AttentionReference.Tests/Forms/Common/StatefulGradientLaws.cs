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
            if (!(Math.Abs(finite - analytic) <= FiniteDifferences.Tolerance(magnitude, analytic)))
            {
                throw new InvalidOperationException($"d{name}: finite difference {finite:R}, gradient {analytic:R}, magnitude {magnitude:E2}");
            }
        }
        return true;
    }

    /// <summary>The backward pass of <paramref name="variant"/> on inputs that carry the cotangents.</summary>
    protected IReadOnlyDictionary<string, Tensor> Gradients(string variant, IReadOnlyDictionary<string, Tensor> inputs, StatefulCase c)
    {
        var form = (Form)Form;
        return form.Backward(variant, form.Contract.Bind(inputs,
            Parameters(c).With("chunk_size", c.ChunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture))));
    }
}
