using AttentionReference.Cli;

namespace AttentionReference.Tests.Cli;

/// <summary>Runs <c>attnref</c> in-process, as a user would from the repository root.</summary>
internal static class CliRunner
{
    public sealed record Outcome(int ExitCode, string Out, string Error);

    public static Outcome Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = Attnref.Run(args, stdout, stderr);
        return new Outcome(code, stdout.ToString(), stderr.ToString());
    }
}
