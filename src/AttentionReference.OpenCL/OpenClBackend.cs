using AttentionReference.Forms;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// The GPU version of the forms, as OpenCL C kernels (one file per form, named as the CPU form's file), held to the
/// CPU reference by the same <see cref="IBackend"/> contract. A form or variant without a kernel is bad input with a
/// message saying which variants the backend has.
/// </summary>
public sealed class OpenClBackend : IBackend, IDisposable
{
    private readonly OpenClContext _context;

    /// <summary>A backend on the device picked by <paramref name="deviceSubstring"/> (or REF_OPENCL_DEVICE), in <paramref name="precision"/>.</summary>
    public OpenClBackend(string? deviceSubstring = null, Precision precision = Precision.F64)
    {
        _context = new OpenClContext(OpenClDevice.Select(deviceSubstring));
        _context.Require(precision);
        Precision = precision;
    }

    /// <inheritdoc/>
    public string Name => "opencl";

    /// <inheritdoc/>
    public string DeviceName => $"OpenCL {Device.Description}, {(Precision == Precision.F64 ? "f64" : "f32")}";

    /// <summary>The kernels' arithmetic.</summary>
    public Precision Precision { get; }

    /// <summary>The device in use.</summary>
    public OpenClDevice Device => _context.Device;

    /// <summary>
    /// Seconds the device spent in kernels during the last <see cref="Run"/> (event profiling: no uploads, downloads
    /// or host work); NaN before the first run.
    /// </summary>
    public double LastRunKernelSeconds { get; private set; } = double.NaN;

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Run(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        double before = _context.KernelSeconds;
        try
        {
            IReadOnlyDictionary<string, Tensor> outputs = Dispatch(form, variant, inputs, parameters);
            LastRunKernelSeconds = _context.KernelSeconds - before;
            return outputs;
        }
        finally
        {
            // The next run of the same shape reuses this run's buffers; a pooled buffer of an earlier shape goes.
            _context.ReleaseIdleBuffers();
        }
    }

    private IReadOnlyDictionary<string, Tensor> Dispatch(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(form);
        return form.Name switch
        {
            "softmax" => SoftmaxKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "forgetting" => ForgettingKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "mla" => MlaKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "sparse" => SparseKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "linear" => LinearKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "gla" => GatedLinearKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "simple_gla" => GatedLinearKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "retention" => GatedLinearKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "hgrn2" => GatedLinearKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "rwkv6" => Rwkv6Kernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "mlstm" => MlstmKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "delta_rule" => DeltaKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "gated_delta_rule" => DeltaKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "kda" => DeltaKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "rwkv7" => DeltaKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "s4d" => S4dKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "h3" => H3Kernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "nats_l" => NatsLKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters,
                (softmaxInputs, softmaxParameters) => Dispatch(FormCatalog.Find("softmax"), "tiled", softmaxInputs, softmaxParameters)),
            "mamba" => MambaKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "ssd" => SsdKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "power" => PowerKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            "based" => BasedKernels.Run(_context, Precision, (Form)form, variant, inputs, parameters),
            _ => throw new InputException($"--backend opencl: {form.Name} has no OpenCL kernel yet; use --backend cpu") { Unsupported = true },
        };
    }

    /// <inheritdoc/>
    public void Dispose() => _context.Dispose();
}
