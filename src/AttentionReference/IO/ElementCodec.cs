using System.Buffers.Binary;
using System.Globalization;
using AttentionReference.Tensors;

namespace AttentionReference.IO;

/// <summary>
/// Converts between the doubles of a <see cref="Tensor"/> and the bytes of each <see cref="DType"/>, exactly:
/// every float type widens to double without rounding, and writing rounds once (round to nearest, ties to even).
/// </summary>
internal static class ElementCodec
{
    /// <summary>The largest integer magnitude below which every integer is a double: 2^53.</summary>
    public const long MaxExactInteger = 1L << 53;

    /// <summary>
    /// Decodes <paramref name="destination"/>.Length elements from <paramref name="source"/>. An int64 beyond ±2^53 is
    /// an <see cref="InputException"/> naming <paramref name="file"/> and <paramref name="tensor"/>: the oracle
    /// promises exact inputs, and such a value would silently round.
    /// </summary>
    public static void Decode(ReadOnlySpan<byte> source, DType dtype, bool bigEndian, Span<double> destination, string file, string tensor)
    {
        int size = dtype.ByteSize();
        if (source.Length != (long)destination.Length * size)
        {
            throw new ArgumentException($"{source.Length} bytes for {destination.Length} elements of {dtype}", nameof(source));
        }
        // One loop per dtype (not a switch per element): this runs over every byte of every input.
        switch (dtype)
        {
            case DType.F64:
                for (int i = 0; i < destination.Length; i++)
                {
                    var b = source.Slice(i * 8, 8);
                    destination[i] = bigEndian ? BinaryPrimitives.ReadDoubleBigEndian(b) : BinaryPrimitives.ReadDoubleLittleEndian(b);
                }
                break;
            case DType.F32:
                for (int i = 0; i < destination.Length; i++)
                {
                    var b = source.Slice(i * 4, 4);
                    destination[i] = bigEndian ? BinaryPrimitives.ReadSingleBigEndian(b) : BinaryPrimitives.ReadSingleLittleEndian(b);
                }
                break;
            case DType.F16:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = FloatBits.HalfToDouble(ReadUInt16(source.Slice(i * 2, 2), bigEndian));
                }
                break;
            case DType.BF16:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = FloatBits.BFloat16ToDouble(ReadUInt16(source.Slice(i * 2, 2), bigEndian));
                }
                break;
            case DType.I32:
                for (int i = 0; i < destination.Length; i++)
                {
                    var b = source.Slice(i * 4, 4);
                    destination[i] = bigEndian ? BinaryPrimitives.ReadInt32BigEndian(b) : BinaryPrimitives.ReadInt32LittleEndian(b);
                }
                break;
            case DType.I64:
                for (int i = 0; i < destination.Length; i++)
                {
                    var b = source.Slice(i * 8, 8);
                    long value = bigEndian ? BinaryPrimitives.ReadInt64BigEndian(b) : BinaryPrimitives.ReadInt64LittleEndian(b);
                    if (value is > MaxExactInteger or < -MaxExactInteger)
                    {
                        throw new InputException(
                            $"element {i} is {value.ToString(CultureInfo.InvariantCulture)}, beyond ±2^53, so no double holds it exactly",
                            file, tensor);
                    }
                    destination[i] = value;
                }
                break;
            case DType.Bool:
                for (int i = 0; i < destination.Length; i++)
                {
                    // PyTorch and NumPy write exactly 0 or 1; any other byte means the file is not what it claims.
                    byte value = source[i];
                    destination[i] = value <= 1 ? value
                        : throw new InputException($"element {i} is the byte {value}; a bool must be 0 or 1", file, tensor);
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    /// <summary>
    /// Encodes <paramref name="source"/> little-endian as <paramref name="dtype"/>. Floats round to nearest even;
    /// an integer dtype requires each value to be an integer it can hold (and, for int64, within ±2^53 so that
    /// the file reads back) and throws an <see cref="ArgumentException"/> naming <paramref name="tensor"/> otherwise.
    /// </summary>
    public static void Encode(ReadOnlySpan<double> source, DType dtype, Span<byte> destination, string? tensor, int firstIndex = 0)
    {
        int size = dtype.ByteSize();
        if (destination.Length != (long)source.Length * size)
        {
            throw new ArgumentException($"{destination.Length} bytes for {source.Length} elements of {dtype}", nameof(destination));
        }
        for (int i = 0; i < source.Length; i++)
        {
            double x = source[i];
            var b = destination.Slice(i * size, size);
            switch (dtype)
            {
                case DType.F64: BinaryPrimitives.WriteDoubleLittleEndian(b, x); break;
                // The cast rounds once, to nearest even, and keeps NaN and infinities.
                case DType.F32: BinaryPrimitives.WriteSingleLittleEndian(b, (float)x); break;
                case DType.F16: BinaryPrimitives.WriteUInt16LittleEndian(b, FloatBits.DoubleToHalf(x)); break;
                case DType.BF16: BinaryPrimitives.WriteUInt16LittleEndian(b, FloatBits.DoubleToBFloat16(x)); break;
                case DType.I32:
                    RequireInteger(x, int.MinValue, int.MaxValue, dtype, tensor, firstIndex + i);
                    BinaryPrimitives.WriteInt32LittleEndian(b, (int)x);
                    break;
                case DType.I64:
                    RequireInteger(x, -MaxExactInteger, MaxExactInteger, dtype, tensor, firstIndex + i);
                    BinaryPrimitives.WriteInt64LittleEndian(b, (long)x);
                    break;
                case DType.Bool:
                    RequireInteger(x, 0, 1, dtype, tensor, firstIndex + i);
                    b[0] = (byte)x;
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(dtype));
            }
        }
    }

    /// <summary>Encodes a whole tensor to <paramref name="stream"/> in pieces, so no second full-size buffer is needed.</summary>
    public static void Write(Stream stream, Tensor tensor, string? name)
    {
        const int ChunkElements = 8192;
        int size = tensor.DType.ByteSize();
        var buffer = new byte[Math.Min(tensor.Length, ChunkElements) * size];
        for (int start = 0; start < tensor.Length; start += ChunkElements)
        {
            int count = Math.Min(ChunkElements, tensor.Length - start);
            var bytes = buffer.AsSpan(0, count * size);
            Encode(tensor.Data.AsSpan(start, count), tensor.DType, bytes, name, start);
            stream.Write(bytes);
        }
    }

    private static ushort ReadUInt16(ReadOnlySpan<byte> b, bool bigEndian) =>
        bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b);

    private static void RequireInteger(double x, double min, double max, DType dtype, string? tensor, int index)
    {
        // NaN fails every comparison, so it is rejected here too.
        if (!(x >= min && x <= max && Math.Floor(x) == x))
        {
            throw new ArgumentException(
                (tensor is null ? "" : $"tensor '{tensor}': ") + $"element {index} is {x.ToString("R", CultureInfo.InvariantCulture)}, not an integer that {dtype.SafetensorsName()} can hold"
                + (dtype == DType.I64 ? " within ±2^53" : ""),
                nameof(tensor));
        }
    }
}
