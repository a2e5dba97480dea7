using System.Globalization;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests;

/// <summary>
/// How many cases each property runs. The default keeps the whole suite under ten minutes on two cores;
/// REF_PROPERTY_RUNS multiplies it (e.g. REF_PROPERTY_RUNS=10 for a long soak).
/// </summary>
internal static class PropertyRuns
{
    /// <summary>The multiplier from REF_PROPERTY_RUNS (1 when unset).</summary>
    public static int Multiplier { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("REF_PROPERTY_RUNS"), NumberStyles.None, CultureInfo.InvariantCulture, out int m) && m > 0 ? m : 1;

    /// <summary>FsCheck's configuration for a law: throw on the first counterexample, <paramref name="cases"/> × multiplier tests.</summary>
    public static Config Config(int cases = 200) => FsCheck.Config.QuickThrowOnFailure.WithMaxTest(cases * Multiplier);

    /// <summary>Checks <paramref name="property"/> with <see cref="Config"/>.</summary>
    public static void Check(Property property, int cases = 200) => FsCheck.Check.One(Config(cases), property);
}
