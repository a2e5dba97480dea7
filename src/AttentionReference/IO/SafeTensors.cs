using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// The Hugging Face safetensors format, the oracle's primary file format: an 8-byte little-endian header length N,
/// N bytes of UTF-8 JSON mapping each tensor name to <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> (offsets
/// into the data buffer that follows) plus an optional <c>__metadata__</c> string map, then the raw little-endian
/// data. Reading checks everything the Hugging Face reader checks; writing produces what it writes (metadata first,
/// header padded with spaces to a multiple of 8 bytes, tensors back to back in order).
/// </summary>
public static class SafeTensors
{
    /// <summary>The Hugging Face reader's bound on the header (MAX_HEADER_SIZE): larger means a corrupt or foreign file.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Reads a safetensors file; a missing or malformed file is an <see cref="InputException"/>.</summary>
    public static TensorFile Read(string path) => Read(path, wanted: null, ReadLimits.Default);

    /// <summary>
    /// Reads a safetensors file within <paramref name="limits"/>: the header whole, then the data of only those tensors
    /// for which <paramref name="wanted"/> holds (all when null), each from where it lies in the file. The others are
    /// listed in <see cref="TensorFile.Unread"/>; their header entries are checked all the same.
    /// </summary>
    public static TensorFile Read(string path, Func<string, bool>? wanted, ReadLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        using FileStream stream = FileBytes.Open(path, limits.MaxFileBytes, out long length);
        return Parse(stream, length, path, wanted);
    }

    /// <summary>
    /// Parses the bytes of a safetensors file; <paramref name="fileName"/> names it in errors. Every value converts
    /// exactly to double (int64 beyond ±2^53 is refused rather than rounded).
    /// </summary>
    public static TensorFile Parse(ReadOnlySpan<byte> bytes, string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        using var stream = new MemoryStream(bytes.ToArray(), writable: false);
        return Parse(stream, bytes.Length, fileName, wanted: null);
    }

    /// <summary>Parses a safetensors file of <paramref name="length"/> bytes from the start of a seekable stream.</summary>
    private static TensorFile Parse(Stream stream, long length, string fileName, Func<string, bool>? wanted)
    {
        if (length < 8)
        {
            throw new InputException($"file is {length} bytes, too short for the 8-byte header length that starts a safetensors file", fileName);
        }
        Span<byte> prefix = stackalloc byte[8];
        FileBytes.ReadExactly(stream, prefix, fileName);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes)
        {
            throw new InputException($"header length {headerLength} exceeds the safetensors limit of {MaxHeaderBytes} bytes (not a safetensors file?)", fileName);
        }
        if (headerLength > (ulong)(length - 8))
        {
            throw new InputException($"header length {headerLength} runs past the end of the file ({length} bytes)", fileName);
        }
        var header = new byte[headerLength];
        FileBytes.ReadExactly(stream, header, fileName);
        long dataStart = 8 + (long)headerLength, dataLength = length - dataStart;

        var file = new TensorFile(fileName);
        List<SafeTensorsEntry> entries = SafeTensorsHeader.Parse(header, dataLength, fileName, file.Metadata);
        CheckLayout(entries, dataLength, fileName);

