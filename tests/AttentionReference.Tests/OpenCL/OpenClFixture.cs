using AttentionReference.OpenCL;

namespace AttentionReference.Tests.OpenCL;

/// <summary>
/// One f64 and one f32 backend for a test class, so kernels are compiled once. The device is the first one the ICD
/// loader lists, or the one REF_OPENCL_DEVICE names; CI installs PoCL so these tests run on every submission. Without
/// an OpenCL platform they fail, saying what to install: a GPU version that is not tested is not a version.
/// </summary>
public sealed class OpenClFixture : IDisposable
{
    private readonly Lazy<OpenClBackend> _f64 = new(() => new OpenClBackend(precision: Precision.F64));
    private readonly Lazy<OpenClBackend> _f32 = new(() => new OpenClBackend(precision: Precision.F32));

    public OpenClBackend F64 => _f64.Value;
    public OpenClBackend F32 => _f32.Value;

    public void Dispose()
    {
        if (_f64.IsValueCreated)
        {
            _f64.Value.Dispose();
        }
        if (_f32.IsValueCreated)
        {
            _f32.Value.Dispose();
        }
    }
}

/// <summary>
/// The OpenCL test classes run one after another: PoCL crashed the test host when two classes' contexts compiled and
/// ran kernels at the same time (each class has its own fixture, so its own contexts).
/// </summary>
[CollectionDefinition(Name)]
public sealed class OpenClSerial
{
    public const string Name = "OpenCL";
}
