using System.CommandLine;
using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Cli.Commands;

/// <summary>Options and steps that run and check share.</summary>
internal static class Shared
{
    public static Argument<string> FormArgument() => new("form") { Description = "the form's name (see attnref forms)" };

    public static Option<string> InputOption() => PathOption(new Option<string>("--in") { Description = "input file (.safetensors, .npz, .npy)", Required = true });

    /// <summary>
    /// A path option: an empty path (<c>--out ''</c>) is a usage error naming the option, like any other bad option
    /// value, before anything is read or computed.
    /// </summary>
    public static Option<T> PathOption<T>(Option<T> option)
    {
        ArgumentNullException.ThrowIfNull(option);
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<T>() is string path && path.Trim().Length == 0)
            {
                result.AddError($"{option.Name} expects a path, found an empty one");
            }
        });
        return option;
    }

    /// <summary>An integer option whose value must lie in [<paramref name="min"/>, <paramref name="max"/>]; otherwise a usage error naming it.</summary>
    public static Option<int> BoundedOption(Option<int> option, int min, int max)
    {
        ArgumentNullException.ThrowIfNull(option);
        option.Validators.Add(result =>
        {
            int value = result.GetValueOrDefault<int>();
            if (value < min || value > max)
            {
                result.AddError($"{option.Name} must be an integer from {min} to {max}, found {value}");
            }
        });
        return option;
    }

    /// <summary>
    /// Refuses an output path that names an input file (the same path, or a link to it): an output never replaces an
    /// input, so a mistyped command line cannot destroy the case it was given.
    /// </summary>
    public static void RefuseOverwritingInput(string output, string outputOption, string input, string inputOption)
    {
        if (SameFile(output, input))
        {
            throw new InputException($"{outputOption} names the {inputOption} file; write to another file (an input is never overwritten)", output);
        }
    }

    /// <summary>Whether two paths name one file: equal full paths, or links that resolve to the same file.</summary>
    private static bool SameFile(string a, string b)
    {
        string fullA = Resolved(a), fullB = Resolved(b);
        return string.Equals(fullA, fullB, OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

        static string Resolved(string path)
        {
            string full = Path.GetFullPath(path);
            try
            {
                return File.Exists(full) ? File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full : full;
            }
            catch (IOException)
            {
                return full; // a link loop or an unreadable link: compared by its own path
            }
        }
    }

    /// <summary>
    /// The names a form reads (inputs, the cotangents of its outputs, and their aliases): only these are read from an
    /// input file.
    /// </summary>
    public static Func<string, bool> InputNames(IForm form) => Names(form.Inputs.Concat(Cotangents(form)));

    /// <summary>The cotangents a form's backward pass takes ("do", "dfinal_state", ...), none for a form without one.</summary>
    public static IReadOnlyList<TensorSpec> Cotangents(IForm form) => form is Form { HasGradients: true } f ? f.Contract.Cotangents : [];

    /// <summary>The gradients a form's backward pass gives ("dq", ...), none for a form without one.</summary>
    public static IReadOnlyList<TensorSpec> Gradients(IForm form) => form is Form { HasGradients: true } f ? f.Contract.Gradients : [];

    private static Func<string, bool> Names(IEnumerable<TensorSpec> specs) =>
        specs.SelectMany(spec => (string[])[spec.Name, .. spec.Aliases ?? []]).ToHashSet(StringComparer.Ordinal).Contains;

    public static Option<string?> GradOption() => PathOption(new Option<string?>("--grad")
    {
        Description = "a second file holding the cotangents of the outputs (do, dfinal_state alias dht, ...): computes the gradients; cotangents in the input file do so too",
    });

    /// <summary>
    /// The input file's tensors, plus the cotangents of <paramref name="gradPath"/> when given (a tensor in both files
    /// is refused: the command line would say two things).
    /// </summary>
    public static TensorFile WithCotangents(IForm form, TensorFile input, string? gradPath)
    {
        if (gradPath is null)
        {
            return input;
        }
        TensorFile cotangents = Read(gradPath, Names(Cotangents(form)));
        if (cotangents.Count == 0)
        {
            throw new InputException($"holds none of {form.Name}'s cotangents ({string.Join(", ", Cotangents(form).Select(c => c.Name))})", gradPath);
        }
        var merged = new TensorFile();
        foreach (string name in input.Names)
        {
            merged.Add(name, input[name]);
        }
        foreach (string name in cotangents.Names)
        {
            if (input.Contains(name))
            {
                throw new InputException("is given twice, in --in and in --grad", gradPath, name);
            }
            merged.Add(name, cotangents[name]);
        }
        foreach (var (key, value) in input.Metadata)
        {
            merged.Metadata[key] = value;
        }
        return merged;
    }

    public static Option<string?> VariantOption() => new("--variant") { Description = "the variant (default: the input's metadata, else the form's first)" };

    public static Option<string> BackendOption() => new("--backend")
    {
        Description = "cpu (the exact reference), gpu (ILGPU: CUDA where an NVIDIA driver is present, else ILGPU's CPU accelerator) or opencl",
        DefaultValueFactory = _ => "cpu",
    };

    public static Option<string?> LayoutOption() => new("--layout") { Description = "bthd ([B,T,H,D], default) or bhtd ([B,H,T,D], PyTorch SDPA)" };

    public static Option<string?> DeviceOption() => new("--device")
    {
        Description = "gpu: a substring of the device's name or kind (\"cuda\", \"cpu\", \"H100\"; default: REF_GPU_DEVICE, else CUDA, else the CPU accelerator); "
            + "opencl: a substring of \"platform: device\" (default: REF_OPENCL_DEVICE, else the first)",
    };

    public static Option<string> PrecisionOption() => new("--precision") { Description = "f64 (default) or f32 (gpu and opencl)", DefaultValueFactory = _ => "f64" };

    public static Option<string[]> SetOption() => new("--set")
    {
        Description = "parameter override key=value (repeatable); overrides the input's __metadata__",
        AllowMultipleArgumentsPerToken = true,
    };

    /// <summary>Reads the tensors of a tensor file for which <paramref name="wanted"/> holds; its errors already name the file.</summary>
    public static TensorFile Read(string path, Func<string, bool>? wanted = null) => TensorFiles.Read(path, wanted);

    /// <summary>
    /// Runs the form on the input file. An error that names no file is about the input file, unless it is about a
    /// parameter the command line set (<c>--set</c>): the file is not to blame for that.
    /// </summary>
    public static RunResult RunForm(IForm form, string inputPath, TensorFile input, RunOptions options)
    {
        try
        {
            return FormRunner.Run(form, input.Tensors, input.Metadata, options);
        }
        catch (InputException error) when (error.File is null && error.Tensor is null
            && (options.Overrides ?? new Dictionary<string, string>()).Keys.Any(key => error.Detail.StartsWith($"parameter '{key}'", StringComparison.Ordinal)))
        {
            throw; // the parameter rule's message: "parameter 'chunk_size': expected an integer ≥ 1, found '0'"
        }
        catch (InputException error)
        {
            throw error.InFile(inputPath);
        }
    }

    /// <summary>
    /// The run options the command line gives, checked against <paramref name="form"/> before any file is read: an
    /// unknown variant, layout or parameter is the command line's error and names no file.
    /// </summary>
    public static RunOptions Options(IForm form, ParseResult parsed, Option<string?> variant, Option<string?> layout, Option<string[]> set,
        Option<string> backend, Option<string> precision, Option<string?> device)
    {
        ArgumentNullException.ThrowIfNull(form);
        string? layoutText = parsed.GetValue(layout);
        Layout? chosenLayout = layoutText is null ? null
            : Layouts.TryParse(layoutText, out Layout l) ? l
            : throw new InputException($"--layout must be bthd or bhtd, found '{layoutText}'");
        string? chosenVariant = parsed.GetValue(variant);
        if (chosenVariant is not null && !form.Variants.Contains(chosenVariant, StringComparer.Ordinal))
        {
            throw new InputException($"--variant: unknown variant '{chosenVariant}' of {form.Name}; known variants: {string.Join(", ", form.Variants)}");
        }
        Dictionary<string, string> overrides = ParseSettings(parsed.GetValue(set) ?? []);
        FormRunner.ResolveParameters(form, new Dictionary<string, string>(), overrides); // names only: values are checked by the run
        return new RunOptions
        {
            Variant = chosenVariant,
            Layout = chosenLayout,
            Overrides = overrides,
            Backend = Backend(parsed.GetValue(backend) ?? "cpu", parsed.GetValue(precision) ?? "f64", parsed.GetValue(device)),
        };
    }

    /// <summary>
    /// <c>--set key=value</c> settings as a map. Each key may be given once: a repeated key is an error rather than a
    /// silent last-one-wins, since a command line that sets one parameter twice says two different things.
    /// </summary>
    public static Dictionary<string, string> ParseSettings(IEnumerable<string> settings)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string setting in settings)
        {
            int equals = setting.IndexOf('=', StringComparison.Ordinal);
            string key = equals < 0 ? "" : setting[..equals].Trim();
            if (key.Length == 0)
            {
                throw new InputException($"--set expects key=value, found '{setting}'");
            }
            string value = setting[(equals + 1)..].Trim();
            if (!values.TryAdd(key, value))
            {
                throw new InputException($"--set gives '{key}' twice ('{values[key]}', then '{value}'); give each parameter once");
            }
        }
        return values;
    }

    public static IBackend Backend(string name, string precision, string? device)
    {
        if (precision is not ("f64" or "f32"))
        {
            throw new InputException($"--precision must be f64 or f32, found '{precision}'");
        }
        switch (name)
        {
            case "cpu":
                // The reference is exact by design: it computes in double only.
                return precision == "f64" ? CpuBackend.Instance
                    : throw new InputException($"--precision {precision}: the cpu backend computes in f64 only (f32 is a gpu and opencl option)");
            case "gpu":
                return new Gpu.GpuBackend(device, precision == "f64" ? Gpu.Precision.F64 : Gpu.Precision.F32);
            case "opencl":
                return new OpenCL.OpenClBackend(device, precision == "f64" ? OpenCL.Precision.F64 : OpenCL.Precision.F32);
            default:
                throw new InputException($"--backend must be cpu, gpu or opencl, found '{name}'");
        }
    }
}
