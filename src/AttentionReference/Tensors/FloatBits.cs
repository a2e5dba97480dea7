namespace AttentionReference.Tensors;

/// <summary>
/// Bit-exact conversions between double and the two 16-bit float formats. Rounding goes straight from double to
/// the 16-bit format (never through float, which would round twice): round to nearest, ties to even; values past
/// the largest finite number become infinity; subnormals are produced where the format has them; NaN stays NaN
/// with its sign and the top of its payload, forced quiet.
/// </summary>
public static class FloatBits
{
    /// <summary>Exact value of a binary16 bit pattern.</summary>
    public static double HalfToDouble(ushort bits) => (double)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Exact value of a bfloat16 bit pattern (the top half of a binary32).</summary>
    public static double BFloat16ToDouble(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>binary16 bits nearest to <paramref name="x"/> (5 exponent bits, bias 15, 10 fraction bits).</summary>
    public static ushort DoubleToHalf(double x) => RoundToSmallFloat(x, exponentBits: 5, fractionBits: 10);

    /// <summary>bfloat16 bits nearest to <paramref name="x"/> (8 exponent bits, bias 127, 7 fraction bits).</summary>
    public static ushort DoubleToBFloat16(double x) => RoundToSmallFloat(x, exponentBits: 8, fractionBits: 7);

    /// <summary>
    /// Rounds a double to a binary format of 1 + <paramref name="exponentBits"/> + <paramref name="fractionBits"/>
    /// ≤ 16 bits. The double's 52-bit fraction is shifted right to the target width with the shifted-out bits kept
    /// as a round and sticky part; the carry out of the fraction correctly bumps the exponent (and reaches infinity).
    /// </summary>
    private static ushort RoundToSmallFloat(double x, int exponentBits, int fractionBits)
    {
        ulong bits = BitConverter.DoubleToUInt64Bits(x);
        uint sign = (uint)(bits >> 63) << (exponentBits + fractionBits);
        int exponent = (int)((bits >> 52) & 0x7FF);
        ulong fraction = bits & 0xF_FFFF_FFFF_FFFFUL;
        uint maxExponent = (1u << exponentBits) - 1;
        int bias = (1 << (exponentBits - 1)) - 1;

        if (exponent == 0x7FF)
        {
            if (fraction == 0)
            {
                return (ushort)(sign | (maxExponent << fractionBits)); // ±inf
            }
            // NaN: keep the top payload bits and set the quiet bit so the result cannot turn into infinity.
            uint payload = (uint)(fraction >> (52 - fractionBits)) | (1u << (fractionBits - 1));
            return (ushort)(sign | (maxExponent << fractionBits) | payload);
        }
        if (exponent == 0 && fraction == 0)
        {
            return (ushort)sign; // ±0
        }

        // Significand with the implicit bit (double subnormals are far below every target's range: they round to 0).
        ulong significand = exponent == 0 ? fraction : fraction | (1UL << 52);
        int unbiased = exponent == 0 ? -1022 : exponent - 1023;
        int targetExponent = unbiased + bias;

        // How far the 53-bit significand must move right to leave `fractionBits` bits after the leading one; in the
        // target's subnormal range (targetExponent ≤ 0) it moves further, by 1 - targetExponent places.
        int shift = 52 - fractionBits + (targetExponent <= 0 ? 1 - targetExponent : 0);
        if (shift > 63)
        {
            return (ushort)sign; // below half the smallest subnormal: rounds to ±0
        }
        ulong kept = significand >> shift;
        ulong rest = significand & ((1UL << shift) - 1);
        ulong half = 1UL << (shift - 1);
        if (rest > half || (rest == half && (kept & 1) == 1))
        {
            kept++; // may carry into the exponent field below: that is the correct next binade (or infinity)
        }

        uint result;
        if (targetExponent <= 0)
        {
            result = (uint)kept; // subnormal; a carry to 1 << fractionBits is exactly the smallest normal
        }
        else
        {
            // kept holds 1.fraction; adding (targetExponent - 1) << fractionBits places the exponent, and the carry
            // of rounding moves it up naturally.
            result = (uint)((ulong)(targetExponent - 1) << fractionBits) + (uint)kept;
        }
        if (result >= maxExponent << fractionBits)
        {
            result = maxExponent << fractionBits; // overflow: ±inf
        }
        return (ushort)(sign | result);
    }
}
