using AttentionReference.Tensors;

namespace AttentionReference.Compare;

/// <summary>
/// Distance between two values counted in representable values of a dtype ("units in the last place").
/// <para>
/// The reference is first rounded to the dtype (<see cref="DTypes.Round"/>: nearest, ties to even), because the best a
/// kernel writing that dtype can do is the correctly rounded reference: 0 ulps. Both values are then mapped to the
/// dtype's bit patterns and the sign-magnitude patterns to a monotone integer scale (positive patterns as they are,
/// negative ones as minus their magnitude bits), on which adjacent representable values differ by exactly 1 and +0 and
/// −0 coincide. Infinity is one step past the largest finite value. A candidate value that is not representable in its
/// dtype (it should be, having been read from a file of that dtype) is rounded too.
/// </para>
/// <para>Integer dtypes count |c − r|. NaN anywhere gives NaN. Distances beyond 2^53 (f64 only) are rounded.</para>
/// </summary>
public static class UlpDistance
{
    /// <summary>Representable values of <paramref name="dtype"/> between the rounded reference and the candidate.</summary>
    public static double Between(DType dtype, double reference, double candidate)
    {
        if (double.IsNaN(reference) || double.IsNaN(candidate))
        {
            return double.NaN;
        }
        double rounded = dtype.Round(reference);
        return dtype switch
        {
            DType.F64 => (double)Int128.Abs((Int128)OrderedKey64(rounded) - OrderedKey64(candidate)),
            DType.F32 => Math.Abs((double)OrderedKey32((float)rounded) - OrderedKey32((float)candidate)),
            DType.F16 => Math.Abs(OrderedKey16(FloatBits.DoubleToHalf(rounded)) - OrderedKey16(FloatBits.DoubleToHalf(candidate))),
            DType.BF16 => Math.Abs(OrderedKey16(FloatBits.DoubleToBFloat16(rounded)) - OrderedKey16(FloatBits.DoubleToBFloat16(candidate))),
            DType.I32 or DType.I64 or DType.Bool => Math.Abs(candidate - reference),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
        };
    }

    private static long OrderedKey64(double x)
    {
        long bits = BitConverter.DoubleToInt64Bits(x);
        long magnitude = bits & long.MaxValue;
        return bits < 0 ? -magnitude : magnitude;
    }

    private static long OrderedKey32(float x)
    {
        int bits = BitConverter.SingleToInt32Bits(x);
        int magnitude = bits & int.MaxValue;
        return bits < 0 ? -magnitude : magnitude;
    }

    private static int OrderedKey16(ushort bits)
    {
        int magnitude = bits & 0x7FFF;
        return (bits & 0x8000) != 0 ? -magnitude : magnitude;
    }
}