        foreach (SafeTensorsEntry entry in entries)
        {
            if (wanted is not null && !wanted(entry.Name))
            {
                file.Unread.Add(entry.Name);
                continue;
            }
            long size = entry.End - entry.Begin; // checked against the shape and the data buffer: the file holds it
            var values = new double[size / entry.DType.ByteSize()];
            if (size > 0)
            {
                var raw = new byte[size];
                stream.Position = dataStart + entry.Begin;
                FileBytes.ReadExactly(stream, raw, fileName);
                ElementCodec.Decode(raw, entry.DType, bigEndian: false, values, fileName, entry.Name);
            }
            file.Add(entry.Name, new Tensor(entry.Shape, values, entry.DType));
        }
        return file;
    }

    /// <summary>The bytes of <paramref name="file"/> as a safetensors file.</summary>
    public static byte[] Serialize(TensorFile file)
    {
        using var stream = new MemoryStream();
        WriteTo(stream, file);
        return stream.ToArray();
    }

    /// <summary>Writes <paramref name="file"/> to <paramref name="path"/> atomically (see <see cref="AtomicFile"/>).</summary>
    public static void Write(string path, TensorFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        byte[] header = Header(file); // built first: a bad name fails before any file is created
        AtomicFile.Write(path, stream => WriteTo(stream, file, header));
    }

    /// <summary>Writes <paramref name="file"/> as a safetensors file to <paramref name="stream"/>.</summary>
    public static void WriteTo(Stream stream, TensorFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        WriteTo(stream, file, Header(file));
    }

    private static void WriteTo(Stream stream, TensorFile file, byte[] header)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var (name, tensor) in file.Tensors)
        {
            ElementCodec.Write(stream, tensor, name);
        }
    }

    /// <summary>The header JSON, padded with spaces so that the data starts at a multiple of 8 bytes.</summary>
    private static byte[] Header(TensorFile file)
    {
        var json = new ArrayBufferWriter<byte>();
        // The relaxed encoder writes non-ASCII names as UTF-8 rather than \u escapes; both are valid JSON, and the
        // header is never embedded in HTML, which is what the default encoder guards against.
        using (var writer = new Utf8JsonWriter(json, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            if (file.Metadata.Count > 0)
            {
                writer.WriteStartObject(SafeTensorsHeader.MetadataKey);
                // Sorted, so that the bytes (and a golden file's SHA-256) do not depend on insertion order.
                foreach (var (key, value) in file.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    writer.WriteString(key, value ?? throw new ArgumentException($"metadata '{key}' is null", nameof(file)));
                }
                writer.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, tensor) in file.Tensors)
            {
                if (name == SafeTensorsHeader.MetadataKey)
                {
                    throw new ArgumentException($"a tensor cannot be called {SafeTensorsHeader.MetadataKey}", nameof(file));
                }
                writer.WriteStartObject(name);
                writer.WriteString("dtype", tensor.DType.SafetensorsName());
                writer.WriteStartArray("shape");
                foreach (int extent in tensor.Shape)
                {
                    writer.WriteNumberValue(extent);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                offset += (long)tensor.Length * tensor.DType.ByteSize();
                writer.WriteNumberValue(offset);
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        int padded = (json.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        json.WrittenSpan.CopyTo(header);
        header.AsSpan(json.WrittenCount).Fill((byte)' ');
        return header;
    }

    /// <summary>
    /// Checks how the tensors lie in the data buffer. Two tensors sharing a byte is an error (one file region would
    /// be two tensors). Gaps and trailing bytes are errors too, as in the Hugging Face reader (which requires the
    /// tensors, sorted by offset, to tile the buffer exactly): no writer leaves them, so a gap means the offsets
    /// are wrong, and a file we accept then also loads in PyTorch. Empty tensors occupy no bytes and may sit
    /// anywhere in the buffer.
    /// </summary>
    private static void CheckLayout(List<SafeTensorsEntry> entries, long dataLength, string file)
    {
        var sorted = entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ToList();
        long covered = 0;
        SafeTensorsEntry? previous = null;
        foreach (SafeTensorsEntry entry in sorted)
        {
            if (entry.Begin < covered)
            {
                throw new InputException(
                    $"data_offsets [{entry.Begin},{entry.End}] overlap those of tensor '{previous!.Name}' [{previous.Begin},{previous.End}]",
                    file, entry.Name);
            }
            if (entry.Begin > covered)
            {
                throw new InputException(
                    $"data_offsets [{entry.Begin},{entry.End}] leave bytes [{covered},{entry.Begin}) of the data buffer to no tensor", file, entry.Name);
            }
            covered = entry.End;
            previous = entry;
        }
        if (covered != dataLength)
        {
            throw new InputException(
                $"data buffer is {dataLength} bytes but the tensors cover only {covered}: bytes [{covered},{dataLength}) belong to no tensor", file);
        }
    }
}
