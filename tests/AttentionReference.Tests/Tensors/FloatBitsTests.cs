using AttentionReference.Tensors;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Tensors;

/// <summary>
/// The rounding laws of <see cref="FloatBits"/>, each held against something independent of it: .NET's own
/// <c>(Half)double</c> conversion for binary16, a slow search over the ordered bfloat16 values (and the classic binary32
/// bit trick) for bfloat16, and exhaustive round trips over every 16-bit pattern.
/// </summary>
public sealed class FloatBitsTests
{
    // ---- Generators ------------------------------------------------------------------------------------------------

    /// <summary>Any double at all, from 64 random bits (NaNs, infinities, subnormals and huge values included).</summary>
    private static readonly Gen<double> RandomBits =
        from hi in Gen.Choose(int.MinValue, int.MaxValue)
        from lo in Gen.Choose(int.MinValue, int.MaxValue)
        select BitConverter.Int64BitsToDouble(((long)hi << 32) | (uint)lo);

    /// <summary>±(1 + random 52-bit fraction)·2^e for e in [<paramref name="minExponent"/>, <paramref name="maxExponent"/>].</summary>
    private static Gen<double> InBinades(int minExponent, int maxExponent) =>
        from e in Gen.Choose(minExponent, maxExponent)
        from hi in Gen.Choose(0, (1 << 20) - 1)
        from lo in Gen.Choose(int.MinValue, int.MaxValue)
        from negative in Gen.Elements(false, true)
        let fraction = ((ulong)hi << 32) | (uint)lo
        let magnitude = BitConverter.UInt64BitsToDouble(((ulong)(e + 1023) << 52) | fraction)
        select negative ? -magnitude : magnitude;

    /// <summary>
    /// A center, or one moved by a few double ulps, or by a random relative amount from 2^-1 down to 2^-60 of itself;
    /// with either sign. This reaches the exact center (a tie or a threshold) and both of its sides.
    /// </summary>
    private static Gen<double> Nudged(Gen<double> centers) =>
        from center in centers
        from how in Gen.Choose(0, 2)
        from steps in Gen.Choose(-3, 3)
        from power in Gen.Choose(1, 60)
        from negative in Gen.Elements(false, true)
        let moved = how switch
        {
            0 => center,
            1 => StepUlps(center, steps),
            _ => center * (1 + steps * Math.ScaleB(1, -power)),
        }
        select negative ? -moved : moved;

    private static double StepUlps(double x, int steps)
    {
        for (; steps > 0; steps--)
        {
            x = Math.BitIncrement(x);
        }
        for (; steps < 0; steps++)
        {
            x = Math.BitDecrement(x);
        }
        return x;
    }

    /// <summary>
    /// The exact midpoint between the value of a positive finite pattern in [0, <paramref name="lastLower"/>] and the
    /// next pattern's value, decoded by <paramref name="decode"/>. Both formats have at most 11 significant bits, so
    /// the midpoint is exact in double.
    /// </summary>
    private static Gen<double> Midpoints(int lastLower, Func<int, double> decode) =>
        from pattern in Gen.Choose(0, lastLower)
        select (decode(pattern) + decode(pattern + 1)) / 2;

    // binary16: largest finite 65504 = (2 - 2^-10)·2^15; overflow threshold 65520 = 65504 + half an ulp (2^4);
    // smallest subnormal 2^-24, half of it 2^-25 (a tie with zero), smallest normal 2^-14.
    private static readonly Gen<double> HalfInteresting = Gen.OneOf(
        RandomBits,
        InBinades(-27, 17),
        Nudged(Gen.Elements(65504.0, 65520.0, 65536.0, Math.ScaleB(1, -24), Math.ScaleB(1, -25), Math.ScaleB(3, -25), Math.ScaleB(1, -14))),
        Nudged(Midpoints(0x7BFE, p => (double)BitConverter.UInt16BitsToHalf((ushort)p))));

    // bfloat16: largest finite (2 - 2^-7)·2^127 = 2^128·(1 - 2^-8); overflow threshold 2^128·(1 - 2^-9); smallest
    // subnormal 2^-133, half of it 2^-134; smallest normal 2^-126.
    private static readonly Gen<double> BFloat16Interesting = Gen.OneOf(
        RandomBits,
        InBinades(-136, 129),
        Nudged(Gen.Elements(
            Math.ScaleB(1 - Math.ScaleB(1, -8), 128), Math.ScaleB(1 - Math.ScaleB(1, -9), 128), Math.ScaleB(1, 128),
            Math.ScaleB(1, -133), Math.ScaleB(1, -134), Math.ScaleB(3, -134), Math.ScaleB(1, -126))),
        Nudged(Midpoints(0x7F7E, DecodeBFloat16)));

    // ---- binary16 --------------------------------------------------------------------------------------------------

