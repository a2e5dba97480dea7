using System.CommandLine;
using AttentionReference.Cli.Commands;
using AttentionReference.Tensors;

namespace AttentionReference.Cli;

/// <summary>
/// The <c>attnref</c> command: forms, spec, run, check, golden. Exit codes: 0 success or within tolerance, 1 outside
/// tolerance, 2 bad usage or bad input (one line on stderr naming the file, the tensor and what was expected).
/// </summary>
internal static class Attnref
{
    public const int Ok = 0;
    public const int OutsideTolerance = 1;
    public const int BadInput = 2;

    /// <summary>Runs the command line; <paramref name="stdout"/> and <paramref name="stderr"/> let tests run it in-process.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var context = new CliContext(stdout, stderr);
        var root = new RootCommand("attnref: the correctness oracle for attention kernels (exact float64 reference).")
        {
            FormsCommand.Create(context),
            SpecCommand.Create(context),
            RunCommand.Create(context),
            CheckCommand.Create(context),
            GoldenCommand.Create(context),
            ExamplesCommand.Create(context),
        };
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            stderr.WriteLine($"attnref: {parsed.Errors[0].Message.ReplaceLineEndings(" ")} (see attnref --help)");
            return BadInput;
        }
        return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }
}

/// <summary>Where a command writes, and the one place that turns bad input into exit code 2.</summary>
internal sealed class CliContext(TextWriter stdout, TextWriter stderr)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Error { get; } = stderr;

    /// <summary>
    /// Runs a command body; bad input becomes one line on stderr and exit code 2. So does a file-system error that
    /// escaped the readers and writers (which name the file and the reason themselves): a path that cannot be read or
    /// written is the user's to fix, never a crash with a stack trace.
    /// </summary>
    public int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (InputException error)
        {
            return Fail(error.Message);
        }
        catch (IOException error)
        {
            return Fail(error.Message);
        }
        catch (UnauthorizedAccessException error)
        {
            return Fail(error.Message);
        }
    }

    private int Fail(string message)
    {
        Error.WriteLine($"attnref: {message.ReplaceLineEndings(" ")}");
        return Attnref.BadInput;
    }
}
