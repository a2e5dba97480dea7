using System.Globalization;
using System.Numerics;
using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>
/// A scalar parameter of a form: its name, its default (as text, for <c>attnref forms</c>), its meaning, and the rule a
/// given value must satisfy. Values arrive as text (safetensors <c>__metadata__</c>, <c>--set key=value</c>) and are
/// parsed once, at binding, by the one rule written here: every error reads
/// <c>parameter 'chunk_size': expected an integer ≥ 1, found '0'</c>.
/// </summary>
public abstract class ParameterSpec
{
    /// <summary>The name, the default as text and the description every typed parameter has.</summary>
    private protected ParameterSpec(string name, string defaultText, string description) =>
        (Name, Default, Description) = (name, defaultText, description);

    /// <summary>The parameter's name.</summary>
    public string Name { get; }

    /// <summary>The default, as text ("64", "K^-0.5").</summary>
    public string Default { get; }

    /// <summary>What it means.</summary>
    public string Description { get; }

    /// <summary>The value in <paramref name="parameters"/> (the default when absent), checked against the rule.</summary>
    internal virtual object? ReadValue(FormParameters parameters) => parameters.Values.GetValueOrDefault(Name);

    /// <summary>An integer ≥ <paramref name="min"/> (and ≤ <paramref name="max"/>).</summary>
    public static Parameter<int> WholeNumber(string name, int defaultValue, string description, int min = int.MinValue, int max = int.MaxValue) =>
        new(name, Invariant(defaultValue), description, defaultValue, Expected(min, max, "an integer"), text =>
            int.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowLeadingWhite | NumberStyles.AllowTrailingWhite,
                CultureInfo.InvariantCulture, out int value) && value >= min && value <= max ? value : null);

    /// <summary>A finite real in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Parameter<double> Real(string name, double defaultValue, string description,
        double min = double.MinValue, double max = double.MaxValue) =>
        new(name, Invariant(defaultValue), description, defaultValue, Expected(min, max, "a finite number"), text =>
            ParseFinite(text) is { } value && value >= min && value <= max ? value : null);

    /// <summary>A finite real that is absent unless given (its default depends on the shapes: "K^-0.5").</summary>
    public static Parameter<double?> OptionalReal(string name, string defaultText, string description,
        double min = double.MinValue, double max = double.MaxValue) =>
        new(name, defaultText, description, null, Expected(min, max, "a finite number"), text =>
            ParseFinite(text) is { } value && value >= min && value <= max ? value : (double?)null);

    /// <summary>true/false (also 1/0, yes/no).</summary>
    public static Parameter<bool> Flag(string name, bool defaultValue, string description) =>
        new(name, defaultValue ? "true" : "false", description, defaultValue, "true or false", text =>
            text.Trim().ToLowerInvariant() switch
            {
                "true" or "1" or "yes" => true,
                "false" or "0" or "no" => false,
                _ => (bool?)null,
            });

    /// <summary>One of a fixed set of words (case-insensitive; the value read is lower case).</summary>
    public static Parameter<string> Choice(string name, string defaultValue, string description, params string[] choices) =>
        new(name, defaultValue, description, defaultValue, string.Join(" or ", choices), text =>
            choices.Contains(text.Trim().ToLowerInvariant(), StringComparer.Ordinal) ? text.Trim().ToLowerInvariant() : null);

    private static double? ParseFinite(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && double.IsFinite(value) ? value : null;

    private static string Expected<T>(T min, T max, string what) where T : INumber<T>, IMinMaxValue<T>
    {
        bool low = min != T.MinValue, high = max != T.MaxValue;
        return (low, high) switch
        {
            (true, true) => $"{what} in [{Invariant(min)}, {Invariant(max)}]",
            (true, false) => $"{what} ≥ {Invariant(min)}",
            (false, true) => $"{what} ≤ {Invariant(max)}",
            _ => what,
        };
    }

    private static string Invariant<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}

/// <summary>A parameter whose value is a <typeparamref name="T"/>; <see cref="Problem.Get{T}"/> reads it.</summary>
public sealed class Parameter<T> : ParameterSpec
{
    private readonly T _default;
    private readonly string _expected;
    private readonly Func<string, object?> _parse;

    internal Parameter(string name, string defaultText, string description, T defaultValue, string expected, Func<string, object?> parse)
        : base(name, defaultText, description) =>
        (_default, _expected, _parse) = (defaultValue, expected, parse);

    /// <summary>The value in <paramref name="parameters"/>, or the default; bad input names the parameter, the rule and the text.</summary>
    public T Read(FormParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!parameters.Values.TryGetValue(Name, out string? text))
        {
            return _default;
        }
        return _parse(text) is T value
            ? value
            : throw new InputException($"parameter '{Name}': expected {_expected}, found '{text}'");
    }

    internal override object? ReadValue(FormParameters parameters) => Read(parameters);
}
