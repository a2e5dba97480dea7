using System.CommandLine;
using AttentionReference.Forms;

namespace AttentionReference.Cli.Commands;

/// <summary><c>attnref spec FORM</c>: the form's definition, verbatim from its source file's doc comment.</summary>
internal static class SpecCommand
{
    public static Command Create(CliContext context)
    {
        var form = Shared.FormArgument();
        var command = new Command("spec", "print a form's definition (the math of its source file's doc comment)") { form };
        command.SetAction(parsed => context.Guard(() =>
        {
            context.Out.Write(FormCatalog.Spec(FormCatalog.Find(parsed.GetRequiredValue(form))));
            return Attnref.Ok;
        }));
        return command;
    }
}
