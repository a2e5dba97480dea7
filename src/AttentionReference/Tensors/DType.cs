namespace AttentionReference.Tensors;

/// <summary>The element types the oracle reads and writes. Every float type converts exactly to double.</summary>
public enum DType
{
    /// <summary>IEEE 754 binary64.</summary>
    F64,
    /// <summary>IEEE 754 binary32.</summary>
    F32,
    /// <summary>IEEE 754 binary16 (half).</summary>
    F16,
    /// <summary>bfloat16: the top 16 bits of a binary32.</summary>
    BF16,
    /// <summary>32-bit signed integer (indices such as cu_seqlens).</summary>
    I32,
    /// <summary>64-bit signed integer (indices such as cu_seqlens).</summary>
    I64,
    /// <summary>Boolean, one byte, 0 or 1 (masks as PyTorch saves them); held as 0.0 and 1.0.</summary>
    Bool,
}

/// <summary>Names, sizes and rounding of <see cref="DType"/>.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int ByteSize(this DType dtype) => dtype switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 => 2,
        DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>True for the four float types.</summary>
    public static bool IsFloat(this DType dtype) => dtype is DType.F64 or DType.F32 or DType.F16 or DType.BF16;

    /// <summary>The dtype string of the safetensors header ("F64", "BF16", "I32", ...).</summary>
    public static string SafetensorsName(this DType dtype) => dtype switch
    {
        DType.F64 => "F64",
        DType.F32 => "F32",
        DType.F16 => "F16",
        DType.BF16 => "BF16",
        DType.I32 => "I32",
        DType.I64 => "I64",
        DType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The lower-case name used on the command line and in reports ("f64", "bf16", "i32").</summary>
    public static string ShortName(this DType dtype) => dtype.SafetensorsName().ToLowerInvariant();

    /// <summary>Parses a safetensors dtype string; false for dtypes the oracle does not read.</summary>
    public static bool TryParseSafetensors(string name, out DType dtype)
    {
        switch (name)
        {
            case "F64": dtype = DType.F64; return true;
            case "F32": dtype = DType.F32; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            case "I32": dtype = DType.I32; return true;
            case "I64": dtype = DType.I64; return true;
            case "BOOL": dtype = DType.Bool; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>Parses a user-facing name: f64/float64/double, f32/float32/float, f16/float16/half, bf16/bfloat16, i32/int32, i64/int64.</summary>
    public static bool TryParse(string name, out DType dtype)
    {
        switch (name.Trim().ToLowerInvariant())
        {
            case "f64" or "float64" or "double": dtype = DType.F64; return true;
            case "f32" or "float32" or "float": dtype = DType.F32; return true;
            case "f16" or "float16" or "half": dtype = DType.F16; return true;
            case "bf16" or "bfloat16": dtype = DType.BF16; return true;
            case "i32" or "int32": dtype = DType.I32; return true;
            case "i64" or "int64": dtype = DType.I64; return true;
            case "bool": dtype = DType.Bool; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>
    /// The value of <paramref name="dtype"/> nearest to <paramref name="x"/>: round to nearest, ties to even, overflow
    /// to infinity, NaN and infinities kept. For the integer types the value must already be an integer in range.
    /// </summary>
    public static double Round(this DType dtype, double x) => dtype switch
    {
        DType.F64 => x,
        // A double-to-float cast rounds once, to nearest even (IEEE 754 conversion).
        DType.F32 => (float)x,
        DType.F16 => FloatBits.HalfToDouble(FloatBits.DoubleToHalf(x)),
        DType.BF16 => FloatBits.BFloat16ToDouble(FloatBits.DoubleToBFloat16(x)),
        DType.I32 or DType.I64 or DType.Bool => x,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };
}
