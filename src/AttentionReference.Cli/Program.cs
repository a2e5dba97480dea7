namespace AttentionReference.Cli;

internal static class Program
{
    private static int Main(string[] args) => Attnref.Run(args, Console.Out, Console.Error);
}
