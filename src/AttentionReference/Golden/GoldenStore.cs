using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using AttentionReference.Compare;
using AttentionReference.Forms;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Golden;

/// <summary>
/// The verdict on one golden case: a problem with the file itself, or the comparison of each output; or a skip, when
/// the backend has no implementation of the case's form or variant.
/// </summary>
public sealed record GoldenResult(string Id, string? Problem, IReadOnlyList<TensorComparison> Comparisons, string? Skipped = null)
{
    /// <summary>Not skipped, no problem, and every output within the f64 profile.</summary>
    public bool Passed => Skipped is null && Problem is null && Comparisons.All(c => c.Passed);

    /// <summary>Failed: a problem or an output outside the profile (a skip is neither passed nor failed).</summary>
    public bool Failed => Skipped is null && !Passed;

    /// <summary>Whether the case pins a backward pass (a gradient golden), which only the CPU reference computes.</summary>
    public bool IsGradient => Id.EndsWith(GoldenCase.GradientSuffix, StringComparison.Ordinal);
}

/// <summary>
/// The golden folder: <c>golden/&lt;form&gt;/&lt;case&gt;.safetensors</c> (inputs and expected f64 outputs, parameters in
/// <c>__metadata__</c>) and <c>golden/manifest.json</c>, which lists every case with its form, variant, parameters,
/// tensor shapes and the SHA-256 of its file, so any engine in any language can load and check them.
/// </summary>
public static class GoldenStore
{
    /// <summary>The manifest's file name inside the golden folder.</summary>
    public const string ManifestName = "manifest.json";

    /// <summary>The manifest format tag.</summary>
    public const string Format = "attnref-golden/1";

