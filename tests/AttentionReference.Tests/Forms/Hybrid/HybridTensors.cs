using AttentionReference.Forms;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>Tensors the hybrid family's laws share: log gates, time slices, a perturbed future, gradients.</summary>
internal static class HybridTensors
{
    /// <summary>Log gates: logsigmoid of a normal, or strong ones in [−20, −10].</summary>
    public static Tensor LogGates(Random random, bool strong, params int[] shape) =>
        new(shape, TestTensors.Normal(random, 1, shape).Data.Select(x => strong ? -15 + 5 * Math.Tanh(x) : -Math.Log(1 + Math.Exp(-x))).ToArray());

    /// <summary>Time steps [from, to) of a [B,T,...] tensor.</summary>
    public static Tensor Slice(Tensor x, int from, int to)
    {
        int[] shape = x.ShapeArray();
        int inner = shape[0] * shape[1] == 0 ? 0 : x.Length / (shape[0] * shape[1]);
        var data = new List<double>();
        for (int b = 0; b < shape[0]; b++)
        {
            data.AddRange(x.Data.AsSpan((b * shape[1] + from) * inner, (to - from) * inner).ToArray());
        }
        shape[1] = to - from;
        return new Tensor(shape, [.. data]);
    }

    /// <summary>Replaces every entry of time steps after <paramref name="t"/> of a [B,T,...] tensor by a new random value (≤ 0 for gates).</summary>
    public static void Perturb(Tensor x, int t, Random random, bool nonPositive = false)
    {
        int[] shape = x.ShapeArray();
        int inner = x.Length / (shape[0] * shape[1]);
        for (int b = 0; b < shape[0]; b++)
        {
            for (int i = (b * shape[1] + t + 1) * inner; i < (b + 1) * shape[1] * inner; i++)
            {
                x.Data[i] = nonPositive || x.Rank == 3 ? -random.NextDouble() : random.NextDouble() * 4 - 2;
            }
        }
    }

    /// <summary>|x|, elementwise.</summary>
    public static Tensor Abs(Tensor x) => new(x.ShapeArray(), x.Data.Select(Math.Abs).ToArray());

    /// <summary>The inputs as a new dictionary with <paramref name="name"/> set (or removed, for null).</summary>
    public static Dictionary<string, Tensor> With(this IReadOnlyDictionary<string, Tensor> inputs, string name, Tensor? tensor)
    {
        var copy = new Dictionary<string, Tensor>(inputs);
        if (tensor is null)
        {
            copy.Remove(name);
        }
        else
        {
            copy[name] = tensor;
        }
        return copy;
    }

    /// <summary>The backward pass of <paramref name="variant"/> on inputs that carry the cotangents, parameters "name=value".</summary>
    public static IReadOnlyDictionary<string, Tensor> Gradients(this Form form, string variant, IReadOnlyDictionary<string, Tensor> inputs,
        params string[] parameters)
    {
        var values = parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        return form.Backward(variant, form.Contract.Bind(inputs, new FormParameters(values)));
    }

    /// <summary>The inputs with a random cotangent for every output of the form's definition.</summary>
    public static Dictionary<string, Tensor> WithCotangents(this Form form, IReadOnlyDictionary<string, Tensor> inputs, Random random, params string[] parameters)
    {
        var withCotangents = new Dictionary<string, Tensor>(inputs);
        foreach (var (name, output) in form.Call(form.Contract.Definition, inputs, parameters))
        {
            withCotangents["d" + name] = TestTensors.Normal(random, 1, output.ShapeArray());
        }
        return withCotangents;
    }

    /// <summary>
    /// Whether every gradient of <paramref name="variant"/> equals the central finite difference of its forward pass
    /// along a random direction, for random cotangents of every output (the bound: Support/FiniteDifferences.cs); throws
    /// naming the gradient that does not.
    /// </summary>
    public static bool GradientsEqualFiniteDifferences(this Form form, string variant, IReadOnlyDictionary<string, Tensor> inputs, Random random,
        params string[] parameters)
    {
        var outputs = form.Call(variant, inputs, parameters);
        var cotangents = outputs.ToDictionary(p => "d" + p.Key, p => TestTensors.Normal(random, 1, p.Value.ShapeArray()));
        var gradients = form.Gradients(variant, inputs.Concat(cotangents).ToDictionary(), parameters);
        var (_, magnitude) = FiniteDifferences.Pairing(cotangents, outputs);
        foreach (var (name, x) in inputs.Where(p => form.Contract.Gradients.Any(g => g.Name == "d" + p.Key)))
        {
            Tensor u = TestTensors.Normal(random, 1, x.ShapeArray());
            double L(double epsilon) => FiniteDifferences.Pairing(cotangents, form.Call(variant, inputs.With(name, FiniteDifferences.Moved(x, u, epsilon)), parameters)).Value;
            double finite = (L(FiniteDifferences.Step) - L(-FiniteDifferences.Step)) / (2 * FiniteDifferences.Step);
            double analytic = FiniteDifferences.Dot(gradients["d" + name], u);
            if (!(Math.Abs(finite - analytic) <= FiniteDifferences.Tolerance(magnitude, analytic)))
            {
                throw new InvalidOperationException($"d{name}: finite difference {finite:R}, gradient {analytic:R}, magnitude {magnitude:E2}");
            }
        }
        return true;
    }
}
