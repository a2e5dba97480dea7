using System.CommandLine;
using System.Globalization;
using System.Text;
using AttentionReference.Compare;
using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;
using Spectre.Console;
using Layout = AttentionReference.Tensors.Layout;

namespace AttentionReference.Cli.Commands;

/// <summary>
/// <c>attnref check FORM --in IN --candidate CAND [--grad COTANGENTS]</c>: computes the reference from IN and compares
/// every output tensor present in CAND, and every gradient present in CAND (the backward pass from the cotangents in IN
/// or the --grad file, absent ones taken as zero and named). Exit 0 within tolerance, 1 outside, 2 bad usage or input.
/// </summary>
internal static class CheckCommand
{
    /// <summary>The most worst elements listed per failing tensor (<c>--worst</c>).</summary>
    public const int MaxWorst = 10_000;

    public static Command Create(CliContext context)
    {
        var form = Shared.FormArgument();
        var input = Shared.InputOption();
        var candidate = Shared.PathOption(new Option<string>("--candidate") { Description = "the kernel's outputs to check (same names as the form's outputs)", Required = true });
        var profile = new Option<string?>("--profile") { Description = "tolerance profile f64|f32|tf32|f16|bf16 (default: each candidate tensor's dtype)" };
        var report = Shared.PathOption(new Option<string?>("--report") { Description = "also write the comparison as JSON to this file (never an input file)" });
        var worst = Shared.BoundedOption(new Option<int>("--worst") { Description = $"how many worst elements to list per failing tensor (0 to {MaxWorst})", DefaultValueFactory = _ => 5 }, 0, MaxWorst);
        var variant = Shared.VariantOption();
        var backend = Shared.BackendOption();
        var precision = Shared.PrecisionOption();
        var device = Shared.DeviceOption();
        var layout = Shared.LayoutOption();
        var set = Shared.SetOption();
        var grad = Shared.GradOption();
        var command = new Command("check", "compare a kernel's outputs (and gradients) with the reference")
        {
            form, input, candidate, profile, report, worst, variant, backend, precision, device, layout, set, grad,
        };
        command.SetAction(parsed => context.Guard(() =>
        {
            IForm chosen = FormCatalog.Find(parsed.GetRequiredValue(form));
            string? profileName = parsed.GetValue(profile);
            ToleranceProfile? fixedProfile = profileName is null ? null
                : ToleranceProfile.TryParse(profileName, out ToleranceProfile? p) ? p
                : throw new InputException($"--profile must be one of {string.Join(", ", ToleranceProfile.All.Select(x => x.Name))}, found '{profileName}'");
            RunOptions options = Shared.Options(chosen, parsed, variant, layout, set, backend, precision, device);
            using var ownedBackend = options.Backend as IDisposable; // an OpenCL context is released when the command ends
            string inputPath = parsed.GetRequiredValue(input), candidatePath = parsed.GetRequiredValue(candidate);
            string? reportPath = parsed.GetValue(report);
            if (reportPath is not null)
            {
                // Checked before the run: a report that cannot be written fails fast, and never replaces an input.
                Shared.RefuseOverwritingInput(reportPath, "--report", inputPath, "--in");
                Shared.RefuseOverwritingInput(reportPath, "--report", candidatePath, "--candidate");
                AtomicFile.CheckWritable(reportPath);
            }
            TensorFile inputFile = Shared.WithCotangents(chosen, Shared.Read(inputPath, Shared.InputNames(chosen)), parsed.GetValue(grad));
            var outputNames = chosen.Outputs.Concat(Shared.Gradients(chosen)).Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
            TensorFile candidateFile = Shared.Read(candidatePath, outputNames.Contains);
            // Gradients in the candidate are judged too: the reference runs its backward pass for them.
            options = options with { Gradients = Shared.Gradients(chosen).Any(g => candidateFile.Contains(g.Name)) };
            RunResult result = Shared.RunForm(chosen, inputPath, inputFile, options);

            CheckReport checkReport = Compare(chosen, result, candidateFile, candidatePath, fixedProfile, parsed.GetValue(worst));
            Render(context.Out, checkReport, candidatePath, fixedProfile);
            if (reportPath is not null)
            {
                AtomicFile.WriteAllBytes(reportPath, Encoding.UTF8.GetBytes(checkReport.ToJson()));
            }
            return checkReport.Passed ? Attnref.Ok : Attnref.OutsideTolerance;
        }));
        return command;
    }

