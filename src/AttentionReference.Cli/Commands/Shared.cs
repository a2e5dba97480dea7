using System.CommandLine;
using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Cli.Commands;

/// <summary>Options and steps that run and check share.</summary>
internal static class Shared
{
    public static Argument<string> FormArgument() => new("form") { Description = "the form's name (see attnref forms)" };

    public static Option<string> InputOption() => new("--in") { Description = "input file (.safetensors, .npz, .npy)", Required = true };

    public static Option<string?> VariantOption() => new("--variant") { Description = "the variant (default: the input's metadata, else the form's first)" };

    public static Option<string> BackendOption() => new("--backend") { Description = "cpu (the exact reference) or opencl", DefaultValueFactory = _ => "cpu" };

    public static Option<string?> LayoutOption() => new("--layout") { Description = "bthd ([B,T,H,D], default) or bhtd ([B,H,T,D], PyTorch SDPA)" };

    public static Option<string?> DeviceOption() => new("--device") { Description = "OpenCL device: a substring of \"platform: device\" (default: REF_OPENCL_DEVICE, else the first)" };

    public static Option<string> PrecisionOption() => new("--precision") { Description = "f64 (default) or f32 (OpenCL only)", DefaultValueFactory = _ => "f64" };

    public static Option<string[]> SetOption() => new("--set")
    {
        Description = "parameter override key=value (repeatable); overrides the input's __metadata__",
        AllowMultipleArgumentsPerToken = true,
    };

    /// <summary>Reads a tensor file; its errors already name the file.</summary>
    public static TensorFile Read(string path) => TensorFiles.Read(path);

    /// <summary>Runs the form on the input file; errors that name no file are attributed to the input file.</summary>
    public static RunResult RunForm(IForm form, string inputPath, TensorFile input, RunOptions options)
    {
        try
        {
            return FormRunner.Run(form, input.Tensors, input.Metadata, options);
        }
        catch (InputException error)
        {
            throw error.InFile(inputPath);
        }
    }

    public static RunOptions Options(ParseResult parsed, Option<string?> variant, Option<string?> layout, Option<string[]> set,
        Option<string> backend, Option<string> precision, Option<string?> device)
    {
        string? layoutText = parsed.GetValue(layout);
        Layout? chosenLayout = layoutText is null ? null
            : Layouts.TryParse(layoutText, out Layout l) ? l
            : throw new InputException($"--layout must be bthd or bhtd, found '{layoutText}'");
        return new RunOptions
        {
            Variant = parsed.GetValue(variant),
            Layout = chosenLayout,
            Overrides = ParseSettings(parsed.GetValue(set) ?? []),
            Backend = Backend(parsed.GetValue(backend) ?? "cpu", parsed.GetValue(precision) ?? "f64", parsed.GetValue(device)),
        };
    }

    public static Dictionary<string, string> ParseSettings(IEnumerable<string> settings)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string setting in settings)
        {
            int equals = setting.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw new InputException($"--set expects key=value, found '{setting}'");
            }
            values[setting[..equals].Trim()] = setting[(equals + 1)..].Trim();
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
                    : throw new InputException($"--precision {precision}: the cpu backend computes in f64 only (f32 is an OpenCL option)");
            case "opencl":
                return new OpenCL.OpenClBackend(device, precision == "f64" ? OpenCL.Precision.F64 : OpenCL.Precision.F32);
            default:
                throw new InputException($"--backend must be cpu or opencl, found '{name}'");
        }
    }
}
