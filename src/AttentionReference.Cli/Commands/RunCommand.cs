using System.CommandLine;
using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Cli.Commands;

/// <summary>
/// <c>attnref run FORM --in IN --out OUT [--grad COTANGENTS]</c>: computes the form's outputs and writes them, with the
/// form, variant, parameters, backend and library version in the output's metadata; given cotangents (in IN or in
/// the --grad file), also the gradients of the inputs. The output is written whole or not at all.
/// </summary>
internal static class RunCommand
{
    public static Command Create(CliContext context)
    {
        var form = Shared.FormArgument();
        var input = Shared.InputOption();
        var output = Shared.PathOption(new Option<string>("--out") { Description = "output file (.safetensors, or .npy for a single output); never the input file", Required = true });
        var variant = Shared.VariantOption();
        var backend = Shared.BackendOption();
        var precision = Shared.PrecisionOption();
        var device = Shared.DeviceOption();
        var layout = Shared.LayoutOption();
        var outDtype = new Option<string>("--out-dtype") { Description = "f64 (default), f32, f16 or bf16 (round to nearest even)", DefaultValueFactory = _ => "f64" };
        var set = Shared.SetOption();
        var grad = Shared.GradOption();
        var command = new Command("run", "compute a form's outputs (and, given cotangents, the gradients of its inputs) from an input file")
        {
            form, input, output, variant, backend, precision, device, layout, outDtype, set, grad,
        };
        command.SetAction(parsed => context.Guard(() =>
        {
            IForm chosen = FormCatalog.Find(parsed.GetRequiredValue(form));
            string dtypeText = parsed.GetValue(outDtype) ?? "f64";
            if (!DTypes.TryParse(dtypeText, out DType dtype) || !dtype.IsFloat())
            {
                throw new InputException($"--out-dtype must be f64, f32, f16 or bf16, found '{dtypeText}'");
            }
            RunOptions options = Shared.Options(chosen, parsed, variant, layout, set, backend, precision, device);
            using var ownedBackend = options.Backend as IDisposable; // an OpenCL context is released when the command ends
            string inputPath = parsed.GetRequiredValue(input), outputPath = parsed.GetRequiredValue(output);
            // The output's path is checked before the run (which may take long), and may never be the input's.
            Shared.RefuseOverwritingInput(outputPath, "--out", inputPath, "--in");
            AtomicFile.CheckWritable(outputPath);
            string? gradPath = parsed.GetValue(grad);
            if (gradPath is not null)
            {
                Shared.RefuseOverwritingInput(outputPath, "--out", gradPath, "--grad");
            }
            TensorFile inputFile = Shared.WithCotangents(chosen, Shared.Read(inputPath, Shared.InputNames(chosen)), gradPath);
            options = options with { Gradients = gradPath is not null };
            var clock = System.Diagnostics.Stopwatch.StartNew();
            RunResult result = Shared.RunForm(chosen, inputPath, inputFile, options);
            double seconds = clock.Elapsed.TotalSeconds;

            var file = new TensorFile();
            foreach (var (name, tensor) in result.Outputs)
            {
                file.Add(name, tensor.RoundTo(dtype));
            }
            foreach (var (key, value) in result.Metadata())
            {
                file.Metadata[key] = value;
            }
            TensorFiles.Write(outputPath, file);
            context.Out.WriteLine($"{chosen.Name} ({result.Variant}, {result.Backend}): wrote {string.Join(", ", result.Outputs.Select(o => $"{o.Key}{o.Value.ShapeString}"))} as {dtype.ShortName()} to {outputPath} (computed in {seconds:F3} s)");
            if (result.AssumedZero.Count > 0)
            {
                context.Out.WriteLine($"gradients from the cotangents given; taken as zero: {string.Join(", ", result.AssumedZero)}");
            }
            return Attnref.Ok;
        }));
        return command;
    }
}
