using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.Hybrid;

/// <summary>Tensors the hybrid family's laws share: log gates, time slices, a perturbed future.</summary>
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
}
