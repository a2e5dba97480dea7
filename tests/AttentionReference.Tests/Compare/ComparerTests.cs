using AttentionReference.Compare;
using AttentionReference.Tensors;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.Compare;

public sealed class ComparerTests
{
    private static readonly string[] Bthd = ["b", "t", "h", "d"];

    /// <summary>Standard normal values from a seeded generator (Box-Muller), times <paramref name="scale"/>.</summary>
    internal static double[] Gaussian(int seed, int count, double scale = 1)
    {
        var random = new Random(seed);
        var values = new double[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1 - random.NextDouble(), u2 = random.NextDouble();
            values[i] = scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
        return values;
    }

    private static double Rms(double[] values) => Math.Sqrt(values.Sum(v => v * v) / values.Length);

    private static Tensor WithValue(Tensor tensor, int offset, double value)
    {
        var copy = tensor.Clone();
        copy.Data[offset] = value;
        return copy;
    }

    public static TheoryData<DType> FloatDTypes => [DType.F64, DType.F32, DType.F16, DType.BF16];

    [Theory]
    [MemberData(nameof(FloatDTypes))]
    public void Identical_tensors_pass_with_zero_error(DType dtype)
    {
        var reference = new Tensor([2, 8, 3, 4], Gaussian(1, 2 * 8 * 3 * 4)).RoundTo(dtype);
        var result = Comparer.Compare("o", reference, reference.Clone(), ToleranceProfile.For(dtype), Bthd);

        Assert.True(result.Passed, result.ToString());
        Assert.Equal(0, result.MaxAbsoluteError);
        Assert.Equal(0, result.MaxRelativeError);
        Assert.Equal(0, result.NormwiseRelativeError);
        Assert.Equal(0, result.MaxUlps);
        Assert.Equal(0, result.OverToleranceCount);
        Assert.Equal(0, result.NonFiniteMismatchCount);
        Assert.Equal(reference.Length, result.ComparedCount);
        Assert.Empty(result.Worst); // nothing is wrong, so nothing is listed
    }

    [Fact]
    public void One_corrupted_element_is_found_with_its_index_and_values_even_below_the_normwise_tolerance()
    {
        var profile = ToleranceProfile.F32;
        var reference = new Tensor([2, 64, 4, 16], Gaussian(2, 2 * 64 * 4 * 16));
        // A float32 kernel at its best: the correctly rounded reference (≤ 2^-24 relative per element, far inside 1e-5).
        var candidate = reference.RoundTo(DType.F32);
        int[] index = [1, 37, 2, 5];
        int offset = reference.Offset(index);
        double r = reference.Data[offset];
        // Three element tolerances off: clearly wrong, yet one element in 8192 hardly moves the norm.
        double wrong = (float)(r + 3 * profile.ElementRelative * (Math.Abs(r) + Rms(reference.Data)));
        candidate.Data[offset] = wrong;

        var result = Comparer.Compare("o", reference, candidate, profile, Bthd);

        Assert.True(result.NormwiseRelativeError <= profile.NormwiseRelative, result.ToString()); // the norm misses it...
        Assert.False(result.Passed); // ...the element criterion does not
        Assert.Equal(1, result.OverToleranceCount);
        var worst = result.Worst[0];
        Assert.Equal(index, worst.Index);
        Assert.Equal(offset, worst.Offset);
        Assert.Equal("o[b=1,t=37,h=2,d=5]", worst.Location);
        Assert.Equal(r, worst.Reference);
        Assert.Equal(wrong, worst.Candidate);
        Assert.Equal(Math.Abs(wrong - r), worst.AbsoluteError);
        Assert.Equal(Math.Abs(wrong - r), result.MaxAbsoluteError);
        Assert.False(worst.NonFiniteMismatch);
        Assert.InRange(worst.Tolerances, 1, double.PositiveInfinity);
        Assert.All(result.Worst.Skip(1), e => Assert.True(e.Tolerances <= 1)); // the rest is only f32 rounding
    }

    [Theory]
    [InlineData(double.NaN, 0.25)] // the kernel produced NaN where the answer is finite
    [InlineData(0.25, double.NaN)] // the reference is NaN (undefined) but the kernel made up a number
    [InlineData(double.PositiveInfinity, 0.25)]
    [InlineData(0.25, double.NegativeInfinity)]
    [InlineData(double.NaN, double.PositiveInfinity)]
    public void A_non_finite_value_on_one_side_only_is_a_mismatch(double candidateValue, double referenceValue)
    {
        var reference = new Tensor([3, 4], Gaussian(3, 12));
        reference.Data[7] = referenceValue;
        var candidate = WithValue(reference, 7, candidateValue);

        var result = Comparer.Compare("o", reference, candidate, ToleranceProfile.F64);

        Assert.False(result.Passed);
        Assert.Equal(1, result.NonFiniteMismatchCount);
        Assert.Equal(11, result.ComparedCount); // the other elements are measured...
        Assert.Equal(0, result.MaxAbsoluteError); // ...and are exact
        Assert.True(result.Worst[0].NonFiniteMismatch);
        Assert.Equal("o[i0=1,i1=3]", result.Worst[0].Location);
    }

    [Fact]
    public void Same_sign_infinities_match_and_are_left_out_of_the_metrics()
    {
        // lse of rows with no allowed keys is -inf in both.
        var reference = new Tensor([2, 5], Gaussian(4, 10));
        reference.Data[3] = double.NegativeInfinity;
        reference.Data[8] = double.PositiveInfinity;
        var result = Comparer.Compare("lse", reference, reference.Clone(), ToleranceProfile.F32);

        Assert.True(result.Passed, result.ToString());
        Assert.Equal(2, result.MatchingNonFiniteCount);
        Assert.Equal(8, result.ComparedCount);
        Assert.Equal(0, result.NonFiniteMismatchCount);
        Assert.True(double.IsFinite(result.NormwiseRelativeError));
        Assert.True(double.IsFinite(result.ReferenceRms));
    }

    [Fact]
    public void Opposite_infinities_are_a_mismatch()
    {
        var reference = new Tensor([2, 5], Gaussian(5, 10));
        reference.Data[3] = double.NegativeInfinity;
        var result = Comparer.Compare("lse", reference, WithValue(reference, 3, double.PositiveInfinity), ToleranceProfile.F32);

        Assert.False(result.Passed);
        Assert.Equal(1, result.NonFiniteMismatchCount);
        Assert.Equal(0, result.MatchingNonFiniteCount);
    }

    /// <summary>A finite value of the dtype and the next representable value above it (both finite).</summary>
    private static readonly Gen<(DType DType, double Value, double Next)> AdjacentPairs = Gen.OneOf(
        from hi in Gen.Choose(int.MinValue, int.MaxValue)
        from lo in Gen.Choose(int.MinValue, int.MaxValue)
        let x = BitConverter.Int64BitsToDouble(((long)hi << 32) | (uint)lo)
        where double.IsFinite(x) && x != double.MaxValue
        select (DType.F64, x, Math.BitIncrement(x)),
        from bits in Gen.Choose(int.MinValue, int.MaxValue)
        let x = BitConverter.Int32BitsToSingle(bits)
        where float.IsFinite(x) && x != float.MaxValue
        select (DType.F32, (double)x, (double)MathF.BitIncrement(x)),
        from bits in Gen.Choose(0, ushort.MaxValue)
        let x = BitConverter.UInt16BitsToHalf((ushort)bits)
        where Half.IsFinite(x) && x != Half.MaxValue
        select (DType.F16, (double)x, (double)Half.BitIncrement(x)),
        // bfloat16 by its patterns: up from a positive value is the next pattern, from a negative one the previous;
        // from -0 it is the smallest positive subnormal.
        from bits in Gen.Choose(0, ushort.MaxValue)
        where (bits & 0x7FFF) < 0x7F7F
        let next = bits == 0x8000 ? 0x0001 : (bits & 0x8000) == 0 ? bits + 1 : bits - 1
        select (DType.BF16, FloatBits.BFloat16ToDouble((ushort)bits), FloatBits.BFloat16ToDouble((ushort)next)));

    [Fact]
    public void Adjacent_representable_values_are_one_ulp_apart_in_each_dtype() => PropertyRuns.Check(Prop.ForAll(
        AdjacentPairs.ToArbitrary(),
        pair =>
        {
            var (dtype, value, next) = pair;
            var reference = Tensor.Scalar(value);
            var candidate = Tensor.Scalar(next, dtype);
            return UlpDistance.Between(dtype, value, next) == 1
                && UlpDistance.Between(dtype, next, value) == 1
                && Comparer.Compare("x", reference, candidate, ToleranceProfile.For(dtype)).MaxUlps == 1;
        }), cases: 2000);

    [Fact]
    public void Positive_and_negative_zero_are_zero_ulps_apart_and_the_smallest_subnormals_one()
    {
        foreach (var dtype in new[] { DType.F64, DType.F32, DType.F16, DType.BF16 })
        {
            double tiny = dtype switch
            {
                DType.F64 => double.Epsilon,
                DType.F32 => float.Epsilon,
                DType.F16 => (double)Half.Epsilon,
                _ => FloatBits.BFloat16ToDouble(0x0001),
            };
            Assert.Equal(0, UlpDistance.Between(dtype, 0.0, -0.0));
            Assert.Equal(1, UlpDistance.Between(dtype, -0.0, tiny));
            Assert.Equal(1, UlpDistance.Between(dtype, -tiny, 0.0));
            Assert.Equal(2, UlpDistance.Between(dtype, -tiny, tiny));
        }
    }

    /// <summary>A reference tensor of moderate magnitude (Gaussian times 2^-8 .. 2^8, well inside every dtype's range).</summary>
    private static readonly Gen<(DType DType, Tensor Reference)> ModerateReferences =
        from dtype in Gen.Elements(DType.F32, DType.F16, DType.BF16)
        from length in Gen.Choose(1, 300)
        from seed in Gen.Choose(0, int.MaxValue)
        from exponent in Gen.Choose(-8, 8)
        select (dtype, new Tensor([length], Gaussian(seed, length, Math.ScaleB(1, exponent))));

    [Fact]
    public void The_reference_rounded_to_the_candidate_dtype_is_zero_ulps_off_and_passes_that_dtypes_profile() =>
        PropertyRuns.Check(Prop.ForAll(
            ModerateReferences.ToArbitrary(),
            c =>
            {
                var result = Comparer.Compare("o", c.Reference, c.Reference.RoundTo(c.DType), ToleranceProfile.For(c.DType));
                return result.MaxUlps == 0 && result.Passed;
            }), cases: 300);

    [Fact]
    public void A_shape_mismatch_names_the_tensor_and_both_shapes()
    {
        var error = Assert.Throws<InputException>(() =>
            Comparer.Compare("o", Tensor.Zeros(2, 3), Tensor.Zeros(3, 2), ToleranceProfile.F32));
        Assert.Equal("o", error.Tensor);
        Assert.Equal("tensor 'o': expected shape [2,3] (the reference's), found [3,2]", error.Message);
    }

    [Fact]
    public void A_near_zero_reference_element_is_judged_against_the_tensor_scale()
    {
        var profile = ToleranceProfile.F16;
        var reference = new Tensor([64], Gaussian(6, 64));
        reference.Data[10] = 0;
        double rms = Rms(reference.Data);
        // Half an element tolerance off an exact zero: a relative criterion alone would call it infinitely wrong.
        var candidate = WithValue(reference, 10, 0.5 * profile.ElementRelative * rms);

        var result = Comparer.Compare("o", reference, candidate, profile);

        Assert.Equal(0, result.OverToleranceCount);
        Assert.Equal(rms, result.ReferenceRms, 1e-15); // summation order: a few double roundings of a value near 1
        Assert.Equal(Comparer.RelativeFloorFraction * result.ReferenceRms, result.RelativeErrorFloor);
        // The relative error uses the floor 1e-3·rms for |r| = 0: 0.5·ElementRelative·rms / (1e-3·rms).
        Assert.Equal(0.5 * profile.ElementRelative / Comparer.RelativeFloorFraction, result.MaxRelativeError, 1e-12);
        Assert.Equal(0.5, result.Worst[0].Tolerances, 1e-12); // same ratio, a few roundings apart
    }

    [Fact]
    public void An_all_zero_reference_reports_absolute_errors()
    {
        var reference = Tensor.Zeros(4, 4);
        var candidate = WithValue(reference, 5, 1e-9);
        var result = Comparer.Compare("dv", reference, candidate, ToleranceProfile.F32);

        Assert.Equal(0, result.ReferenceRms);
        Assert.Equal(1e-9, result.MaxRelativeError); // no scale to be relative to: the absolute error
        Assert.Equal(1e-9, result.NormwiseRelativeError); // ‖c − r‖₂ when ‖r‖₂ = 0
        Assert.Equal(1, result.OverToleranceCount); // an exact zero is the answer; anything else is off
        Assert.False(result.Passed);
    }

    [Theory]
    [InlineData(1e200)]
    [InlineData(1e-200)]
    public void Norms_of_huge_and_tiny_tensors_neither_overflow_nor_underflow(double scale)
    {
        double epsilon = Math.ScaleB(1, -20);
        var reference = new Tensor([1000], Gaussian(7, 1000, scale));
        var candidate = new Tensor([1000], reference.Data.Select(r => r * (1 + epsilon)).ToArray());

        var result = Comparer.Compare("o", reference, candidate, ToleranceProfile.F64);

        // Each difference is ε·r up to the rounding of r·(1 + ε), 2^-53 relative to r, i.e. 2^-33 relative to ε·r:
        // 1e-9 relative leaves room for that and the norms' own roundings.
        Assert.Equal(epsilon, result.NormwiseRelativeError, epsilon * 1e-9);
    }

    [Fact]
    public void The_worst_list_puts_mismatches_first_then_orders_by_tolerances_and_keeps_the_count()
    {
        var profile = ToleranceProfile.F32;
        var reference = new Tensor([100], Gaussian(8, 100));
        double rms = Rms(reference.Data);
        var candidate = reference.Clone();
        candidate.Data[90] = double.NaN;
        // Off by 2, 7 and 4 tolerances respectively.
        foreach (var (offset, times) in new[] { (20, 2.0), (40, 7.0), (60, 4.0) })
        {
            candidate.Data[offset] += times * profile.ElementRelative * (Math.Abs(reference.Data[offset]) + rms);
        }

        var result = Comparer.Compare("o", reference, candidate, profile, worstCount: 3);

        Assert.Equal<int>([90, 40, 60], result.Worst.Select(e => e.Offset));
        Assert.Equal(3, result.OverToleranceCount);
        Assert.Equal(1, result.NonFiniteMismatchCount);
        Assert.Empty(Comparer.Compare("o", reference, candidate, profile, worstCount: 0).Worst);
    }

    [Fact]
    public void Comparison_is_deterministic()
    {
        var reference = new Tensor([4, 32, 2, 8], Gaussian(9, 4 * 32 * 2 * 8));
        var candidate = reference.RoundTo(DType.BF16);
        var first = Comparer.Compare("o", reference, candidate, ToleranceProfile.BF16, Bthd);
        var second = Comparer.Compare("o", reference, candidate, ToleranceProfile.BF16, Bthd);
        Assert.Equal(first.ToString(), second.ToString());
        Assert.Equal(first.NormwiseRelativeError, second.NormwiseRelativeError);
        Assert.Equal(first.ReferenceRms, second.ReferenceRms);
        Assert.Equal(first.Worst.Select(e => (e.Offset, e.Tolerances)), second.Worst.Select(e => (e.Offset, e.Tolerances)));
    }
}
