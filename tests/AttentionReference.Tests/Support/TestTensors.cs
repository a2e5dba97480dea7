using AttentionReference.Tensors;

namespace AttentionReference.Tests.Support;

/// <summary>Random tensors for tests, reproducible from a seed.</summary>
internal static class TestTensors
{
    /// <summary>Standard-normal values times <paramref name="scale"/>.</summary>
    public static Tensor Normal(Random random, double scale, params int[] shape)
    {
        var data = new double[Tensor.ElementCount(shape)];
        for (int i = 0; i < data.Length; i++)
        {
            // Box–Muller: two uniforms give one normal; 1 − u keeps the logarithm finite.
            double u = 1 - random.NextDouble(), w = random.NextDouble();
            data[i] = scale * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * w);
        }
        return new Tensor(shape, data);
    }

    /// <summary>‖a − b‖₂ / ‖b‖₂ (0 when both are zero), NaN-aware: a NaN on either side gives NaN.</summary>
    public static double RelativeError(Tensor a, Tensor b)
    {
        Assert.Equal(b.Shape, a.Shape);
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = a.Data[i] - b.Data[i];
            if (double.IsInfinity(a.Data[i]) && a.Data[i] == b.Data[i])
            {
                continue; // the same infinity on both sides (lse = −∞ of an empty row) is agreement
            }
            diff += d * d;
            norm += b.Data[i] * b.Data[i];
        }
        return diff == 0 ? 0 : Math.Sqrt(diff / norm);
    }

    /// <summary>Asserts ‖a − b‖/‖b‖ ≤ <paramref name="tolerance"/>, naming the tensor on failure.</summary>
    public static void AssertClose(Tensor actual, Tensor expected, double tolerance, string name)
    {
        double error = RelativeError(actual, expected);
        Assert.True(error <= tolerance, $"{name}: relative error {error:E3} exceeds {tolerance:E1}");
    }

    /// <summary>Same as <see cref="AssertClose"/>, as a boolean for FsCheck properties.</summary>
    public static bool Close(Tensor actual, Tensor expected, double tolerance) =>
        actual.Shape.SequenceEqual(expected.Shape) && RelativeError(actual, expected) <= tolerance;
}
