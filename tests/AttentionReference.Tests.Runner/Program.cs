using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using AttentionReference.Tests.OpenCL;
using FsCheck;
using FsCheck.Xunit;
using Xunit;

namespace AttentionReference.Tests.Runner;

/// <summary>
/// attnref-tests [--filter PREFIX]... [--list]: runs the xunit [Fact] and [Theory] tests of AttentionReference.Tests
/// whose full name (Namespace.Class.Method) starts with one of the prefixes (all when none is given), one at a time,
/// and ends with the line "N passed, N failed" (exit 0 when none failed, 1 otherwise, 2 for bad arguments).
/// What it honours of xunit: [Fact], [Theory] with [InlineData] and [MemberData] (static property, field or method of
/// the test class), FsCheck.Xunit's [Property] (and our [Law]: checked by FsCheck with the attribute's MaxTest and
/// arbitraries), Skip (and a GPU law class's [Accelerator] where this machine lacks it), IClassFixture (one fixture per class, disposed after it) and IDisposable test classes.
/// Anything else in a test class's constructor fails that class loudly rather than being skipped quietly.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var prefixes = new List<string>();
        bool listOnly = false;
        for (int a = 0; a < args.Length; a++)
        {
            switch (args[a])
            {
                case "--filter" when a + 1 < args.Length:
                    prefixes.Add(args[++a]);
                    break;
                case "--list":
                    listOnly = true;
                    break;
                default:
                    Console.Error.WriteLine($"attnref-tests: unknown argument '{args[a]}'; usage: attnref-tests [--filter PREFIX]... [--list]");
                    return 2;
            }
        }

        Assembly tests = typeof(OpenClFixture).Assembly;
        var classes = tests.GetExportedTypes()
            .Where(t => t.IsClass && !t.IsAbstract && TestMethods(t).Any())
            .OrderBy(t => t.FullName, StringComparer.Ordinal)
            .ToList();
        int passed = 0, failed = 0, skipped = 0;
        var failures = new List<string>();
        foreach (Type type in classes)
        {
            var methods = TestMethods(type).Where(m => Selected(prefixes, $"{type.FullName}.{m.Name}")).ToList();
            if (methods.Count == 0)
            {
                continue;
            }
            if (listOnly)
            {
                methods.ForEach(m => Console.WriteLine($"{type.FullName}.{m.Name}"));
                continue;
            }
            var fixtures = new Dictionary<Type, object>();
            try
            {
                foreach (MethodInfo method in methods)
                {
                    foreach (var (name, arguments, skip) in Cases(type, method))
                    {
                        if (skip is not null)
                        {
                            skipped++;
                            Console.WriteLine($"SKIP {name} ({skip})");
                            continue;
                        }
                        var clock = Stopwatch.StartNew();
                        string? error = Invoke(type, method, arguments, fixtures);
                        string seconds = clock.Elapsed.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture);
                        if (error is null)
                        {
                            passed++;
                            Console.WriteLine($"PASS {name} [{seconds} s]");
                        }
                        else
                        {
                            failed++;
                            failures.Add($"{name}: {error}");
                            Console.WriteLine($"FAIL {name} [{seconds} s]\n     {error.Replace("\n", "\n     ", StringComparison.Ordinal)}");
                        }
                    }
                }
            }
            finally
            {
                foreach (IDisposable fixture in fixtures.Values.OfType<IDisposable>())
                {
                    fixture.Dispose();
                }
            }
        }
        if (listOnly)
        {
            return 0;
        }
        if (failures.Count > 0)
        {
            Console.WriteLine("Failed:");
            failures.ForEach(f => Console.WriteLine($"  {f.Split('\n')[0]}"));
        }
        if (skipped > 0)
        {
            Console.WriteLine($"{skipped} skipped");
        }
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }

    private static bool Selected(List<string> prefixes, string fullName) =>
        prefixes.Count == 0 || prefixes.Any(p => fullName.StartsWith(p, StringComparison.Ordinal));

    private static IEnumerable<MethodInfo> TestMethods(Type type) =>
        type.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static)
            .Where(m => m.GetCustomAttribute<FactAttribute>() is not null)
            .OrderBy(m => m.MetadataToken);

    /// <summary>The runs of one test method: one for a [Fact], one per data row for a [Theory].</summary>
    private static IEnumerable<(string Name, object?[] Arguments, string? Skip)> Cases(Type type, MethodInfo method)
    {
        var fact = method.GetCustomAttribute<FactAttribute>()!;
        string name = $"{type.FullName}.{method.Name}";
        // A class of GPU laws on an accelerator this machine lacks is skipped, as its xunit discoverer skips it.
        string? skip = fact.Skip ?? AttentionReference.Tests.Gpu.AcceleratorAttribute.SkipReasonOf(type);
        if (fact is not TheoryAttribute)
        {
            yield return (name, [], skip);
            yield break;
        }
        foreach (var inline in method.GetCustomAttributes<InlineDataAttribute>())
        {
            foreach (object?[] row in inline.GetData(method))
            {
                yield return (Describe(name, row), row, skip);
            }
        }
        foreach (var member in method.GetCustomAttributes<MemberDataAttribute>())
        {
            foreach (object?[] row in MemberRows(member.MemberType ?? type, member.MemberName, member.Parameters))
            {
                yield return (Describe(name, row), row, skip);
            }
        }
    }

    private static IEnumerable<object?[]> MemberRows(Type type, string member, object?[]? parameters)
    {
        const BindingFlags Static = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.FlattenHierarchy;
        object? data = type.GetProperty(member, Static)?.GetValue(null)
            ?? type.GetField(member, Static)?.GetValue(null)
            ?? type.GetMethod(member, Static)?.Invoke(null, parameters)
            ?? throw new InvalidOperationException($"[MemberData] {type.FullName}.{member} not found or null");
        foreach (object? row in (System.Collections.IEnumerable)data)
        {
            yield return row as object?[] ?? throw new InvalidOperationException($"[MemberData] {type.FullName}.{member} yields {row?.GetType().Name}, not object[]");
        }
    }

    private static string Describe(string name, object?[] row) =>
        $"{name}({string.Join(", ", row.Select(a => System.Convert.ToString(a, CultureInfo.InvariantCulture)))})";

    /// <summary>Runs one case on a fresh instance of the class; null when it passed, else the failure.</summary>
    private static string? Invoke(Type type, MethodInfo method, object?[] arguments, Dictionary<Type, object> fixtures)
    {
        object? instance = null;
        try
        {
            if (!method.IsStatic)
            {
                ConstructorInfo constructor = type.GetConstructors().Single();
                object[] fixtureArguments = constructor.GetParameters()
                    .Select(p => Fixture(type, p.ParameterType, fixtures))
                    .ToArray();
                instance = constructor.Invoke(fixtureArguments);
            }
            ParameterInfo[] parameters = method.GetParameters();
            if (method.GetCustomAttribute<PropertyAttribute>() is { } property)
            {
                // FsCheck draws the arguments, as FsCheck.Xunit would: the attribute's case count and arbitraries.
                Config config = Config.QuickThrowOnFailure.WithMaxTest(property.MaxTest)
                    .WithArbitrary(property.Arbitrary ?? []).WithQuietOnSuccess(true);
                Check.Method(config, method, instance);
                return null;
            }
            object?[] converted = arguments.Select((a, i) => ConvertArgument(a, parameters[i].ParameterType)).ToArray();
            object? result = method.Invoke(instance, converted);
            if (result is Task task)
            {
                task.GetAwaiter().GetResult();
            }
            return null;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            return $"{e.InnerException.GetType().Name}: {e.InnerException.Message}";
        }
#pragma warning disable CA1031 // a test runner reports every failure of a test, whatever its type
        catch (Exception e)
#pragma warning restore CA1031
        {
            return $"{e.GetType().Name}: {e.Message}";
        }
        finally
        {
            (instance as IDisposable)?.Dispose();
        }
    }

    private static object Fixture(Type testClass, Type parameter, Dictionary<Type, object> fixtures)
    {
        bool declared = testClass.GetInterfaces().Any(i => i.IsGenericType
            && i.GetGenericTypeDefinition() == typeof(IClassFixture<>) && i.GetGenericArguments()[0] == parameter);
        if (!declared)
        {
            throw new InvalidOperationException($"{testClass.Name}'s constructor takes {parameter.Name}, which this runner cannot supply (only IClassFixture<T>)");
        }
        if (!fixtures.TryGetValue(parameter, out object? fixture))
        {
            fixture = Activator.CreateInstance(parameter)!;
            fixtures[parameter] = fixture;
        }
        return fixture;
    }

    private static object? ConvertArgument(object? argument, Type target) =>
        argument is IConvertible && !target.IsInstanceOfType(argument) && target != typeof(object)
            ? System.Convert.ChangeType(argument, Nullable.GetUnderlyingType(target) ?? target, CultureInfo.InvariantCulture)
            : argument;
}
