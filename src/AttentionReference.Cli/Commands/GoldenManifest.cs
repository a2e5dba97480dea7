using System.Text.Json;
using AttentionReference.Golden;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Cli.Commands;

/// <summary>
/// Checks the shape of a golden folder's manifest before <c>golden verify</c> trusts it, so that a hand-edited or
/// foreign manifest gets one line saying what is missing or wrong (not "The given key was not present in the
/// dictionary."), and so that no case can point outside the folder or at a file that is not a regular one.
/// </summary>
internal static class GoldenManifest
{
    /// <summary>The largest manifest read: the shipped one is a few hundred kilobytes.</summary>
    public const long MaxBytes = 64L << 20;

    private static readonly string[] s_stringFields = ["form", "case", "variant", "file", "sha256"];
    private static readonly string[] s_objectFields = ["inputs", "outputs"];

    /// <summary>Checks that <paramref name="directory"/> is a folder whose manifest has every field verify reads.</summary>
    public static void Check(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new InputException(File.Exists(directory) ? "is a file; expected the golden folder" : "no such folder", directory);
        }
        string path = Path.Combine(directory, GoldenStore.ManifestName);
        if (Directory.Exists(path))
        {
            throw new InputException("is a directory; expected the manifest file", path);
        }
        if (!File.Exists(path))
        {
            throw new InputException("no such file", path);
        }
        long length = new FileInfo(path).Length;
        if (length == 0 || length > MaxBytes)
        {
            throw new InputException($"manifest reports {length} bytes; expected a JSON file of 1 to {MaxBytes} bytes", path);
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InputException($"manifest is not valid JSON: {e.Message}", path, inner: e);
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InputException($"manifest must be a JSON object, found {Kind(root)}", path);
            }
            if (!root.TryGetProperty("format", out JsonElement format) || format.ValueKind != JsonValueKind.String)
            {
                throw new InputException($"manifest lacks the string \"format\" (expected \"{GoldenStore.Format}\")", path);
            }
            if (format.GetString() != GoldenStore.Format)
            {
                throw new InputException($"manifest format is \"{format.GetString()}\"; expected \"{GoldenStore.Format}\"", path);
            }
            if (!root.TryGetProperty("cases", out JsonElement cases) || cases.ValueKind != JsonValueKind.Array)
            {
                throw new InputException("manifest lacks the array \"cases\"", path);
            }
            int index = 0;
            foreach (JsonElement entry in cases.EnumerateArray())
            {
                CheckCase(entry, index++, directory, path);
            }
        }
    }

    private static void CheckCase(JsonElement entry, int index, string directory, string path)
    {
        string where = $"manifest case {index}";
        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw new InputException($"{where} must be a JSON object, found {Kind(entry)}", path);
        }
        foreach (string field in s_stringFields)
        {
            if (!entry.TryGetProperty(field, out JsonElement value) || value.ValueKind != JsonValueKind.String)
            {
                throw new InputException($"{where} lacks the string \"{field}\"", path);
            }
        }
        foreach (string field in s_objectFields)
        {
            if (!entry.TryGetProperty(field, out JsonElement value) || value.ValueKind != JsonValueKind.Object)
            {
                throw new InputException($"{where} lacks the object \"{field}\" (tensor names to shapes)", path);
            }
        }
        string file = entry.GetProperty("file").GetString()!;
        string folder = Path.GetFullPath(directory) + Path.DirectorySeparatorChar;
        string full = Path.GetFullPath(Path.Combine(directory, file));
        if (Path.IsPathRooted(file) || !full.StartsWith(folder, StringComparison.Ordinal))
        {
            throw new InputException($"{where}: file \"{file}\" lies outside the golden folder", path);
        }
        if (File.Exists(full))
        {
            long length = new FileInfo(full).Length;
            if (length == 0 || length > ReadLimits.LargestFile)
            {
                throw new InputException(
                    $"{where}: file \"{file}\" reports {length} bytes; expected a regular file of 1 to {ReadLimits.LargestFile} bytes", path);
            }
        }
    }

    private static string Kind(JsonElement json) => json.ValueKind.ToString().ToLowerInvariant();
}
