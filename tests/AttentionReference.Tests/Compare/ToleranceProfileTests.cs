using AttentionReference.Compare;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.Compare;

public sealed class ToleranceProfileTests
{
    [Fact]
    public void The_five_profiles_are_the_conventions_numbers_tightest_first()
    {
        // CONVENTIONS.md, "Numbers": f64 1e-12, f32 1e-5, tf32 1e-3, f16 5e-3, bf16 2e-2 on ‖a−b‖/‖b‖.
        Assert.Equal<string>(["f64", "f32", "tf32", "f16", "bf16"], ToleranceProfile.All.Select(p => p.Name));
        Assert.Equal<double>([1e-12, 1e-5, 1e-3, 5e-3, 2e-2], ToleranceProfile.All.Select(p => p.NormwiseRelative));
    }

    [Fact]
    public void Every_profile_bounds_elements_at_five_times_its_normwise_bound_and_says_why()
    {
        foreach (var profile in ToleranceProfile.All)
        {
            Assert.Equal(ToleranceProfile.ElementFactor * profile.NormwiseRelative, profile.ElementRelative);
            Assert.Contains("unit roundoff", profile.Reason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Every_profile_admits_one_rounding_to_its_format()
    {
        // A kernel can do no better than round the exact answer once: unit roundoff 2^-53, 2^-24, 2^-11 (tf32 and f16),
        // 2^-8 (bf16).
        double[] unitRoundoff = [Math.ScaleB(1, -53), Math.ScaleB(1, -24), Math.ScaleB(1, -11), Math.ScaleB(1, -11), Math.ScaleB(1, -8)];
        foreach (var (profile, u) in ToleranceProfile.All.Zip(unitRoundoff))
        {
            Assert.True(profile.NormwiseRelative >= u, profile.Name);
        }
    }

    [Theory]
    [InlineData(DType.F64, "f64")]
    [InlineData(DType.F32, "f32")]
    [InlineData(DType.F16, "f16")]
    [InlineData(DType.BF16, "bf16")]
    [InlineData(DType.I32, "f64")]
    [InlineData(DType.I64, "f64")]
    public void Each_dtype_has_its_default_profile(DType dtype, string name) =>
        Assert.Equal(name, ToleranceProfile.For(dtype).Name);

    [Fact]
    public void Every_profile_parses_back_from_its_name_in_any_case()
    {
        foreach (var profile in ToleranceProfile.All)
        {
            Assert.True(ToleranceProfile.TryParse(profile.Name, out var parsed));
            Assert.Same(profile, parsed);
            Assert.True(ToleranceProfile.TryParse(" " + profile.Name.ToUpperInvariant() + " ", out parsed));
            Assert.Same(profile, parsed);
        }
        Assert.True(ToleranceProfile.TryParse("bfloat16", out var bf16));
        Assert.Same(ToleranceProfile.BF16, bf16);
        Assert.False(ToleranceProfile.TryParse("fp8", out _));
        Assert.False(ToleranceProfile.TryParse(null, out _));
    }
}
