using System.Numerics;
using AttentionReference.Forms;
using AttentionReference.Gpu.Delta;
using AttentionReference.Gpu.GatedLinear;
using AttentionReference.Gpu.Hybrid;
using AttentionReference.Gpu.Linear;
using AttentionReference.Gpu.StateSpace;
using AttentionReference.Tensors;

namespace AttentionReference.Gpu;

/// <summary>
/// The GPU version of the forms: kernels written in C# and compiled by ILGPU, for CUDA where an NVIDIA driver is present
/// and for ILGPU's CPU accelerator everywhere else, held to the CPU reference by the same <see cref="IBackend"/>
/// contract. How a form is added is in README.md beside this file. A form or variant without kernels is bad input
/// marked <see cref="InputException.Unsupported"/>, one line saying so.
/// </summary>
public sealed class GpuBackend : IBackend, IDisposable
{
    /// <summary>The forms with ILGPU kernels (every variant of each).</summary>
    private static readonly HashSet<string> s_forms =
    [
        .. DiagonalDecay.Forms, "linear", "rwkv6", "mlstm",
        "delta_rule", "gated_delta_rule", "kda", "rwkv7",
        "s4d", "h3", "mamba", "ssd",
        "power", "nats_l", "based",
    ];

    private readonly GpuDevice _device;
    private readonly Lock _launch = new();

    /// <summary>
    /// A backend on the device named by <paramref name="device"/> (see <see cref="GpuDevice.Open"/>: a substring of the
    /// device's name or kind, else <see cref="GpuDevice.EnvironmentVariable"/>, else CUDA, else the CPU accelerator),
    /// computing in <paramref name="precision"/>.
    /// </summary>
    public GpuBackend(string? device = null, Precision precision = Precision.F64)
    {
        _device = GpuDevice.Open(device);
        Precision = precision;
    }

    /// <inheritdoc/>
    public string Name => "gpu";

    /// <summary>The kernels' arithmetic.</summary>
    public Precision Precision { get; }

    /// <summary>The device in use, in words (for check's header and output metadata).</summary>
    public string Device => _device.Description;

    /// <inheritdoc/>
    public string DeviceName => $"{Device}, {(Precision == Precision.F64 ? "f64" : "f32")}";

    /// <summary>
    /// Seconds the device spent in kernels during the last <see cref="Run"/> (each launch timed to its end; no uploads or
    /// downloads), NaN unless <see cref="TimeKernels"/> was on.
    /// </summary>
    public double LastRunKernelSeconds { get; private set; } = double.NaN;

    /// <summary>Whether to time the kernels of each run (<see cref="LastRunKernelSeconds"/>): for the bench.</summary>
    public bool TimeKernels
    {
        get => _device.TimeKernels;
        set => _device.TimeKernels = value;
    }

    /// <summary>
    /// The device's f64 (or f32, by this backend's precision) fused multiply-add rate in GFLOP/s, measured by a kernel of
    /// independent FMA chains (<see cref="FmaRate"/>): the peak the bench states its kernels against.
    /// </summary>
    public double MeasureFmaGflops()
    {
        lock (_launch)
        {
            return Precision == Precision.F64 ? FmaRate.Measure<double>(_device) : FmaRate.Measure<float>(_device);
        }
    }

    /// <summary>Whether the device is a CUDA GPU (else ILGPU's CPU accelerator).</summary>
    public bool IsCuda => _device.IsCuda;

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Run(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(form);
        if (form is not Form bound || !s_forms.Contains(form.Name))
        {
            throw new InputException($"--backend gpu: {form.Name} has no ILGPU kernel yet; use --backend cpu") { Unsupported = true };
        }
        Problem problem = bound.Contract.Bind(inputs, parameters);
        if (!form.Variants.Contains(variant))
        {
            throw new InputException($"unknown variant '{variant}' of {form.Name}; known variants: {string.Join(", ", form.Variants)}");
        }
        lock (_launch)
        {
            double before = _device.KernelSeconds;
            var outputs = Precision == Precision.F64 ? Run<double>(form.Name, variant, problem) : Run<float>(form.Name, variant, problem);
            LastRunKernelSeconds = TimeKernels ? _device.KernelSeconds - before : double.NaN;
            return outputs;
        }
    }

    /// <summary>The form's host code, in the real type of the kernels.</summary>
    private IReadOnlyDictionary<string, Tensor> Run<Real>(string form, string variant, Problem problem)
        where Real : unmanaged, IFloatingPointIeee754<Real> => form switch
    {
        "linear" => LinearHost.Run<Real>(_device, variant, problem),
        "rwkv6" => Rwkv6Host.Run<Real>(_device, variant, problem),
        "mlstm" => MlstmHost.Run<Real>(_device, variant, problem),
        "delta_rule" or "gated_delta_rule" or "kda" or "rwkv7" => DeltaRules.Run<Real>(_device, form, variant, problem),
        "s4d" or "h3" => DiagonalSsmBank.Run<Real>(_device, form, variant, problem),
        "mamba" => SelectiveScan.Run<Real>(_device, variant, problem),
        "ssd" => StateSpaceDuality.Run<Real>(_device, variant, problem),
        "power" => PowerHost.Run<Real>(_device, variant, problem),
        "nats_l" => NatsLHost.Run<Real>(_device, variant, problem),
        "based" => BasedHost.Run<Real>(_device, variant, problem),
        _ => DiagonalDecay.Run<Real>(_device, form, variant, problem),
    };

    /// <summary>
    /// <see cref="GpuMath"/>'s function <paramref name="function"/> ("exp") evaluated on the device at every point of
    /// <paramref name="x"/>, in this backend's precision (widened to double): for measuring the device's math against the
    /// CPU's.
    /// </summary>
    public double[] EvaluateMath(string function, double[] x)
    {
        lock (_launch)
        {
            return Precision == Precision.F64 ? GpuMathKernels.Evaluate<double>(_device, function, x) : GpuMathKernels.Evaluate<float>(_device, function, x);
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _device.Dispose();
}
