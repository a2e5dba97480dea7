using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// NumPy's .npy format, versions 1.0, 2.0 and 3.0: the magic "\x93NUMPY", a major and minor version byte, the
/// header length (u16 little-endian for 1.0, u32 for 2.0 and 3.0), a header that is a Python dict literal with
/// 'descr', 'fortran_order' and 'shape' (Latin-1 for 1.0/2.0, UTF-8 for 3.0), then the raw data. One file, one
/// tensor. Reads f8/f4/f2/i4/i8 in either byte order and in C or Fortran order; writes version 1.0 (2.0 if the
/// header would not fit), little-endian, C order, with the data aligned to 64 bytes as NumPy aligns it.
/// </summary>
public static class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>NumPy pads the header so the data starts at a multiple of this (for memory mapping).</summary>
    private const int Alignment = 64;

    /// <summary>Reads an .npy file; the tensor is named by the file's stem in errors.</summary>
    public static Tensor Read(string path) => Read(path, ReadLimits.Default);

    /// <summary>Reads an .npy file within <paramref name="limits"/>; the tensor is named by the file's stem in errors.</summary>
    public static Tensor Read(string path, ReadLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        return Parse(FileBytes.ReadAll(path, limits.MaxFileBytes), path, Path.GetFileNameWithoutExtension(path));
    }

    /// <summary>
    /// Parses the bytes of an .npy file. <paramref name="fileName"/> and <paramref name="tensorName"/> name it in
    /// errors (for a member of an .npz, the archive and the member).
    /// </summary>
    public static Tensor Parse(ReadOnlySpan<byte> bytes, string fileName, string tensorName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(tensorName);
        int prefix = Math.Min(bytes.Length, Magic.Length);
        if (!bytes[..prefix].SequenceEqual(Magic.AsSpan(0, prefix)))
        {
            throw new InputException("bad magic: not an .npy file (an .npy file starts with \\x93NUMPY)", fileName, tensorName);
        }
        if (bytes.Length < 8)
        {
            throw new InputException($"truncated header: file is {bytes.Length} bytes and ends inside the .npy preamble", fileName, tensorName);
        }
        byte major = bytes[6], minor = bytes[7];
        int lengthBytes = major switch
        {
            1 when minor == 0 => 2,
            2 or 3 when minor == 0 => 4,
            _ => throw new InputException($"unsupported .npy version {major}.{minor} (supported: 1.0, 2.0, 3.0)", fileName, tensorName),
        };
        int headerStart = 8 + lengthBytes;
        if (bytes.Length < headerStart)
        {
            throw new InputException($"truncated header: file is {bytes.Length} bytes and ends inside the header length", fileName, tensorName);
        }
        long headerLength = lengthBytes == 2
            ? BinaryPrimitives.ReadUInt16LittleEndian(bytes[8..])
            : BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        if (headerStart + headerLength > bytes.Length)
        {
            throw new InputException(
                $"truncated header: header length {headerLength} runs past the end of the file ({bytes.Length} bytes)", fileName, tensorName);
        }
        int dataStart = headerStart + (int)headerLength;
        string text;
        try
        {
            // Version 3.0 exists only to allow UTF-8 in the header; 1.0 and 2.0 are Latin-1.
            text = major == 3
                ? new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes[headerStart..dataStart])
                : Encoding.Latin1.GetString(bytes[headerStart..dataStart]);
        }
        catch (DecoderFallbackException e)
        {
            throw new InputException("header of a version 3.0 file is not valid UTF-8", fileName, tensorName, e);
        }
        NpyHeaderInfo header = NpyHeader.Parse(text, fileName, tensorName);

        long elements;
        try
        {
            elements = Tensor.ElementCount(header.Shape);
        }
        catch (ArgumentException)
        {
            throw new InputException($"shape {Tensor.FormatShape(header.Shape)} has more elements than one array holds ({Array.MaxLength})", fileName, tensorName);
        }
        long needed = elements * header.DType.ByteSize();
        ReadOnlySpan<byte> data = bytes[dataStart..];
        if (data.Length != needed)
        {
            string what = data.Length < needed ? "truncated data" : "extra bytes after the data";
            throw new InputException(
                $"{what}: the file holds {data.Length} data bytes but shape {Tensor.FormatShape(header.Shape)} of '{header.Descr}' needs {needed}",
                fileName, tensorName);
        }
        var values = new double[elements];
        ElementCodec.Decode(data, header.DType, header.BigEndian, values, fileName, tensorName);
        if (header.FortranOrder)
        {
            values = FortranToRowMajor(values, header.Shape);
        }
        return new Tensor(header.Shape, values, header.DType);
    }

    /// <summary>The bytes of <paramref name="tensor"/> as an .npy file. .npy has no bfloat16: that is an <see cref="ArgumentException"/>.</summary>
    public static byte[] Serialize(Tensor tensor)
    {
        using var stream = new MemoryStream();
        WriteTo(stream, tensor);
        return stream.ToArray();
    }

    /// <summary>Writes <paramref name="tensor"/> to <paramref name="path"/> atomically (see <see cref="AtomicFile"/>).</summary>
    public static void Write(string path, Tensor tensor)
    {
        byte[] preamble = Preamble(tensor); // built first: bf16 fails before any file is created
        AtomicFile.Write(path, stream =>
        {
            stream.Write(preamble);
            ElementCodec.Write(stream, tensor, Path.GetFileNameWithoutExtension(path));
        });
    }

    /// <summary>Writes <paramref name="tensor"/> as an .npy file to <paramref name="stream"/>.</summary>
    public static void WriteTo(Stream stream, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(Preamble(tensor));
        ElementCodec.Write(stream, tensor, name: null);
    }

    /// <summary>The descr NumPy writes for <paramref name="dtype"/>; bfloat16 has none.</summary>
    public static string Descr(DType dtype) => dtype switch
    {
        DType.F64 => "<f8",
        DType.F32 => "<f4",
        DType.F16 => "<f2",
        DType.I32 => "<i4",
        DType.I64 => "<i8",
        DType.Bool => "|b1",
        DType.BF16 => throw new ArgumentException(".npy has no bfloat16 dtype; write bf16 tensors to .safetensors", nameof(dtype)),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Magic, version, header length and the header padded with spaces and ended by '\n', as NumPy writes it.</summary>
    private static byte[] Preamble(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        string shape = tensor.Rank switch
        {
            0 => "()",
            1 => $"({tensor.Dim(0).ToString(CultureInfo.InvariantCulture)},)",
            _ => "(" + string.Join(", ", tensor.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + ")",
        };
        string dict = $"{{'descr': '{Descr(tensor.DType)}', 'fortran_order': False, 'shape': {shape}, }}";
        // Version 1.0 unless the header outgrows its u16 length (only with absurd ranks); then 2.0.
        int lengthBytes = Aligned(10, dict.Length) - 10 <= ushort.MaxValue ? 2 : 4;
        int total = Aligned(8 + lengthBytes, dict.Length);
        int headerLength = total - 8 - lengthBytes;

        var preamble = new byte[total];
        Magic.CopyTo(preamble, 0);
        preamble[6] = lengthBytes == 2 ? (byte)1 : (byte)2;
        preamble[7] = 0;
        if (lengthBytes == 2)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(preamble.AsSpan(8), (ushort)headerLength);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(preamble.AsSpan(8), (uint)headerLength);
        }
        Span<byte> header = preamble.AsSpan(8 + lengthBytes);
        Encoding.Latin1.GetBytes(dict, header);
        header[dict.Length..^1].Fill((byte)' ');
        header[^1] = (byte)'\n';
        return preamble;
    }

    /// <summary>Bytes before the data: <paramref name="prefix"/> + dict + '\n', rounded up to the alignment.</summary>
    private static int Aligned(int prefix, int dictLength) => (prefix + dictLength + 1 + Alignment - 1) / Alignment * Alignment;

    /// <summary>Reorders column-major values (first index fastest) into row-major order (last index fastest).</summary>
    private static double[] FortranToRowMajor(double[] source, int[] shape)
    {
        if (shape.Length < 2 || source.Length == 0)
        {
            return source;
        }
        var strides = new long[shape.Length]; // Fortran strides: 1, d0, d0*d1, ...
        strides[0] = 1;
        for (int axis = 1; axis < shape.Length; axis++)
        {
            strides[axis] = strides[axis - 1] * shape[axis - 1];
        }
        var result = new double[source.Length];
        var index = new int[shape.Length];
        long offset = 0;
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = source[offset];
            // Advance the row-major index like an odometer, keeping the Fortran offset in step.
            for (int axis = shape.Length - 1; axis >= 0; axis--)
            {
                offset += strides[axis];
                if (++index[axis] < shape[axis])
                {
                    break;
                }
                offset -= strides[axis] * shape[axis];
                index[axis] = 0;
            }
        }
        return result;
    }
}
