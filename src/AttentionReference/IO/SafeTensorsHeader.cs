using System.Text.Json;
using System.Text.Unicode;
using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>One tensor's header entry, checked: a known dtype, a valid shape, offsets inside the data buffer that
/// hold exactly the tensor's bytes.</summary>
internal sealed record SafeTensorsEntry(string Name, DType DType, int[] Shape, long Begin, long End);

/// <summary>
/// Parses and checks the JSON header of a safetensors file. Every rule the Hugging Face reader enforces is checked
/// here (or in <see cref="SafeTensors"/> for the layout of the data buffer), and each violation is a one-line
/// <see cref="InputException"/> naming the file and the tensor.
/// </summary>
internal static class SafeTensorsHeader
{
    public const string MetadataKey = "__metadata__";

    private const string Supported = "F64, F32, F16, BF16, I32, I64";

    public static List<SafeTensorsEntry> Parse(
        ReadOnlySpan<byte> json, long dataLength, string file, Dictionary<string, string> metadata)
    {
        // Checked first because System.Text.Json only notices bad UTF-8 when a string is decoded, and then throws
        // InvalidOperationException rather than JsonException.
        if (!Utf8.IsValid(json))
        {
            throw new InputException("header is not valid UTF-8", file);
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json.ToArray());
        }
        catch (JsonException e)
        {
            throw new InputException($"header is not valid JSON: {e.Message}", file, inner: e);
        }
        using (document)
        {
            try
            {
                return Walk(document.RootElement, dataLength, file, metadata);
            }
            catch (InvalidOperationException e)
            {
                // Valid UTF-8 can still spell an invalid string: a \u escape of a lone surrogate ("\uDE00").
                // System.Text.Json reports that only when the string is read, as InvalidOperationException.
                throw new InputException("header holds a string that is not valid Unicode (an escaped lone surrogate)", file, inner: e);
            }
        }
    }

    private static List<SafeTensorsEntry> Walk(JsonElement root, long dataLength, string file, Dictionary<string, string> metadata)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new InputException($"header must be a JSON object, found {Kind(root)}", file);
        }
        var entries = new List<SafeTensorsEntry>();
        // JsonDocument keeps duplicate keys (the last would win on lookup), so walk the properties and count.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty property in root.EnumerateObject())
        {
            if (!seen.Add(property.Name))
            {
                throw property.Name == MetadataKey
                    ? new InputException("header holds __metadata__ twice", file)
                    : new InputException("header names this tensor twice", file, property.Name);
            }
            if (property.Name == MetadataKey)
            {
                ReadMetadata(property.Value, file, metadata);
            }
            else
            {
                entries.Add(ReadEntry(property.Name, property.Value, dataLength, file));
            }
        }
        return entries;
    }

    private static void ReadMetadata(JsonElement value, string file, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new InputException($"__metadata__ must be an object of strings, found {Kind(value)}", file);
        }
        foreach (JsonProperty entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                throw new InputException(
                    $"__metadata__ value of '{entry.Name}' must be a string, found {Kind(entry.Value)} {entry.Value.GetRawText()}", file);
            }
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
            {
                throw new InputException($"__metadata__ holds the key '{entry.Name}' twice", file);
            }
        }
    }

    private static SafeTensorsEntry ReadEntry(string name, JsonElement value, long dataLength, string file)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new InputException($"header entry must be an object with dtype, shape and data_offsets, found {Kind(value)}", file, name);
        }
        JsonElement? dtypeField = null, shapeField = null, offsetsField = null;
        foreach (JsonProperty field in value.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype": dtypeField = Once(dtypeField, field, file, name); break;
                case "shape": shapeField = Once(shapeField, field, file, name); break;
                case "data_offsets": offsetsField = Once(offsetsField, field, file, name); break;
                default:
                    throw new InputException(
                        $"header entry has the unexpected field '{field.Name}' (expected dtype, shape, data_offsets)", file, name);
            }
        }

        JsonElement dtypeJson = dtypeField ?? throw Missing("dtype", file, name);
        JsonElement shapeJson = shapeField ?? throw Missing("shape", file, name);
        JsonElement offsetsJson = offsetsField ?? throw Missing("data_offsets", file, name);

        if (dtypeJson.ValueKind != JsonValueKind.String)
        {
            throw new InputException($"dtype must be a string, found {Kind(dtypeJson)} {dtypeJson.GetRawText()}", file, name);
        }
        string dtypeName = dtypeJson.GetString()!;
        if (!DTypes.TryParseSafetensors(dtypeName, out DType dtype))
        {
            throw new InputException($"unknown dtype '{dtypeName}'; supported: {Supported}", file, name);
        }

        int[] shape = ReadShape(shapeJson, file, name);
        long elements;
        try
        {
            elements = Tensor.ElementCount(shape);
        }
        catch (ArgumentException)
        {
            throw new InputException($"shape {Tensor.FormatShape(shape)} has more elements than one array holds ({Array.MaxLength})", file, name);
        }

        if (offsetsJson.ValueKind != JsonValueKind.Array || offsetsJson.GetArrayLength() != 2
            || !TryGetOffset(offsetsJson[0], out long begin) || !TryGetOffset(offsetsJson[1], out long end))
        {
            throw new InputException($"data_offsets must be two non-negative integers [begin, end], found {offsetsJson.GetRawText()}", file, name);
        }
        string offsets = $"data_offsets [{begin},{end}]";
        if (begin > end)
        {
            throw new InputException($"{offsets} end before they begin", file, name);
        }
        if (end > dataLength)
        {
            throw new InputException($"{offsets} run past the end of the data buffer ({dataLength} bytes)", file, name);
        }
        long needed = elements * dtype.ByteSize(); // at most Array.MaxLength * 8: no overflow
        if (end - begin != needed)
        {
            throw new InputException(
                $"{offsets} hold {end - begin} bytes but shape {Tensor.FormatShape(shape)} of {dtypeName} needs {needed}", file, name);
        }
        return new SafeTensorsEntry(name, dtype, shape, begin, end);
    }

    private static int[] ReadShape(JsonElement json, string file, string name)
    {
        if (json.ValueKind != JsonValueKind.Array)
        {
            throw new InputException($"shape must be an array of non-negative integers, found {Kind(json)} {json.GetRawText()}", file, name);
        }
        var shape = new int[json.GetArrayLength()];
        int axis = 0;
        foreach (JsonElement extent in json.EnumerateArray())
        {
            // TryGetInt64 refuses fractions and exponents ("2.0", "1e3"), as the Hugging Face reader's usize does.
            if (extent.ValueKind != JsonValueKind.Number || !extent.TryGetInt64(out long value))
            {
                throw new InputException($"shape {json.GetRawText()} has an extent that is not an integer: {extent.GetRawText()}", file, name);
            }
            if (value < 0)
            {
                throw new InputException($"shape {json.GetRawText()} has a negative extent", file, name);
            }
            if (value > int.MaxValue)
            {
                throw new InputException($"shape {json.GetRawText()} has an extent beyond {int.MaxValue}", file, name);
            }
            shape[axis++] = (int)value;
        }
        return shape;
    }

    private static bool TryGetOffset(JsonElement json, out long value)
    {
        value = 0;
        return json.ValueKind == JsonValueKind.Number && json.TryGetInt64(out value) && value >= 0;
    }

    private static JsonElement Once(JsonElement? previous, JsonProperty field, string file, string name) =>
        previous is null ? field.Value : throw new InputException($"header entry has the field '{field.Name}' twice", file, name);

    private static InputException Missing(string field, string file, string name) =>
        new($"header entry lacks the field '{field}' (expected dtype, shape, data_offsets)", file, name);

    private static string Kind(JsonElement json) => json.ValueKind.ToString().ToLowerInvariant();
}
