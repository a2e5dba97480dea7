using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// Something that computes a form: the exact CPU reference, or a GPU backend. The command line, the goldens and the
/// tests hold every backend to the same contract through this one interface.
/// </summary>
public interface IBackend
{
    /// <summary>"cpu", "gpu", "opencl".</summary>
    string Name { get; }

    /// <summary>The device in words, for check's header and an output file's metadata.</summary>
    string DeviceName { get; }

    /// <summary>Computes <paramref name="form"/>'s outputs in the [B,T,H,...] layout.</summary>
    IReadOnlyDictionary<string, Tensor> Run(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters);
}

/// <summary>The exact reference: every form's own CPU code, in double.</summary>
public sealed class CpuBackend : IBackend
{
    /// <summary>The one instance.</summary>
    public static CpuBackend Instance { get; } = new();

    private CpuBackend() { }

    /// <inheritdoc/>
    public string Name => "cpu";

    /// <inheritdoc/>
    public string DeviceName => $"CPU reference, double, {Numerics.VectorKernels.SimdWidth}, {Environment.ProcessorCount} threads";

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Run(IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs, FormParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(form);
        return form.Run(variant, inputs, parameters);
    }
}