    [Fact]
    public void Half_rounding_equals_the_dotnet_conversion_bit_for_bit() => PropertyRuns.Check(Prop.ForAll(
        HalfInteresting.ToArbitrary(),
        x =>
        {
            ushort ours = FloatBits.DoubleToHalf(x);
            Half theirs = (Half)x;
            return Half.IsNaN(theirs)
                ? Half.IsNaN(BitConverter.UInt16BitsToHalf(ours))
                : ours == BitConverter.HalfToUInt16Bits(theirs);
        }), cases: 5000);

    [Theory]
    [InlineData(0.0, 0x0000)]
    [InlineData(-0.0, 0x8000)]
    [InlineData(double.PositiveInfinity, 0x7C00)]
    [InlineData(double.NegativeInfinity, 0xFC00)]
    [InlineData(65504.0, 0x7BFF)] // largest finite: exponent 30, fraction all ones
    [InlineData(65519.99999999999, 0x7BFF)] // just under the overflow threshold 65504 + 2^4/2
    [InlineData(65520.0, 0x7C00)] // the threshold is a tie between 0x7BFF (odd) and the next, 0x7C00: even wins
    [InlineData(5.960464477539063e-8, 0x0001)] // 2^-24, the smallest subnormal
    [InlineData(2.9802322387695312e-8, 0x0000)] // 2^-25: a tie between 0 (even) and 0x0001
    [InlineData(8.940696716308594e-8, 0x0002)] // 3·2^-25: a tie between 0x0001 (odd) and 0x0002 (even)
    [InlineData(1.00048828125, 0x3C00)] // 1 + 2^-11: a tie between 1 (0x3C00, even) and 0x3C01
    [InlineData(1.00146484375, 0x3C02)] // 1 + 3·2^-11: a tie between 0x3C01 (odd) and 0x3C02
    public void Half_edge_values_round_as_IEEE_754_says(double x, int expected) =>
        Assert.Equal((ushort)expected, FloatBits.DoubleToHalf(x));

    // ---- bfloat16 --------------------------------------------------------------------------------------------------

    /// <summary>The value of a bfloat16 pattern: the top half of a binary32 (decoded here, independently of FloatBits).</summary>
    private static double DecodeBFloat16(int pattern) => BitConverter.Int32BitsToSingle(pattern << 16);

    /// <summary>
    /// The slow, obviously right bfloat16 rounding of a non-NaN double: binary-search the ordered positive finite
    /// patterns 0x0000..0x7F7F for the two adjacent values bracketing |x|, take the nearer, a tie to the even pattern.
    /// Past the largest finite value the upper neighbour is 2^128 (pattern 0x7F80, infinity), so |x| ≥
    /// 2^128·(1 − 2^-9), halfway between the two, becomes infinity. The comparison 2|x| against lower + upper is
    /// exact: both neighbours have 8 significant bits.
    /// </summary>
    private static ushort SlowBFloat16(double x)
    {
        int sign = double.IsNegative(x) ? 0x8000 : 0;
        double a = Math.Abs(x);
        if (double.IsPositiveInfinity(a))
        {
            return (ushort)(sign | 0x7F80);
        }
        int low = 0, high = 0x7F7F;
        while (low < high)
        {
            int mid = (low + high + 1) / 2;
            if (DecodeBFloat16(mid) <= a)
            {
                low = mid;
            }
            else
            {
                high = mid - 1;
            }
        }
        double below = DecodeBFloat16(low);
        double above = low == 0x7F7F ? Math.ScaleB(1, 128) : DecodeBFloat16(low + 1);
        double twice = 2 * a, sum = below + above;
        int chosen = twice < sum ? low : twice > sum ? low + 1 : low % 2 == 0 ? low : low + 1;
        return (ushort)(sign | chosen);
    }

