using System.Globalization;
using AttentionReference.Forms;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.Support;

/// <summary>Calls of a form the way the command line makes them: inputs by name, parameters as "name=value".</summary>
internal static class FormCalls
{
    /// <summary>The outputs of <paramref name="variant"/> of <paramref name="form"/>, with parameters "name=value".</summary>
    public static IReadOnlyDictionary<string, Tensor> Call(this IForm form, string variant, IReadOnlyDictionary<string, Tensor> inputs,
        params string[] parameters)
    {
        ArgumentNullException.ThrowIfNull(form);
        var values = parameters.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        return form.Run(variant, inputs, new FormParameters(values));
    }

    /// <summary>"chunk_size=C".</summary>
    public static string ChunkSize(int size) => "chunk_size=" + size.ToString(CultureInfo.InvariantCulture);

    /// <summary>Every tensor of <paramref name="expected"/> within ‖a − b‖/‖b‖ ≤ <paramref name="tolerance"/> of its namesake.</summary>
    public static bool AllClose(IReadOnlyDictionary<string, Tensor> actual, IReadOnlyDictionary<string, Tensor> expected, double tolerance) =>
        expected.All(p => actual.TryGetValue(p.Key, out Tensor? a) && TestTensors.Close(a, p.Value, tolerance));
}
