using System.Buffers.Binary;
using System.Text;

namespace AttentionReference.Tests.IO;

/// <summary>
/// Builds file bytes by hand from the formats' specifications, never through the library's writers: a reader that
/// accepts these reads what PyTorch's safetensors and NumPy write.
/// </summary>
internal static class HandBuilt
{
    /// <summary>A safetensors file: u64 little-endian header length, the header as given, then the data.</summary>
    public static byte[] Safetensors(string headerJson, params byte[][] data)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        byte[] length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        return Concat([length, header, .. data]);
    }

    /// <summary>An .npy version 1.0 file whose header dict is padded, as NumPy pads it, so the data starts at a multiple of 64.</summary>
    public static byte[] NpyV1(string dict, byte[] data)
    {
        int total = (10 + dict.Length + 1 + 63) / 64 * 64;
        return Npy(1, dict + new string(' ', total - 10 - dict.Length - 1) + "\n", data);
    }

    /// <summary>An .npy file of any version with the header text exactly as given (Latin-1 for 1.0/2.0, UTF-8 for 3.0).</summary>
    public static byte[] Npy(int major, string header, byte[] data)
    {
        byte[] text = major == 3 ? Encoding.UTF8.GetBytes(header) : Encoding.Latin1.GetBytes(header);
        byte[] preamble = new byte[major == 1 ? 10 : 12];
        "\x93NUMPY".Select(c => (byte)c).ToArray().CopyTo(preamble, 0);
        preamble[6] = (byte)major;
        preamble[7] = 0;
        if (major == 1)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(preamble.AsSpan(8), (ushort)text.Length);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(preamble.AsSpan(8), (uint)text.Length);
        }
        return Concat(preamble, text, data);
    }

    public static byte[] F64(params double[] values) => Each(values, 8, (b, v) => BinaryPrimitives.WriteDoubleLittleEndian(b, v));

    public static byte[] F64BigEndian(params double[] values) => Each(values, 8, (b, v) => BinaryPrimitives.WriteDoubleBigEndian(b, v));

    public static byte[] F32(params float[] values) => Each(values, 4, (b, v) => BinaryPrimitives.WriteSingleLittleEndian(b, v));

    public static byte[] U16(params ushort[] bits) => Each(bits, 2, (b, v) => BinaryPrimitives.WriteUInt16LittleEndian(b, v));

    public static byte[] I32(params int[] values) => Each(values, 4, (b, v) => BinaryPrimitives.WriteInt32LittleEndian(b, v));

    public static byte[] I64(params long[] values) => Each(values, 8, (b, v) => BinaryPrimitives.WriteInt64LittleEndian(b, v));

    public static byte[] Concat(params byte[][] parts)
    {
        var bytes = new byte[parts.Sum(p => p.Length)];
        int at = 0;
        foreach (byte[] part in parts)
        {
            part.CopyTo(bytes, at);
            at += part.Length;
        }
        return bytes;
    }

    private delegate void Put<T>(Span<byte> destination, T value);

    private static byte[] Each<T>(T[] values, int size, Put<T> put)
    {
        var bytes = new byte[values.Length * size];
        for (int i = 0; i < values.Length; i++)
        {
            put(bytes.AsSpan(i * size, size), values[i]);
        }
        return bytes;
    }

    /// <summary>Equal as values, bit for bit (so -0 differs from +0), with any NaN equal to any NaN.</summary>
    public static bool SameValue(double a, double b) =>
        double.IsNaN(a) ? double.IsNaN(b) : BitConverter.DoubleToInt64Bits(a) == BitConverter.DoubleToInt64Bits(b);
}