    private static bool IsBFloat16NaN(ushort bits) => (bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0;

    [Fact]
    public void BFloat16_rounding_equals_the_nearest_of_the_bracketing_values_ties_to_even() => PropertyRuns.Check(Prop.ForAll(
        BFloat16Interesting.ToArbitrary(),
        x =>
        {
            ushort ours = FloatBits.DoubleToBFloat16(x);
            return double.IsNaN(x)
                ? IsBFloat16NaN(ours) && (ours & 0x8000) == (double.IsNegative(x) ? 0x8000 : 0)
                : ours == SlowBFloat16(x);
        }), cases: 5000);

    /// <summary>
    /// binary32 patterns: random top 16 bits over a low half that is random or sits on the rounding boundary (a tie
    /// 0x8000, or one off it either way), so that ties are common rather than one case in 65536.
    /// </summary>
    private static readonly Gen<int> FloatBitPatterns =
        from top in Gen.Choose(0, 0xFFFF)
        from bottom in Gen.OneOf(Gen.Choose(0, 0xFFFF), Gen.Elements(0x0000, 0x7FFF, 0x8000, 0x8001, 0xFFFF))
        select (top << 16) | bottom;

    [Fact]
    public void BFloat16_rounding_of_a_float_equals_the_binary32_bit_trick() => PropertyRuns.Check(Prop.ForAll(
        FloatBitPatterns.Where(b => !float.IsNaN(BitConverter.Int32BitsToSingle(b))).ToArbitrary(),
        floatBits =>
        {
            uint bits = (uint)floatBits;
            // Add just under half of the dropped part, plus one more when the kept part is odd: ties go to even.
            var expected = (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
            return FloatBits.DoubleToBFloat16(BitConverter.Int32BitsToSingle(floatBits)) == expected;
        }), cases: 5000);

    [Theory]
    [InlineData(0.0, 0x0000)]
    [InlineData(-0.0, 0x8000)]
    [InlineData(double.PositiveInfinity, 0x7F80)]
    [InlineData(double.NegativeInfinity, 0xFF80)]
    [InlineData(3.3895313892515355e38, 0x7F7F)] // largest finite (2 - 2^-7)·2^127: exponent 254, fraction all ones
    [InlineData(-3.3895313892515355e38, 0xFF7F)]
    [InlineData(3.39617752923046e38, 0x7F80)] // 2^128·(1 - 2^-9): the tie past the largest finite (odd) goes to infinity
    [InlineData(3.3961775292304597e38, 0x7F7F)] // one double ulp below that tie
    [InlineData(9.183549615799121e-41, 0x0001)] // 2^-133, the smallest subnormal
    [InlineData(4.591774807899561e-41, 0x0000)] // 2^-134: a tie between 0 (even) and 0x0001
    [InlineData(1.3775324423698682e-40, 0x0002)] // 3·2^-134: a tie between 0x0001 (odd) and 0x0002
    [InlineData(1.00390625, 0x3F80)] // 1 + 2^-8: a tie between 1 (0x3F80, even) and 0x3F81
    [InlineData(1.01171875, 0x3F82)] // 1 + 3·2^-8: a tie between 0x3F81 (odd) and 0x3F82
    public void BFloat16_edge_values_round_to_nearest_even(double x, int expected)
    {
        Assert.Equal((ushort)expected, FloatBits.DoubleToBFloat16(x));
        Assert.Equal((ushort)expected, SlowBFloat16(x)); // the slow reference agrees on the edges too
    }

    [Theory]
    [InlineData(0x7FF8000000000000L, false)] // the default quiet NaN, positive
    [InlineData(unchecked((long)0xFFF8000000000000UL), true)]
    [InlineData(0x7FF0000000000001L, false)] // signalling NaN with a payload only in the low bits: must not become inf
    [InlineData(unchecked((long)0xFFF0000000000001UL), true)]
    public void NaN_stays_NaN_with_its_sign(long doubleBits, bool negative)
    {
        double nan = BitConverter.Int64BitsToDouble(doubleBits);
        ushort half = FloatBits.DoubleToHalf(nan);
        ushort bfloat = FloatBits.DoubleToBFloat16(nan);
        Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(half)));
        Assert.Equal(negative, (half & 0x8000) != 0);
        Assert.True(IsBFloat16NaN(bfloat));
        Assert.Equal(negative, (bfloat & 0x8000) != 0);
    }

    // ---- Round trips -----------------------------------------------------------------------------------------------

    [Fact]
    public void Half_decoding_then_rounding_is_the_identity_on_every_pattern()
    {
        for (int pattern = 0; pattern <= ushort.MaxValue; pattern++)
        {
            double value = FloatBits.HalfToDouble((ushort)pattern);
            ushort back = FloatBits.DoubleToHalf(value);
            if (double.IsNaN(value))
            {
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(back)), $"NaN pattern 0x{pattern:X4} came back as 0x{back:X4}");
                Assert.Equal(pattern & 0x8000, back & 0x8000);
            }
            else
            {
                Assert.Equal((ushort)pattern, back);
            }
        }
    }

    [Fact]
    public void BFloat16_decoding_then_rounding_is_the_identity_on_every_pattern()
    {
        for (int pattern = 0; pattern <= ushort.MaxValue; pattern++)
        {
            double value = FloatBits.BFloat16ToDouble((ushort)pattern);
            ushort back = FloatBits.DoubleToBFloat16(value);
            if (double.IsNaN(value))
            {
                Assert.True(IsBFloat16NaN(back), $"NaN pattern 0x{pattern:X4} came back as 0x{back:X4}");
                Assert.Equal(pattern & 0x8000, back & 0x8000);
            }
            else
            {
                Assert.Equal((ushort)pattern, back);
            }
        }
    }
}