    /// <summary>
    /// Computes and writes the cases whose form is in <paramref name="forms"/> (all when null), then rewrites the
    /// manifest from every case file present. Files are written whole or not at all. With
    /// <paramref name="onlyMissing"/>, a case whose file exists is left as it is (adding cases never rewrites others).
    /// </summary>
    public static IReadOnlyList<string> Write(string directory, IReadOnlyCollection<string>? forms = null, bool onlyMissing = false)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var written = new List<string>();
        foreach (GoldenCase goldenCase in GoldenCases.All.Where(c => forms is null || forms.Contains(c.Form)))
        {
            if (onlyMissing && File.Exists(CasePath(directory, goldenCase)))
            {
                continue;
            }
            IForm form = FormCatalog.Find(goldenCase.Form);
            IReadOnlyDictionary<string, Tensor> inputs = goldenCase.Inputs();
            RunResult result = FormRunner.Run(form, inputs, goldenCase.Parameters, new RunOptions { Variant = goldenCase.Variant });
            var file = new TensorFile();
            foreach (var (name, tensor) in inputs)
            {
                file.Add(name, tensor);
            }
            foreach (var (name, tensor) in result.Outputs)
            {
                file.Add(name, tensor);
            }
            foreach (var (key, value) in result.Metadata())
            {
                file.Metadata[key] = value;
            }
            file.Metadata["case"] = goldenCase.Name;
            file.Metadata["inputs"] = string.Join(",", inputs.Keys);
            file.Metadata["outputs"] = string.Join(",", result.Outputs.Keys);
            string path = CasePath(directory, goldenCase);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            AtomicFile.WriteAllBytes(path, SafeTensors.Serialize(file));
            written.Add(goldenCase.Id);
        }
        WriteManifest(directory);
        return written;
    }

    /// <summary>
    /// Checks every case of the manifest: the file's hash, then the outputs recomputed by <paramref name="backend"/>
    /// from the stored inputs against the stored outputs under the f64 profile. Cases defined in code but missing
    /// from the manifest are reported too, so a forgotten <c>golden write</c> cannot pass unnoticed.
    /// </summary>
    public static IReadOnlyList<GoldenResult> Verify(string directory, IBackend? backend = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string manifestPath = Path.Combine(directory, ManifestName);
        if (!File.Exists(manifestPath))
        {
            throw new InputException("no such file", manifestPath);
        }
        var results = new List<GoldenResult>();
        var listed = new HashSet<string>(StringComparer.Ordinal);
        foreach (ManifestEntry entry in ReadManifest(manifestPath))
        {
            listed.Add(entry.Id);
            results.Add(VerifyCase(directory, entry, backend ?? CpuBackend.Instance));
        }
        foreach (GoldenCase goldenCase in GoldenCases.All.Where(c => !listed.Contains(c.Id)))
        {
            results.Add(new GoldenResult(goldenCase.Id, "defined in code but not in the manifest: run attnref golden write", []));
        }
        return results;
    }

    private static GoldenResult VerifyCase(string directory, ManifestEntry entry, IBackend backend)
    {
        string path = Path.Combine(directory, entry.File);
        if (!File.Exists(path))
        {
            return new GoldenResult(entry.Id, $"{entry.File}: no such file", []);
        }
        byte[] bytes = File.ReadAllBytes(path);
        if (Sha256(bytes) != entry.Sha256)
        {
            return new GoldenResult(entry.Id, $"{entry.File}: SHA-256 differs from the manifest (goldens change only through attnref golden write)", []);
        }
        try
        {
            TensorFile file = SafeTensors.Parse(bytes, path);
            var inputs = entry.Inputs.ToDictionary(name => name, name => file[name], StringComparer.Ordinal);
            RunResult result = FormRunner.Run(FormCatalog.Find(entry.Form), inputs, file.Metadata,
                new RunOptions { Variant = entry.Variant, Backend = backend });
            var comparisons = entry.Outputs
                .Select(name => Comparer.Compare(name, file[name], result.Outputs[name], ToleranceProfile.F64))
                .ToList();
            return new GoldenResult(entry.Id, null, comparisons);
        }
        catch (InputException error) when (error.Unsupported)
        {
            return new GoldenResult(entry.Id, null, [], Skipped: error.Message);
        }
        catch (InputException error)
        {
            return new GoldenResult(entry.Id, error.InFile(path).Message, []);
        }
    }

    private static string CasePath(string directory, GoldenCase goldenCase) =>
        Path.Combine(directory, goldenCase.Form, goldenCase.Name + ".safetensors");

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private sealed record ManifestEntry(
        string Form, string Case, string Variant, string File, string Sha256,
        IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs)
    {
        public string Id => $"{Form}/{Case}";
    }

    /// <summary>Rewrites the manifest from the case files on disk, in the order of <see cref="GoldenCases.All"/>.</summary>
    public static void WriteManifest(string directory)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("format", Format);
            json.WriteString("description", "AttentionReference golden cases: inputs and expected float64 outputs of each form. "
                + "Each file is safetensors; its __metadata__ holds the parameters. Compare with a tolerance: results agree "
                + "across machines to rounding (SIMD width changes summation order), not to the bit.");
            json.WriteStartArray("cases");
            foreach (GoldenCase goldenCase in GoldenCases.All)
            {
                string path = CasePath(directory, goldenCase);
                if (!File.Exists(path))
                {
                    continue;
                }
                byte[] bytes = File.ReadAllBytes(path);
                TensorFile file = SafeTensors.Parse(bytes, path);
                json.WriteStartObject();
                json.WriteString("form", goldenCase.Form);
                json.WriteString("case", goldenCase.Name);
                json.WriteString("variant", goldenCase.Variant);
                json.WriteString("file", $"{goldenCase.Form}/{goldenCase.Name}.safetensors");
                json.WriteStartObject("parameters");
                foreach (var (key, value) in goldenCase.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
                WriteShapes(json, "inputs", file, file.Metadata["inputs"]);
                WriteShapes(json, "outputs", file, file.Metadata["outputs"]);
                json.WriteString("sha256", Sha256(bytes));
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        AtomicFile.WriteAllBytes(Path.Combine(directory, ManifestName), [.. stream.ToArray(), (byte)'\n']);
    }

    private static void WriteShapes(Utf8JsonWriter json, string property, TensorFile file, string names)
    {
        json.WriteStartObject(property);
        foreach (string name in names.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            json.WriteStartArray(name);
            foreach (int extent in file[name].Shape)
            {
                json.WriteNumberValue(extent);
            }
            json.WriteEndArray();
        }
        json.WriteEndObject();
    }

    private static List<ManifestEntry> ReadManifest(string path)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = document.RootElement;
            if (root.GetProperty("format").GetString() != Format)
            {
                throw new InputException($"format must be \"{Format}\"", path);
            }
            return root.GetProperty("cases").EnumerateArray().Select(c => new ManifestEntry(
                c.GetProperty("form").GetString()!,
                c.GetProperty("case").GetString()!,
                c.GetProperty("variant").GetString()!,
                c.GetProperty("file").GetString()!,
                c.GetProperty("sha256").GetString()!,
                c.GetProperty("inputs").EnumerateObject().Select(p => p.Name).ToList(),
                c.GetProperty("outputs").EnumerateObject().Select(p => p.Name).ToList())).ToList();
        }
        catch (Exception error) when (error is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InputException(string.Create(CultureInfo.InvariantCulture, $"malformed manifest: {error.Message}"), path);
        }
    }
}
