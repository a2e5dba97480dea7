using System.Reflection;
using FsCheck;
using FsCheck.Xunit;

namespace AttentionReference.Tests.Support;

/// <summary>
/// A law: an FsCheck.Xunit property whose parameters FsCheck draws, 200 cases by default (the constructor's argument) times
/// REF_PROPERTY_RUNS (<see cref="PropertyRuns.Multiplier"/>). Every type of this assembly with a public static property
/// returning its own <c>Arbitrary&lt;T&gt;</c> (a case record's <c>Arbitrary</c>) is registered, so a law takes its case
/// as a parameter: <c>[Law] public bool Chunked_equals_recurrent_for_any_chunk_size(StatefulCase c)</c>.
/// Not sealed: a law that runs once per implementation may derive to decide per test class whether it can run
/// (Gpu/AcceleratorLawAttribute.cs).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public class LawAttribute : PropertyAttribute
{
    private static readonly Type[] s_arbitraries = typeof(LawAttribute).Assembly.GetTypes()
        .Where(t => t.GetProperties(BindingFlags.Public | BindingFlags.Static)
            .Any(p => p.PropertyType.IsGenericType && p.PropertyType.GetGenericTypeDefinition() == typeof(Arbitrary<>)))
        .ToArray();

    /// <summary>A law checked on <paramref name="cases"/> × REF_PROPERTY_RUNS drawn cases.</summary>
    public LawAttribute(int cases = 200)
    {
        MaxTest = cases * PropertyRuns.Multiplier;
        Arbitrary = s_arbitraries;
        QuietOnSuccess = true;
    }
}
