using AttentionReference.Forms;
using AttentionReference.Tensors;

namespace AttentionReference.OpenCL;

/// <summary>
/// What a form's kernels cover. A variant they do not have, or a parameter they do not implement, is refused as bad
/// input marked <see cref="InputException.Unsupported"/> (so `golden verify --backend opencl` skips the case rather
/// than failing it), with one line naming what the backend has: a kernel never ignores an option silently.
/// </summary>
internal static class KernelSupport
{
    /// <summary>
    /// Throws unless <paramref name="variant"/> is one of <paramref name="variants"/> and every parameter given is in
    /// <paramref name="implemented"/> (null: the kernels implement every parameter of the form). <paramref name="why"/>
    /// says why a variant has no kernel, for the variants where that is worth saying; the messages name
    /// <paramref name="form"/> and the <paramref name="parameters"/> entry refused.
    /// </summary>
    public static void Require(string form, string variant, string[] variants, FormParameters parameters,
        IReadOnlySet<string>? implemented, IReadOnlyDictionary<string, string>? why = null)
    {
        ArgumentNullException.ThrowIfNull(variants);
        ArgumentNullException.ThrowIfNull(parameters);
        if (Array.IndexOf(variants, variant) < 0)
        {
            string reason = why?.GetValueOrDefault(variant) is { } text ? $" ({text})" : "";
            throw new InputException($"--backend opencl: {form} variant '{variant}' has no OpenCL kernel{reason}; variants on opencl: {string.Join(", ", variants)}") { Unsupported = true };
        }
        foreach (string key in parameters.Values.Keys.Where(key => implemented is not null && !implemented.Contains(key)))
        {
            throw new InputException($"--backend opencl: {form} parameter '{key}' is not supported by the OpenCL kernel") { Unsupported = true };
        }
    }
}
