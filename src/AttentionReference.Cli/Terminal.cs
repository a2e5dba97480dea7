using Spectre.Console;

namespace AttentionReference.Cli;

/// <summary>A Spectre console over a writer: colours on a terminal, plain text into pipes, files and tests.</summary>
internal static class Terminal
{
    public static IAnsiConsole For(TextWriter writer)
    {
        bool isTerminal = ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = isTerminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = isTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        if (!isTerminal)
        {
            console.Profile.Width = 160; // pipes have no width; wide enough that tables do not wrap
        }
        return console;
    }
}
