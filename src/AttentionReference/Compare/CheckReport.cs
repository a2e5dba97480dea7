using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using AttentionReference.Tensors;

namespace AttentionReference.Compare;

/// <summary>
/// The result of <c>attnref check</c>: every output tensor of the form found in the candidate, compared with the
/// reference; the outputs the candidate lacked; the candidate's tensors that are not outputs of the form.
/// <para>
/// <see cref="ToJson"/> writes (indented, UTF-8, numbers in invariant culture; a non-finite number is written as the
/// string "NaN", "Infinity" or "-Infinity"; keys always present, in this order):
/// </para>
/// <code>
/// {
///   "form": "gla",                       // the form's name
///   "variant": "chunked",                // or null
///   "backend": "cpu",
///   "parameters": { "causal": "true" },  // string map, keys in ordinal order
///   "profile": "f32",                    // the profile the user chose, or null: each tensor's from its dtype
///   "profiles": {                        // every profile used, by name
///     "f32": { "normwiseRelative": 1E-05, "elementRelative": 5E-05, "reason": "..." }
///   },
///   "passed": false,                     // every tensor passed, and at least one was compared
///   "tensors": [
///     {
///       "name": "o", "shape": [2,16,4,8], "axes": ["b","t","h","d"],
///       "referenceDType": "f64", "candidateDType": "f32", "profile": "f32", "passed": false,
///       "elements": 1024,                // all elements
///       "compared": 1024,                // positions where both are finite: what the metrics cover
///       "referenceRms": 0.71,
///       "maxAbsError": 3E-07, "maxRelError": 2E-06, "relErrorFloor": 0.00071,
///       "normwiseRelError": 4E-07,       // ‖c − r‖₂ / ‖r‖₂ (‖c − r‖₂ when ‖r‖₂ = 0)
///       "maxUlps": 5,                    // in candidateDType
///       "overTolerance": 1, "nonFiniteMismatches": 0, "matchingNonFinite": 0,
///       "worst": [
///         { "at": "o[b=0,t=5,h=1,d=3]", "index": [0,5,1,3], "offset": 171,
///           "reference": 0.5, "candidate": 0.6, "absError": 0.1, "relError": 0.2, "ulps": 838861,
///           "tolerances": 4000, "nonFiniteMismatch": false }
///       ]
///     }
///   ],
///   "missingOutputs": ["lse"],           // outputs of the form the candidate lacked (not a failure)
///   "ignoredTensors": ["scratch"]        // candidate tensors that are not outputs of the form
/// }
/// </code>
/// </summary>
public sealed class CheckReport
{
    /// <summary>The form's name.</summary>
    public required string Form { get; init; }

    /// <summary>The variant computed by the reference (null for the form's default).</summary>
    public string? Variant { get; init; }

    /// <summary>The reference's backend ("cpu", "opencl").</summary>
    public required string Backend { get; init; }

    /// <summary>The device the reference was computed on, in words.</summary>
    public string Device { get; init; } = "";

    /// <summary>The form's parameters as given (file metadata overridden by the command line).</summary>
    public required IReadOnlyDictionary<string, string> Parameters { get; init; }

    /// <summary>The profile the user chose for every tensor; null when each tensor used its candidate dtype's default.</summary>
    public ToleranceProfile? Profile { get; init; }

    /// <summary>One comparison per output present in the candidate.</summary>
    public required IReadOnlyList<TensorComparison> Tensors { get; init; }

    /// <summary>Outputs of the form the candidate did not hold: not compared, not a failure.</summary>
    public IReadOnlyList<string> MissingOutputs { get; init; } = [];

    /// <summary>Tensors of the candidate that are not outputs of the form (inputs, scratch): ignored, listed here.</summary>
    public IReadOnlyList<string> IgnoredTensors { get; init; } = [];

    /// <summary>The cotangents the reference's backward pass took as zero, the call not giving them (none without gradients).</summary>
    public IReadOnlyList<string> AssumedZeroCotangents { get; init; } = [];

    /// <summary>
    /// Every compared tensor passed, and at least one was compared: a candidate whose tensors are all misnamed must
    /// not look correct.
    /// </summary>
    public bool Passed => Tensors.Count > 0 && Tensors.All(t => t.Passed);

