using System.IO.Compression;
using AttentionReference.IO;
using AttentionReference.Tensors;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.IO;

/// <summary>
/// Laws of the file layer over random tensors of every dtype: values drawn as raw bit patterns (so NaN, infinities,
/// subnormals and -0 all occur) or integers in range, shapes of rank 0 to 4 with zero-size extents.
/// </summary>
public sealed class RoundTripProperties
{
    private static readonly DType[] AllDTypes = Enum.GetValues<DType>();
    private static readonly DType[] NpyDTypes = AllDTypes.Where(d => d != DType.BF16).ToArray();

    private static readonly Gen<int> Bits16 = Gen.Choose(0, 0xFFFF);

    private static readonly Gen<uint> Bits32 = from hi in Bits16 from lo in Bits16 select (uint)hi << 16 | (uint)lo;

    private static readonly Gen<ulong> Bits64 = from hi in Bits32 from lo in Bits32 select (ulong)hi << 32 | lo;

    /// <summary>Values exactly representable in <paramref name="dtype"/>: random bits, with the special values mixed in often.</summary>
    private static Gen<double> ValueOf(DType dtype) => dtype switch
    {
        DType.F64 => Gen.Frequency(
            (4, Bits64.Select(BitConverter.UInt64BitsToDouble)),
            (1, Gen.Elements(0.0, -0.0, double.Epsilon, double.MaxValue, double.PositiveInfinity, double.NegativeInfinity, double.NaN))),
        DType.F32 => Gen.Frequency(
            (4, Bits32.Select(b => (double)BitConverter.UInt32BitsToSingle(b))),
            (1, Gen.Elements(0.0, -0.0, float.Epsilon, float.MaxValue, double.PositiveInfinity, double.NegativeInfinity, double.NaN))),
        DType.F16 => Gen.Frequency(
            (4, Bits16),
            (1, Gen.Elements(0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF, 0x7C00, 0xFC00, 0x7E00)))
            .Select(b => FloatBits.HalfToDouble((ushort)b)),
        DType.BF16 => Gen.Frequency(
            (4, Bits16),
            (1, Gen.Elements(0x0000, 0x8000, 0x0001, 0x007F, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0)))
            .Select(b => FloatBits.BFloat16ToDouble((ushort)b)),
        DType.I32 => Gen.Frequency(
            (4, Bits32.Select(b => (double)(int)b)),
            (1, Gen.Elements<double>(0, -1, int.MinValue, int.MaxValue))),
        DType.I64 => Gen.Frequency(
            (4, from hi in Gen.Choose(0, (1 << 26) - 1)
                from lo in Gen.Choose(0, (1 << 27) - 1)
                from sign in Gen.Elements(1L, -1L)
                select (double)(sign * ((long)hi << 27 | (long)lo))),
            (1, Gen.Elements(0, -1, 1L << 53, -(1L << 53), long.MinValue >> 10).Select(v => (double)v))),
        DType.Bool => Gen.Elements<double>(0, 1),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    private static readonly Gen<int[]> Shapes =
        from rank in Gen.Choose(0, 4)
        from shape in Gen.Choose(0, 4).ArrayOf(rank)
        select shape;

    private static Gen<Tensor> TensorOf(DType[] dtypes) =>
        from dtype in Gen.Elements(dtypes)
        from shape in Shapes
        from values in ValueOf(dtype).ArrayOf(shape.Aggregate(1, (a, b) => a * b))
        select new Tensor(shape, values, dtype);

    private static readonly string[] Names = ["q", "k", "v", "initial_state", "ünïcödé", "with \"quotes\"", "back\\slash", "tab\there", "a/b.c", "😀"];

    private static readonly Gen<TensorFile> Files =
        from names in Gen.Shuffle(Names)
        from count in Gen.Choose(0, 4)
        from tensors in TensorOf(AllDTypes).ArrayOf(count)
        from keys in Gen.SubListOf(Names)
        from values in Gen.Elements("", "gla", "true", "64", "ü\n\"").ArrayOf(keys.Count)
        select Build(names, tensors, keys, values);

    private static TensorFile Build(string[] names, Tensor[] tensors, List<string> keys, string[] values)
    {
        var file = new TensorFile();
        for (int i = 0; i < tensors.Length; i++)
        {
            file.Add(names[i], tensors[i]);
        }
        for (int i = 0; i < keys.Count; i++)
        {
            file.Metadata[keys[i]] = values[i];
        }
        return file;
    }

    private static bool Same(Tensor a, Tensor b) =>
        a.DType == b.DType && a.Shape.SequenceEqual(b.Shape) && a.Data.Zip(b.Data).All(p => HandBuilt.SameValue(p.First, p.Second));

    private static bool Same(TensorFile a, TensorFile b) =>
        a.Names.SequenceEqual(b.Names)
        && a.Names.All(n => Same(a[n], b[n]))
        && a.Metadata.Count == b.Metadata.Count
        && a.Metadata.All(kv => b.Metadata.TryGetValue(kv.Key, out string? v) && v == kv.Value);

    [Fact]
    public void Safetensors_write_then_read_is_identity_for_every_dtype_and_shape() => PropertyRuns.Check(Prop.ForAll(
        Files.ToArbitrary(),
        file => Same(file, SafeTensors.Parse(SafeTensors.Serialize(file), "x.safetensors"))));

    [Fact]
    public void Safetensors_rewriting_a_read_file_reproduces_its_bytes_and_aligns_the_data_to_8() => PropertyRuns.Check(Prop.ForAll(
        Files.ToArbitrary(),
        file =>
        {
            byte[] bytes = SafeTensors.Serialize(file);
            long headerLength = BitConverter.ToInt64(bytes, 0);
            return headerLength % 8 == 0 && bytes.AsSpan().SequenceEqual(SafeTensors.Serialize(SafeTensors.Parse(bytes, "x.safetensors")));
        }));

    [Fact]
    public void Npy_write_then_read_is_identity_for_every_dtype_but_bf16_and_every_shape() => PropertyRuns.Check(Prop.ForAll(
        TensorOf(NpyDTypes).ToArbitrary(),
        tensor => Same(tensor, Npy.Parse(Npy.Serialize(tensor), "x.npy", "x"))));

    [Fact]
    public void Npy_data_starts_on_a_64_byte_boundary() => PropertyRuns.Check(Prop.ForAll(
        TensorOf(NpyDTypes).ToArbitrary(),
        tensor =>
        {
            byte[] bytes = Npy.Serialize(tensor);
            return (bytes.Length - tensor.Length * tensor.DType.ByteSize()) % 64 == 0 && bytes[8] + 10 == bytes.Length - tensor.Length * tensor.DType.ByteSize();
        }));

    [Fact]
    public void Safetensors_every_truncation_is_rejected_as_bad_input() => PropertyRuns.Check(Prop.ForAll(
        (from file in Files
         from fraction in Gen.Choose(0, 999)
         select (file, fraction)).ToArbitrary(),
        c =>
        {
            byte[] bytes = SafeTensors.Serialize(c.file);
            return Throws(() => SafeTensors.Parse(bytes.AsSpan(0, (int)((long)bytes.Length * c.fraction / 1000)), "x.safetensors"));
        }));

    [Fact]
    public void Npy_every_truncation_is_rejected_as_bad_input() => PropertyRuns.Check(Prop.ForAll(
        (from tensor in TensorOf(NpyDTypes)
         from fraction in Gen.Choose(0, 999)
         select (tensor, fraction)).ToArbitrary(),
        c =>
        {
            byte[] bytes = Npy.Serialize(c.tensor);
            return Throws(() => Npy.Parse(bytes.AsSpan(0, (int)((long)bytes.Length * c.fraction / 1000)), "x.npy", "x"));
        }));

    [Fact]
    public void Safetensors_a_corrupted_byte_gives_a_file_or_bad_input_never_another_exception() => PropertyRuns.Check(Prop.ForAll(
        (from file in Files
         from fraction in Gen.Choose(0, 999)
         from value in Gen.Choose(0, 255)
         select (file, fraction, value)).ToArbitrary(),
        c =>
        {
            byte[] bytes = SafeTensors.Serialize(c.file);
            bytes[(int)((long)bytes.Length * c.fraction / 1000)] = (byte)c.value;
            return ParsesOrThrowsInput(() => SafeTensors.Parse(bytes, "x.safetensors"));
        }));

    [Fact]
    public void Npy_a_corrupted_byte_gives_a_tensor_or_bad_input_never_another_exception() => PropertyRuns.Check(Prop.ForAll(
        (from tensor in TensorOf(NpyDTypes)
         from fraction in Gen.Choose(0, 999)
         from value in Gen.Choose(0, 255)
         select (tensor, fraction, value)).ToArbitrary(),
        c =>
        {
            byte[] bytes = Npy.Serialize(c.tensor);
            bytes[(int)((long)bytes.Length * c.fraction / 1000)] = (byte)c.value;
            return ParsesOrThrowsInput(() => Npy.Parse(bytes, "x.npy", "x"));
        }));

    [Fact]
    public void Npz_a_corrupted_byte_gives_a_file_or_bad_input_never_another_exception() => PropertyRuns.Check(Prop.ForAll(
        (from tensors in TensorOf(NpyDTypes).ArrayOf(2)
         from level in Gen.Elements(CompressionLevel.NoCompression, CompressionLevel.Optimal)
         from fraction in Gen.Choose(0, 999)
         from value in Gen.Choose(0, 255)
         select (tensors, level, fraction, value)).ToArbitrary(),
        c =>
        {
            using var stream = new MemoryStream();
            using (var archive = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true))
            {
                for (int i = 0; i < c.tensors.Length; i++)
                {
                    using Stream entry = archive.CreateEntry($"t{i}.npy", c.level).Open();
                    entry.Write(Npy.Serialize(c.tensors[i]));
                }
            }
            byte[] bytes = stream.ToArray();
            bytes[(int)((long)bytes.Length * c.fraction / 1000)] = (byte)c.value;
            return ParsesOrThrowsInput(() => Npz.Parse(bytes, "x.npz"));
        }));

    private delegate void Parse();

    /// <summary>True when <paramref name="parse"/> throws an <see cref="InputException"/>; any other exception escapes and fails the law.</summary>
    private static bool Throws(Parse parse)
    {
        try
        {
            parse();
            return false;
        }
        catch (InputException)
        {
            return true;
        }
    }

    private static bool ParsesOrThrowsInput(Parse parse)
    {
        try
        {
            parse();
        }
        catch (InputException)
        {
            // Bad input, reported properly.
        }
        return true;
    }
}
