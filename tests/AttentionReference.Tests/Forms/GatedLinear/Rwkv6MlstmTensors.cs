using AttentionReference.Tensors;

namespace AttentionReference.Tests.Forms.GatedLinear;

/// <summary>Cutting and joining tensors along time (axis 1) and state rows (axis 0), for the state and varlen laws.</summary>
internal static class Rwkv6MlstmTensors
{
    /// <summary>Time steps [from, to) of a [B,T,...] tensor.</summary>
    public static Tensor SliceTime(Tensor x, int from, int to)
    {
        int[] shape = x.ShapeArray();
        int inner = Inner(x);
        shape[1] = to - from;
        var result = Tensor.Zeros(shape);
        for (int b = 0; b < shape[0]; b++)
        {
            Array.Copy(x.Data, (b * x.Dim(1) + from) * inner, result.Data, b * (to - from) * inner, (to - from) * inner);
        }
        return result;
    }

    /// <summary>[B,T1,...] and [B,T2,...] joined into [B,T1+T2,...].</summary>
    public static Tensor ConcatTime(Tensor a, Tensor b)
    {
        int[] shape = a.ShapeArray();
        int inner = Inner(a);
        shape[1] = a.Dim(1) + b.Dim(1);
        var result = Tensor.Zeros(shape);
        for (int batch = 0; batch < shape[0]; batch++)
        {
            Array.Copy(a.Data, batch * a.Dim(1) * inner, result.Data, batch * shape[1] * inner, a.Dim(1) * inner);
            Array.Copy(b.Data, batch * b.Dim(1) * inner, result.Data, (batch * shape[1] + a.Dim(1)) * inner, b.Dim(1) * inner);
        }
        return result;
    }

    /// <summary>Rows [from, to) along axis 0.</summary>
    public static Tensor Rows(Tensor x, int from, int to)
    {
        int[] shape = x.ShapeArray();
        int row = shape[0] == 0 ? 0 : x.Length / shape[0];
        shape[0] = to - from;
        return new Tensor(shape, x.Data.AsSpan(from * row, (to - from) * row).ToArray());
    }

    /// <summary>Tensors of equal trailing shape stacked along axis 0.</summary>
    public static Tensor StackRows(IReadOnlyList<Tensor> parts)
    {
        int[] shape = parts[0].ShapeArray();
        shape[0] = parts.Sum(p => p.Dim(0));
        return new Tensor(shape, parts.SelectMany(p => p.Data).ToArray());
    }

    /// <summary>cu_seqlens (int64) of sequences with the given lengths.</summary>
    public static Tensor CuSeqlens(IReadOnlyList<int> lengths)
    {
        var cu = new double[lengths.Count + 1];
        for (int n = 0; n < lengths.Count; n++)
        {
            cu[n + 1] = cu[n] + lengths[n];
        }
        return new Tensor([cu.Length], cu, DType.I64);
    }

    /// <summary>Whether the first <paramref name="steps"/> time steps of two [B,T,...] tensors are bit-identical.</summary>
    public static bool SamePrefix(Tensor a, Tensor b, int steps) =>
        SliceTime(a, 0, steps).Data.SequenceEqual(SliceTime(b, 0, steps).Data);

    private static int Inner(Tensor x) => (int)(Tensor.ElementCount(x.ShapeArray()[2..]));
}