    /// <summary>The report as JSON (schema in the type's summary).</summary>
    public string ToJson()
    {
        var buffer = new ArrayBufferWriter<byte>();
        var options = new JsonWriterOptions
        {
            Indented = true,
            // The report is a file, not HTML: keep ‖, ≈ and friends readable instead of \uXXXX.
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        using (var json = new Utf8JsonWriter(buffer, options))
        {
            json.WriteStartObject();
            json.WriteString("form", Form);
            json.WriteString("variant", Variant);
            json.WriteString("backend", Backend);
            json.WriteString("device", Device);

            json.WriteStartObject("parameters");
            foreach (var (key, value) in Parameters.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                json.WriteString(key, value);
            }
            json.WriteEndObject();

            json.WriteString("profile", Profile?.Name);
            json.WriteStartObject("profiles");
            var used = Tensors.Select(t => t.Profile).Prepend(Profile).OfType<ToleranceProfile>().DistinctBy(p => p.Name);
            foreach (var profile in used)
            {
                json.WriteStartObject(profile.Name);
                WriteDouble(json, "normwiseRelative", profile.NormwiseRelative);
                WriteDouble(json, "elementRelative", profile.ElementRelative);
                json.WriteString("reason", profile.Reason);
                json.WriteEndObject();
            }
            json.WriteEndObject();

            json.WriteBoolean("passed", Passed);

            json.WriteStartArray("tensors");
            foreach (var tensor in Tensors)
            {
                WriteTensor(json, tensor);
            }
            json.WriteEndArray();

            WriteStrings(json, "missingOutputs", MissingOutputs);
            WriteStrings(json, "ignoredTensors", IgnoredTensors);
            WriteStrings(json, "assumedZeroCotangents", AssumedZeroCotangents);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteTensor(Utf8JsonWriter json, TensorComparison t)
    {
        json.WriteStartObject();
        json.WriteString("name", t.Name);
        json.WriteStartArray("shape");
        foreach (int extent in t.Shape)
        {
            json.WriteNumberValue(extent);
        }
        json.WriteEndArray();
        WriteStrings(json, "axes", t.AxisNames);
        json.WriteString("referenceDType", t.ReferenceDType.ShortName());
        json.WriteString("candidateDType", t.CandidateDType.ShortName());
        json.WriteString("profile", t.Profile.Name);
        json.WriteBoolean("passed", t.Passed);
        json.WriteNumber("elements", t.ElementCount);
        json.WriteNumber("compared", t.ComparedCount);
        WriteDouble(json, "referenceRms", t.ReferenceRms);
        WriteDouble(json, "maxAbsError", t.MaxAbsoluteError);
        WriteDouble(json, "maxRelError", t.MaxRelativeError);
        WriteDouble(json, "relErrorFloor", t.RelativeErrorFloor);
        WriteDouble(json, "normwiseRelError", t.NormwiseRelativeError);
        WriteDouble(json, "maxUlps", t.MaxUlps);
        json.WriteNumber("overTolerance", t.OverToleranceCount);
        json.WriteNumber("nonFiniteMismatches", t.NonFiniteMismatchCount);
        json.WriteNumber("matchingNonFinite", t.MatchingNonFiniteCount);
        json.WriteStartArray("worst");
        foreach (var e in t.Worst)
        {
            json.WriteStartObject();
            json.WriteString("at", e.Location);
            json.WriteStartArray("index");
            foreach (int i in e.Index)
            {
                json.WriteNumberValue(i);
            }
            json.WriteEndArray();
            json.WriteNumber("offset", e.Offset);
            WriteDouble(json, "reference", e.Reference);
            WriteDouble(json, "candidate", e.Candidate);
            WriteDouble(json, "absError", e.AbsoluteError);
            WriteDouble(json, "relError", e.RelativeError);
            WriteDouble(json, "ulps", e.Ulps);
            WriteDouble(json, "tolerances", e.Tolerances);
            json.WriteBoolean("nonFiniteMismatch", e.NonFiniteMismatch);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void WriteStrings(Utf8JsonWriter json, string name, IEnumerable<string> values)
    {
        json.WriteStartArray(name);
        foreach (string value in values)
        {
            json.WriteStringValue(value);
        }
        json.WriteEndArray();
    }

    /// <summary>A finite double as a JSON number (shortest round-trip form); NaN and ±inf as strings, JSON having no such numbers.</summary>
    private static void WriteDouble(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value))
        {
            json.WriteNumber(name, value);
        }
        else
        {
            json.WriteString(name, double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
        }
    }
}
