using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// A form's scalar parameters as text (they arrive from safetensors <c>__metadata__</c> and from <c>--set key=value</c>),
/// with typed getters whose errors name the parameter and the value found.
/// </summary>
public sealed class FormParameters
{
    private readonly Dictionary<string, string> _values;

    /// <summary>Parameters from a string map.</summary>
    public FormParameters(IReadOnlyDictionary<string, string>? values = null) =>
        _values = values is null ? new(StringComparer.Ordinal) : new(values, StringComparer.Ordinal);

    /// <summary>No parameters: every getter returns its default.</summary>
    public static FormParameters None { get; } = new();

    /// <summary>The parameters as given.</summary>
    public IReadOnlyDictionary<string, string> Values => _values;

    /// <summary>A copy with <paramref name="name"/> set to <paramref name="value"/>.</summary>
    public FormParameters With(string name, string value)
    {
        var copy = new Dictionary<string, string>(_values, StringComparer.Ordinal) { [name] = value };
        return new FormParameters(copy);
    }

    /// <summary>Whether the parameter was given.</summary>
    public bool Has(string name) => _values.ContainsKey(name);

    /// <summary>A real parameter; "inf"/"-inf" are accepted.</summary>
    public double GetDouble(string name, double fallback)
    {
        if (!_values.TryGetValue(name, out string? text))
        {
            return fallback;
        }
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            ? value
            : text.Trim().ToLowerInvariant() switch
            {
                "inf" or "+inf" or "infinity" => double.PositiveInfinity,
                "-inf" or "-infinity" => double.NegativeInfinity,
                _ => throw Bad(name, text, "a number"),
            };
    }

    /// <summary>A real parameter that is absent unless given.</summary>
    public double? GetOptionalDouble(string name) => Has(name) ? GetDouble(name, 0) : null;

    /// <summary>An integer parameter.</summary>
    public int GetInt(string name, int fallback)
    {
        if (!_values.TryGetValue(name, out string? text))
        {
            return fallback;
        }
        return int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value)
            ? value
            : throw Bad(name, text, "an integer");
    }

    /// <summary>A boolean parameter: true/false, 1/0, yes/no.</summary>
    public bool GetBool(string name, bool fallback)
    {
        if (!_values.TryGetValue(name, out string? text))
        {
            return fallback;
        }
        return text.Trim().ToLowerInvariant() switch
        {
            "true" or "1" or "yes" => true,
            "false" or "0" or "no" => false,
            _ => throw Bad(name, text, "true or false"),
        };
    }

    /// <summary>One of a fixed set of words.</summary>
    public string GetChoice(string name, string fallback, params string[] choices)
    {
        ArgumentNullException.ThrowIfNull(choices);
        if (!_values.TryGetValue(name, out string? text))
        {
            return fallback;
        }
        string value = text.Trim().ToLowerInvariant();
        return choices.Contains(value, StringComparer.Ordinal) ? value : throw Bad(name, text, string.Join(" or ", choices));
    }

    private static InputException Bad(string name, string text, string expected) =>
        new($"parameter '{name}': expected {expected}, found '{text}'");
}
