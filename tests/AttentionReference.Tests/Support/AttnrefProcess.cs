using System.Diagnostics;

namespace AttentionReference.Tests.Support;

/// <summary>
/// attnref as a child process, from the test binaries' folder: through the dotnet host when the tests themselves run
/// under it (dotnet test), else through the self-contained apphost next to them (attnref-tests on the GPU machine,
/// which has no .NET).
/// </summary>
internal static class AttnrefProcess
{
    public static ProcessStartInfo StartInfo(params string[] arguments)
    {
        bool underDotnet = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet";
        var start = underDotnet
            ? new ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "attnref.dll") } }
            : new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "attnref"));
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        return start;
    }
}
