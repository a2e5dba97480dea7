using AttentionReference.Gpu;
using AttentionReference.Tests.Support;
using FsCheck.Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace AttentionReference.Tests.Gpu;

/// <summary>
/// The accelerator a test class of GPU laws runs on: "cpu" (ILGPU's CPU accelerator, always here) or "cuda". A class on
/// an accelerator this machine lacks is skipped, not passed: its laws report the skip.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class AcceleratorAttribute(string kind) : Attribute
{
    private static readonly Lazy<bool> s_hasCuda = new(GpuDevice.HasCuda);

    /// <summary>"cpu" or "cuda": the device name the class's backends open.</summary>
    public string Kind { get; } = kind;

    /// <summary>Why the class cannot run here, or null when it can.</summary>
    public string? SkipReason => Kind == "cuda" && !s_hasCuda.Value ? "no CUDA device here (runs on the GPU machine through attnref-tests)" : null;

    /// <summary>The skip reason of <paramref name="testClass"/>'s accelerator, or null.</summary>
    public static string? SkipReasonOf(Type testClass) =>
        testClass.GetCustomAttributes(typeof(AcceleratorAttribute), inherit: false).OfType<AcceleratorAttribute>().FirstOrDefault()?.SkipReason;
}

/// <summary>
/// A <see cref="LawAttribute"/> declared once in an abstract class of laws and run once per accelerator by its derived
/// classes (<see cref="AcceleratorAttribute"/>): skipped in a class whose accelerator this machine lacks.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
[XunitTestCaseDiscoverer("AttentionReference.Tests.Gpu.AcceleratorLawDiscoverer", "AttentionReference.Tests")]
public sealed class AcceleratorLawAttribute(int cases = 200) : LawAttribute(cases);

/// <summary>FsCheck's property test cases, with the skip of the test class's accelerator.</summary>
public sealed class AcceleratorLawDiscoverer(IMessageSink diagnosticMessageSink) : IXunitTestCaseDiscoverer
{
    public IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute) =>
        [new AcceleratorLawTestCase(diagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod)];
}

/// <summary>An FsCheck property test case skipped where its class's accelerator is missing.</summary>
public sealed class AcceleratorLawTestCase : PropertyTestCase
{
    [Obsolete("Called by the de-serializer; should only be called by deriving classes for de-serialization purposes")]
    public AcceleratorLawTestCase() { }

    public AcceleratorLawTestCase(IMessageSink sink, TestMethodDisplay display, TestMethodDisplayOptions options, ITestMethod method)
        : base(sink, display, options, method, null) { }

    protected override string GetSkipReason(IAttributeInfo factAttribute) =>
        base.GetSkipReason(factAttribute) ?? AcceleratorAttribute.SkipReasonOf(TestMethod.TestClass.Class.ToRuntimeType())!;
}
