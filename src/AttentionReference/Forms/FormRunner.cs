using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>How to run a form on tensors as a user handed them over.</summary>
public sealed record RunOptions
{
    /// <summary>The variant; null = the input's <c>variant</c> metadata, else the form's default.</summary>
    public string? Variant { get; init; }

    /// <summary>The layout of the user's tensors; null = the input's <c>layout</c> metadata, else [B,T,H,D].</summary>
    public Layout? Layout { get; init; }

    /// <summary>Parameters from the command line (<c>--set</c>); they override the input's metadata.</summary>
    public IReadOnlyDictionary<string, string>? Overrides { get; init; }

    /// <summary>The backend.</summary>
    public IBackend Backend { get; init; } = CpuBackend.Instance;

    /// <summary>
    /// Whether to compute the gradients too (the backward pass) even where no cotangent is given: a run given any
    /// cotangent ("do", "dfinal_state", ...) computes them anyway, taking the absent cotangents as zero.
    /// </summary>
    public bool Gradients { get; init; }
}

/// <summary>What a run produced, in the user's layout, with everything needed to label an output file.</summary>
public sealed record RunResult(
    IForm Form,
    string Variant,
    Layout Layout,
    FormParameters Parameters,
    string Backend,
    string Device,
    IReadOnlyDictionary<string, Tensor> Outputs)
{
    /// <summary>The cotangents a backward pass took as zero because the call did not give them.</summary>
    public IReadOnlyList<string> AssumedZero { get; init; } = [];

    /// <summary>The <c>__metadata__</c> an output file carries: form, variant, parameters, layout, backend, version.</summary>
    public Dictionary<string, string> Metadata()
    {
        var metadata = new Dictionary<string, string>(Parameters.Values, StringComparer.Ordinal)
        {
            ["form"] = Form.Name,
            ["variant"] = Variant,
            ["layout"] = Layout == Tensors.Layout.Bhtd ? "bhtd" : "bthd",
            ["backend"] = Backend,
            ["device"] = Device,
            ["library"] = "AttentionReference " + FormCatalog.LibraryVersion,
        };
        return metadata;
    }
}

/// <summary>
/// The path from a user's tensors to a form's outputs, shared by <c>attnref run</c>, <c>attnref check</c> and the
/// goldens: parameters from metadata then overrides, names and aliases resolved, layout changed at the edges only.
/// </summary>
public static class FormRunner
{
    /// <summary>Metadata keys that describe a file rather than set a parameter (PyTorch writes "format": "pt").</summary>
    private static readonly HashSet<string> s_bookkeepingKeys =
        new(["form", "variant", "layout", "backend", "device", "library", "format", "case"], StringComparer.Ordinal);

    /// <summary>Runs <paramref name="form"/> on <paramref name="tensors"/>.</summary>
    public static RunResult Run(
        IForm form,
        IReadOnlyDictionary<string, Tensor> tensors,
        IReadOnlyDictionary<string, string> metadata,
        RunOptions options)
    {
        ArgumentNullException.ThrowIfNull(form);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(options);

        FormParameters parameters = ResolveParameters(form, metadata, options.Overrides);
        string variant = options.Variant ?? metadata.GetValueOrDefault("variant") ?? form.Variants[0];
        if (!form.Variants.Contains(variant, StringComparer.Ordinal))
        {
            throw new InputException($"unknown variant '{variant}' of {form.Name}; known variants: {string.Join(", ", form.Variants)}");
        }
        Layout layout = options.Layout ?? ParseLayout(metadata.GetValueOrDefault("layout"));

        var inputs = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        IReadOnlyList<TensorSpec> cotangents = form is Form withContract ? withContract.Contract.Cotangents : [];
        foreach (TensorSpec spec in form.Inputs.Concat(cotangents))
        {
            if (spec.Resolve(tensors) is { } tensor)
            {
                inputs[spec.Name] = spec.HasTimeAxis ? Layouts.Convert(tensor, layout) : tensor;
            }
        }
        bool backward = options.Gradients || cotangents.Any(c => inputs.ContainsKey(c.Name));
        if (backward && (form is not Form { HasGradients: true } || options.Backend is not CpuBackend))
        {
            throw new InputException(form is Form { HasGradients: true }
                ? $"gradients are computed by the CPU reference only; use --backend cpu"
                : $"{form.Name}: gradients are not implemented yet") { Unsupported = true };
        }

        var outputs = new Dictionary<string, Tensor>(options.Backend.Run(form, variant, inputs, parameters), StringComparer.Ordinal);
        IReadOnlyList<TensorSpec> produced = form.Outputs;
        if (backward)
        {
            var bound = (Form)form;
            foreach (var (name, gradient) in bound.Backward(variant, bound.Contract.Bind(inputs, parameters)))
            {
                outputs[name] = gradient;
            }
            produced = [.. form.Outputs, .. bound.Contract.Gradients];
        }
        var userOutputs = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (TensorSpec spec in produced)
        {
            if (outputs.TryGetValue(spec.Name, out Tensor? tensor))
            {
                userOutputs[spec.Name] = spec.HasTimeAxis ? Layouts.Convert(tensor, layout) : tensor;
            }
        }
        return new RunResult(form, variant, layout, parameters, options.Backend.Name, options.Backend.DeviceName, userOutputs)
        {
            AssumedZero = backward ? cotangents.Where(c => !inputs.ContainsKey(c.Name)).Select(c => c.Name).ToArray() : [],
        };
    }

    /// <summary>The form's parameters present in <paramref name="metadata"/>, then <paramref name="overrides"/> over them.</summary>
    public static FormParameters ResolveParameters(
        IForm form, IReadOnlyDictionary<string, string> metadata, IReadOnlyDictionary<string, string>? overrides)
    {
        ArgumentNullException.ThrowIfNull(form);
        ArgumentNullException.ThrowIfNull(metadata);
        var known = form.Parameters.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        // Metadata may carry keys of other tools; only the form's own parameters are taken from it.
        foreach (var (key, value) in metadata)
        {
            if (known.Contains(key))
            {
                values[key] = value;
            }
        }
        // An override must name a parameter: a typo on the command line is an error, not a silent default. A
        // bookkeeping key (variant, layout, form, ...) is no parameter either: set as one it would be ignored, so the
        // run would silently use the default; it is refused with the option that does set it.
        foreach (var (key, value) in overrides ?? new Dictionary<string, string>())
        {
            if (!known.Contains(key))
            {
                throw new InputException(s_bookkeepingKeys.Contains(key)
                    ? $"'{key}' is not a parameter of {form.Name}: {BookkeepingHint(key)}"
                    : $"unknown parameter '{key}' of {form.Name}; known parameters: {string.Join(", ", known)}");
            }
            values[key] = value;
        }
        return new FormParameters(values);
    }

    private static string BookkeepingHint(string key) => key switch
    {
        "variant" or "layout" or "backend" => $"choose the {key} with --{key} (RunOptions.{char.ToUpperInvariant(key[0])}{key[1..]})",
        "device" => "choose the device with --device",
        "form" => "the form is the command's FORM argument",
        _ => $"'{key}' is file metadata (a file's provenance or case), not a setting of the run",
    };

    private static Layout ParseLayout(string? text) =>
        text is null ? Layout.Bthd
        : Layouts.TryParse(text, out Layout layout) ? layout
        : throw new InputException($"layout must be bthd or bhtd, found '{text}'");
}
