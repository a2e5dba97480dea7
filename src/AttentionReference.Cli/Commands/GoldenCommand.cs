using System.CommandLine;
using System.Globalization;
using AttentionReference.Compare;
using AttentionReference.Forms;
using AttentionReference.Golden;
using AttentionReference.IO;
using AttentionReference.Numerics;
using AttentionReference.Tensors;
using Spectre.Console;

namespace AttentionReference.Cli.Commands;

/// <summary><c>attnref golden verify|write [--dir golden]</c>: check the shipped goldens, or write them anew.</summary>
internal static class GoldenCommand
{
    public static Command Create(CliContext context)
    {
        var verifyDir = DirectoryOption();
        var backend = Shared.BackendOption();
        var device = Shared.DeviceOption();
        var verify = new Command("verify", "recompute every golden case and compare with its stored outputs (f64 profile)") { verifyDir, backend, device };
        verify.SetAction(parsed => context.Guard(() =>
        {
            // Goldens are f64 and compared under the f64 profile, so the backend computes in f64.
            string directory = parsed.GetValue(verifyDir)!;
            GoldenManifest.Check(directory);
            IBackend chosen = Shared.Backend(parsed.GetValue(backend) ?? "cpu", "f64", parsed.GetValue(device));
            context.Out.WriteLine($"device: {chosen.DeviceName}");
            IReadOnlyList<GoldenResult> results;
            try
            {
                results = GoldenStore.Verify(directory, chosen);
            }
            finally
            {
                (chosen as IDisposable)?.Dispose();
            }
            var table = new Table().AddColumns("case", "tensor", "‖a−b‖/‖b‖", "max abs", "verdict");
            foreach (GoldenResult result in results)
            {
                if (result.Skipped is not null)
                {
                    table.AddRow(Markup.Escape(result.Id), "", "", "", "[yellow]skipped[/] " + Markup.Escape(result.Skipped));
                }
                if (result.Problem is not null)
                {
                    table.AddRow(Markup.Escape(result.Id), "", "", "", "[red]FAIL[/] " + Markup.Escape(result.Problem));
                }
                foreach (TensorComparison c in result.Comparisons)
                {
                    table.AddRow(Markup.Escape(result.Id), c.Name,
                        c.NormwiseRelativeError.ToString("E2", CultureInfo.InvariantCulture),
                        c.MaxAbsoluteError.ToString("E2", CultureInfo.InvariantCulture),
                        c.Passed ? "[green]ok[/]" : "[red]FAIL[/]");
                }
            }
            Terminal.For(context.Out).Write(table);
            context.Out.WriteLine($"cpu simd: {VectorKernels.SimdWidth}");
            int failed = results.Count(r => r.Failed), skipped = results.Count(r => r.Skipped is not null);
            context.Out.WriteLine($"{results.Count(r => r.Passed)} of {results.Count} golden cases pass"
                + (skipped > 0 ? $", {skipped} skipped (no implementation on this backend), {failed} failed" : ""));
            return failed == 0 ? Attnref.Ok : Attnref.OutsideTolerance;
        }));

        var writeDir = DirectoryOption();
        var forms = new Option<string[]>("--form") { Description = "write only these forms' cases (repeatable)", AllowMultipleArgumentsPerToken = true };
        var manifestOnly = new Option<bool>("--manifest-only") { Description = "compute nothing: rebuild the manifest from the case files present (after merging goldens)" };
        var missing = new Option<bool>("--missing") { Description = "write only the cases that have no file yet (new cases), leaving every existing golden as it is" };
        var write = new Command("write", "compute every golden case with the CPU reference and write the files and the manifest") { writeDir, forms, manifestOnly, missing };
        write.SetAction(parsed => context.Guard(() =>
        {
            string directory = parsed.GetValue(writeDir)!;
            if (parsed.GetValue(manifestOnly))
            {
                if (!Directory.Exists(directory))
                {
                    throw new InputException(File.Exists(directory) ? "is a file; expected the golden folder" : "no such folder", directory);
                }
                GoldenStore.WriteManifest(directory);
                context.Out.WriteLine("rewrote the manifest from the case files present");
                return Attnref.Ok;
            }
            // Every --form is checked before anything is made or written: a typo writes nothing.
            string[] chosen = parsed.GetValue(forms) ?? [];
            foreach (string name in chosen)
            {
                FormCatalog.Find(name);
                if (!GoldenCases.All.Any(c => c.Form == name))
                {
                    throw new InputException($"--form {name}: the form has no golden cases");
                }
            }
            AtomicFile.CreateFolder(directory);
            IReadOnlyList<string> written = GoldenStore.Write(directory, chosen.Length == 0 ? null : chosen, onlyMissing: parsed.GetValue(missing));
            context.Out.WriteLine($"wrote {written.Count} golden cases and the manifest");
            return Attnref.Ok;
        }));

        return new Command("golden", "the golden files: verify them or write them anew") { verify, write };
    }

    private static Option<string> DirectoryOption() =>
        Shared.PathOption(new Option<string>("--dir") { Description = "the golden folder", DefaultValueFactory = _ => "golden" });
}
