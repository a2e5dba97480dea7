using System.CommandLine;
using System.Text.Json;
using AttentionReference.Forms;
using Spectre.Console;

namespace AttentionReference.Cli.Commands;

/// <summary><c>attnref forms [--json]</c>: every form with its family, variants, tensors and parameters.</summary>
internal static class FormsCommand
{
    public static Command Create(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "machine-readable output" };
        var command = new Command("forms", "list every form with its family, variants, inputs, outputs and parameters") { json };
        command.SetAction(parsed => context.Guard(() =>
        {
            if (parsed.GetValue(json))
            {
                WriteJson(context.Out);
                return Attnref.Ok;
            }
            var console = Terminal.For(context.Out);
            var table = new Table().AddColumns("form", "family", "variants", "inputs", "outputs", "parameters", "gradients");
            foreach (IForm form in FormCatalog.All)
            {
                table.AddRow(
                    form.Name,
                    form.Family,
                    string.Join(", ", form.Variants),
                    Markup.Escape(string.Join("\n", form.Inputs.Select(Describe))),
                    Markup.Escape(string.Join("\n", form.Outputs.Select(Describe))),
                    Markup.Escape(string.Join("\n", form.Parameters.Select(p => $"{p.Name}={p.Default}"))),
                    Markup.Escape(Shared.Gradients(form) is { Count: > 0 } gradients
                        ? string.Join("\n", gradients.Select(Describe)) + "\nfrom " + string.Join(", ", Shared.Cotangents(form).Select(c => c.Name))
                        : "not yet"));
            }
            console.Write(table);
            return Attnref.Ok;
        }));
        return command;
    }

    private static string Describe(TensorSpec spec) =>
        $"{spec.Name}{spec.ShapeText}{(spec.Optional ? "?" : "")}"
        + (spec.Aliases is { Count: > 0 } aliases ? $" (alias {string.Join(", ", aliases)})" : "");

    private static void WriteJson(TextWriter output)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartArray();
            foreach (IForm form in FormCatalog.All)
            {
                writer.WriteStartObject();
                writer.WriteString("name", form.Name);
                writer.WriteString("family", form.Family);
                writer.WriteStartArray("variants");
                form.Variants.ToList().ForEach(writer.WriteStringValue);
                writer.WriteEndArray();
                WriteTensors(writer, "inputs", form.Inputs);
                WriteTensors(writer, "outputs", form.Outputs);
                // The backward pass: the cotangents it takes (inputs) and the gradients it gives; empty without one.
                WriteTensors(writer, "cotangents", Shared.Cotangents(form));
                WriteTensors(writer, "gradients", Shared.Gradients(form));
                writer.WriteStartArray("parameters");
                foreach (ParameterSpec p in form.Parameters)
                {
                    writer.WriteStartObject();
                    writer.WriteString("name", p.Name);
                    writer.WriteString("default", p.Default);
                    writer.WriteString("description", p.Description);
                    writer.WriteEndObject();
                }
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    private static void WriteTensors(Utf8JsonWriter writer, string name, IReadOnlyList<TensorSpec> specs)
    {
        writer.WriteStartArray(name);
        foreach (TensorSpec spec in specs)
        {
            writer.WriteStartObject();
            writer.WriteString("name", spec.Name);
            writer.WriteString("shape", spec.ShapeText);
            writer.WriteString("description", spec.Description);
            writer.WriteBoolean("optional", spec.Optional);
            writer.WriteStartArray("aliases");
            (spec.Aliases ?? []).ToList().ForEach(writer.WriteStringValue);
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
    }
}