    private static CheckReport Compare(IForm form, RunResult result, TensorFile candidate, string candidatePath,
        ToleranceProfile? fixedProfile, int worstCount)
    {
        TensorSpec[] judged = [.. form.Outputs, .. Shared.Gradients(form)];
        var outputNames = judged.Select(o => o.Name).ToList();
        if (!outputNames.Any(candidate.Contains))
        {
            throw new InputException($"holds none of {form.Name}'s outputs ({string.Join(", ", outputNames)}); it holds {string.Join(", ", candidate.Names.Concat(candidate.Unread))}", candidatePath);
        }
        var comparisons = new List<TensorComparison>();
        foreach (TensorSpec spec in judged.Where(o => candidate.Contains(o.Name) && result.Outputs.ContainsKey(o.Name)))
        {
            Tensor theirs = candidate[spec.Name];
            if (!theirs.DType.IsFloat())
            {
                throw new InputException($"expected a float tensor, found {theirs.DType.ShortName()}", candidatePath, spec.Name);
            }
            try
            {
                comparisons.Add(Comparer.Compare(spec.Name, result.Outputs[spec.Name], theirs,
                    fixedProfile ?? ToleranceProfile.For(theirs.DType), AxisNames(spec, result.Layout), worstCount));
            }
            catch (InputException error)
            {
                throw error.InFile(candidatePath);
            }
        }
        return new CheckReport
        {
            Form = form.Name,
            Variant = result.Variant,
            Backend = result.Backend,
            Device = result.Device,
            Parameters = result.Parameters.Values,
            Profile = fixedProfile,
            Tensors = comparisons,
            MissingOutputs = result.Outputs.Keys.Where(n => !candidate.Contains(n)).ToList(),
            AssumedZeroCotangents = result.AssumedZero,
            IgnoredTensors = candidate.Names.Concat(candidate.Unread).Where(n => !outputNames.Contains(n)).ToList(),
        };
    }

    /// <summary>Index names as users think of them: b, t, h, d in the user's layout.</summary>
    private static string[] AxisNames(TensorSpec spec, Layout layout)
    {
        string[] symbols = spec.Alternatives[0];
        string[] names = symbols.Select((s, axis) => s switch
        {
            "B" => "b",
            _ when s.StartsWith('T') => "t",
            _ when s.StartsWith('H') => "h",
            _ when axis == symbols.Length - 1 && symbols.Length >= 4 => "d",
            _ => s.ToLowerInvariant(),
        }).ToArray();
        if (spec.HasTimeAxis && layout == Layout.Bhtd)
        {
            (names[1], names[2]) = (names[2], names[1]);
        }
        return names;
    }

    private static void Render(TextWriter output, CheckReport report, string candidatePath, ToleranceProfile? fixedProfile)
    {
        var console = Terminal.For(output);
        string profileText = fixedProfile is null ? "profile from each tensor's dtype" : $"profile {fixedProfile.Name}";
        console.MarkupLine(Markup.Escape($"{report.Form} ({report.Variant}, {report.Backend} reference on {report.Device}) vs {candidatePath}: {profileText}"));
        var table = new Table().AddColumns("tensor", "dtype", "shape", "profile", "max abs err", "max rel err", "‖c−r‖/‖r‖",
            "max ulps", "over tol", "NaN/Inf mismatch", "verdict");
        foreach (TensorComparison c in report.Tensors)
        {
            table.AddRow(Markup.Escape(c.Name), c.CandidateDType.ShortName(), Markup.Escape(Tensor.FormatShape(c.Shape)), c.Profile.Name,
                Number(c.MaxAbsoluteError), Number(c.MaxRelativeError), Number(c.NormwiseRelativeError),
                Number(c.MaxUlps), Count(c.OverToleranceCount), Count(c.NonFiniteMismatchCount),
                c.Passed ? "[green]ok[/]" : "[red]FAIL[/]");
        }
        console.Write(table);

        foreach (TensorComparison c in report.Tensors.Where(c => !c.Passed && c.Worst.Count > 0))
        {
            console.MarkupLine(Markup.Escape($"worst elements of {c.Name} (tolerance per element: {Number(c.Profile.ElementRelative)}·(|r| + rms r), rms r = {Number(c.ReferenceRms)}):"));
            var worst = new Table().AddColumns("element", "reference", "candidate", "abs err", "rel err", "ulps", "× tolerance");
            foreach (ElementError e in c.Worst)
            {
                worst.AddRow(Markup.Escape(e.Location), Number(e.Reference), Number(e.Candidate), Number(e.AbsoluteError),
                    Number(e.RelativeError), Number(e.Ulps), e.NonFiniteMismatch ? "NaN/Inf mismatch" : Number(e.Tolerances));
            }
            console.Write(worst);
        }
        foreach (string missing in report.MissingOutputs)
        {
            console.MarkupLine(Markup.Escape($"note: the candidate has no '{missing}'; it was not checked"));
        }
        foreach (string ignored in report.IgnoredTensors)
        {
            console.MarkupLine(Markup.Escape($"note: '{ignored}' is not an output of {report.Form}; ignored"));
        }
        if (report.AssumedZeroCotangents.Count > 0)
        {
            console.MarkupLine(Markup.Escape($"note: the reference's gradients take these cotangents as zero (not given): {string.Join(", ", report.AssumedZeroCotangents)}"));
        }
        console.MarkupLine(report.Passed
            ? "[green]PASS[/]: every checked output is within tolerance"
            : "[red]FAIL[/]: " + Markup.Escape(string.Join("; ", report.Tensors.Where(c => !c.Passed).Select(Summary))));
    }

    private static string Summary(TensorComparison c)
    {
        string first = c.Worst.Count > 0
            ? $", worst {c.Worst[0].Location} = {Number(c.Worst[0].Candidate)} (reference {Number(c.Worst[0].Reference)})"
            : "";
        return $"{c.Name}: {c.OverToleranceCount} element(s) over tolerance, {c.NonFiniteMismatchCount} NaN/Inf mismatch(es), ‖c−r‖/‖r‖ = {Number(c.NormwiseRelativeError)}{first}";
    }

    private static string Number(double x) => x.ToString("G6", CultureInfo.InvariantCulture);

    private static string Count(int n) => n == 0 ? "0" : $"[red]{n}[/]";
}
