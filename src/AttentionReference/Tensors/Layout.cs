namespace AttentionReference.Tensors;

/// <summary>How a rank-4 tensor orders its time and head axes.</summary>
public enum Layout
{
    /// <summary>[B, T, H, D]: flash-attn's and flash-linear-attention's default, and the layout every form computes in.</summary>
    Bthd,
    /// <summary>[B, H, T, D]: PyTorch SDPA's layout.</summary>
    Bhtd,
}

/// <summary>Layout conversion at the edges: forms always see [B,T,H,...].</summary>
public static class Layouts
{
    /// <summary>Parses "bthd" or "bhtd".</summary>
    public static bool TryParse(string text, out Layout layout)
    {
        switch (text.Trim().ToLowerInvariant())
        {
            case "bthd": layout = Layout.Bthd; return true;
            case "bhtd": layout = Layout.Bhtd; return true;
            default: layout = default; return false;
        }
    }

    /// <summary>
    /// Swaps axes 1 and 2 ([B,T,H,...] ↔ [B,H,T,...]); the swap is its own inverse, so it converts in both
    /// directions. Tensors of rank below 3 are returned as they are.
    /// </summary>
    public static Tensor SwapTimeAndHeads(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Rank < 3)
        {
            return tensor;
        }
        int[] shape = tensor.ShapeArray();
        int outer = shape[0], a = shape[1], b = shape[2];
        int inner = tensor.Length / Math.Max(1, outer * a * b);
        if (outer * a * b == 0)
        {
            inner = 0;
        }
        (shape[1], shape[2]) = (shape[2], shape[1]);
        var data = new double[tensor.Length];
        for (int o = 0; o < outer; o++)
        {
            for (int i = 0; i < a; i++)
            {
                for (int j = 0; j < b; j++)
                {
                    int from = ((o * a + i) * b + j) * inner;
                    int to = ((o * b + j) * a + i) * inner;
                    Array.Copy(tensor.Data, from, data, to, inner);
                }
            }
        }
        return new Tensor(shape, data, tensor.DType);
    }

    /// <summary>Converts a tensor in <paramref name="layout"/> to [B,T,H,...] (or back: the conversion is symmetric).</summary>
    public static Tensor Convert(Tensor tensor, Layout layout) =>
        layout == Layout.Bthd ? tensor : SwapTimeAndHeads(tensor);
}
