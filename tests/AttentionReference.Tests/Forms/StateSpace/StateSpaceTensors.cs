using AttentionReference.Golden.Cases;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;

namespace AttentionReference.Tests.Forms.StateSpace;

/// <summary>How step sizes Δ of a case are drawn.</summary>
public enum StepRegime
{
    /// <summary>The golden recipes' Δ (about 0.1, or softplus of normal − 2).</summary>
    Mild,
    /// <summary>Δ·A uniform in [−50, −10] at every step: decays down to e^−50, sums far past −709 within a sequence.</summary>
    Strong,
    /// <summary>Each step either tiny (Δ = 1e-8) or strong (Δ·A in [−50, −10]).</summary>
    Mixed,
}

/// <summary>Random inputs for the state-space tests: the golden recipes with a System.Random source, and slicing.</summary>
internal static class StateSpaceTensors
{
    public static StateSpaceCases.NormalSource Source(Random random) => (scale, shape) => TestTensors.Normal(random, scale, shape);

    /// <summary>
    /// Rewrites the step sizes <paramref name="delta"/> so that Δ·rate follows <paramref name="regime"/>, where
    /// rate(i) is the |A| that element i of Δ multiplies (the smallest one when several do).
    /// </summary>
    public static void Steps(Tensor delta, Func<int, double> rate, StepRegime regime, Random random)
    {
        if (regime == StepRegime.Mild)
        {
            return;
        }
        for (int i = 0; i < delta.Length; i++)
        {
            bool tiny = regime == StepRegime.Mixed && random.NextDouble() < 0.5;
            delta.Data[i] = tiny ? 1e-8 : (10 + (40 * random.NextDouble())) / rate(i);
        }
    }

    /// <summary>Elements [start, start + length) of <paramref name="x"/> along <paramref name="axis"/>.</summary>
    public static Tensor Slice(Tensor x, int axis, int start, int length)
    {
        int[] shape = x.ShapeArray();
        shape[axis] = length;
        var result = Tensor.Zeros(shape);
        for (int i = 0; i < result.Length; i++)
        {
            int[] index = result.IndexOf(i);
            index[axis] += start;
            result.Data[i] = x[index];
        }
        return result;
    }

    /// <summary>a then b along <paramref name="axis"/>.</summary>
    public static Tensor Concat(Tensor a, Tensor b, int axis)
    {
        int[] shape = a.ShapeArray();
        shape[axis] += b.Dim(axis);
        var result = Tensor.Zeros(shape);
        for (int i = 0; i < result.Length; i++)
        {
            int[] index = result.IndexOf(i);
            if (index[axis] < a.Dim(axis))
            {
                result.Data[i] = a[index];
            }
            else
            {
                index[axis] -= a.Dim(axis);
                result.Data[i] = b[index];
            }
        }
        return result;
    }

    /// <summary>Whether every value is finite.</summary>
    public static bool Finite(Tensor x) => x.Data.All(double.IsFinite);

    /// <summary>Whether the first <paramref name="count"/> steps along <paramref name="axis"/> are bitwise equal.</summary>
    public static bool SamePrefix(Tensor a, Tensor b, int axis, int count)
    {
        for (int i = 0; i < a.Length; i++)
        {
            if (a.IndexOf(i)[axis] < count && !a.Data[i].Equals(b.Data[i]))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>A copy with every element at step ≥ <paramref name="from"/> along <paramref name="axis"/> redrawn.</summary>
    public static Tensor ChangedAfter(Tensor x, int axis, int from, Random random)
    {
        var y = x.Clone();
        for (int i = 0; i < y.Length; i++)
        {
            if (y.IndexOf(i)[axis] >= from)
            {
                y.Data[i] += 1 + random.NextDouble();
            }
        }
        return y;
    }
}
