using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using AttentionReference.IO;
using AttentionReference.Tensors;
using AttentionReference.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionReference.Tests.IO;

/// <summary>The readers the property feeds.</summary>
public enum TensorFormat
{
    /// <summary>safetensors, read by <see cref="SafeTensors.Parse(ReadOnlySpan{byte}, string)"/>.</summary>
    SafeTensors,
    /// <summary>.npy, read by <see cref="Npy.Parse"/>.</summary>
    Npy,
    /// <summary>.npz, read by <see cref="Npz.Parse(Stream, string, Func{string, bool}?, ReadLimits)"/>.</summary>
    Npz,
}

/// <summary>
/// A malformed file, as a fuzzer would make one: a valid file of random small tensors, then broken in one to three
/// ways: truncated, bytes overwritten, bytes inserted or appended, a length, offset or size field replaced by a lie
/// (0, −1, 2^31 − 1, 2^32, 2^63, ...), and format by format a hostile header (shapes whose product overflows, offsets
/// past the end or backwards, brackets nested 10^5 deep, unknown dtypes) or a zip entry that lies (CRC-32, sizes,
/// the encryption flag). <see cref="How"/> says what was done, to reproduce a counterexample.
/// </summary>
public sealed record MalformedFile(TensorFormat Format, string How, byte[] Bytes)
{
    public static Arbitrary<MalformedFile> Arbitrary { get; } = Generator().ToArbitrary();

    public override string ToString() => $"{Format}, {Bytes.Length} bytes: {How}";

    private static readonly string[] s_names = ["q", "k", "v", "o", "ünï"];

    /// <summary>Numbers a lying length, offset or size field is replaced with.</summary>
    private static readonly ulong[] s_lies =
        [0, 1, 7, 8, 255, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, ulong.MaxValue, 100_000_001];

    private static Gen<MalformedFile> Generator() =>
        from format in Gen.Elements(TensorFormat.SafeTensors, TensorFormat.Npy, TensorFormat.Npz)
        from valid in Valid(format)
        from count in Gen.Choose(1, 3)
        from mutations in Mutation(format).ArrayOf(count)
        select mutations.Aggregate(new MalformedFile(format, valid.How, valid.Bytes), (file, mutate) => mutate(file));

    // Valid files of random small tensors.

    private static Gen<Tensor> TensorOf(bool allowBf16) =>
        from dtype in Gen.Elements(Enum.GetValues<DType>().Where(d => allowBf16 || d != DType.BF16).ToArray())
        from rank in Gen.Choose(0, 3)
        from shape in Gen.Choose(0, 4).ArrayOf(rank)
        from values in Gen.Choose(-8, 8).ArrayOf(shape.Aggregate(1, (a, b) => a * b))
        select new Tensor(shape, values.Select(v => dtype switch
        {
            DType.Bool => Math.Abs(v) % 2,
            DType.I32 or DType.I64 => v,
            _ => v / 2.0,
        }).ToArray(), dtype);

    private static Gen<(string How, byte[] Bytes)> Valid(TensorFormat format) => format switch
    {
        TensorFormat.SafeTensors =>
            from count in Gen.Choose(0, 3)
            from tensors in TensorOf(allowBf16: true).ArrayOf(count)
            from metadata in Gen.Elements(false, true)
            select ("valid safetensors", SafeTensorsOf(tensors, metadata)),
        TensorFormat.Npy =>
            from tensor in TensorOf(allowBf16: false)
            select ("valid npy", global::AttentionReference.IO.Npy.Serialize(tensor)),
        _ =>
            from count in Gen.Choose(1, 3)
            from tensors in TensorOf(allowBf16: false).ArrayOf(count)
            from deflate in Gen.Elements(false, true).ArrayOf(count)
            select ("valid npz", ZipBytes.Build(tensors.Select((t, i) => (s_names[i] + ".npy", global::AttentionReference.IO.Npy.Serialize(t),
                deflate[i] ? CompressionLevel.Optimal : CompressionLevel.NoCompression)).ToArray())),
    };

    private static byte[] SafeTensorsOf(Tensor[] tensors, bool metadata)
    {
        var file = new TensorFile();
        for (int i = 0; i < tensors.Length; i++)
        {
            file.Add(s_names[i], tensors[i]);
        }
        if (metadata)
        {
            file.Metadata["form"] = "softmax";
        }
        return global::AttentionReference.IO.SafeTensors.Serialize(file);
    }

    // Mutations.

    private static Gen<Func<MalformedFile, MalformedFile>> Mutation(TensorFormat format)
    {
        var common = new List<(int, Gen<Func<MalformedFile, MalformedFile>>)>
        {
            (3, from at in Gen.Choose(0, 1 << 20) select Fn(f => f.Bytes.Length == 0 ? f
                : f.With($"truncated at {at % f.Bytes.Length}", f.Bytes[..(at % f.Bytes.Length)]))),
            (3, from at in Gen.Choose(0, 1 << 20) from value in Gen.Choose(0, 255) select Fn(f => f.Bytes.Length == 0 ? f
                : f.With($"byte {at % f.Bytes.Length} set to {value}", Set(f.Bytes, at % f.Bytes.Length, (byte)value)))),
            (4, from at in Gen.Choose(0, 1 << 20) from width in Gen.Elements(2, 4, 8) from lie in Gen.Elements(s_lies) select Fn(f =>
                f.Bytes.Length < width ? f : f.With($"{width} bytes at {at % (f.Bytes.Length - width + 1)} set to {lie}",
                    Lie(f.Bytes, at % (f.Bytes.Length - width + 1), width, lie)))),
            (1, from at in Gen.Choose(0, 1 << 20) from length in Gen.Choose(1, 16) from junk in Gen.Choose(0, 255).ArrayOf(length) select Fn(f =>
                f.With($"{junk.Length} bytes inserted at {at % (f.Bytes.Length + 1)}",
                    [.. f.Bytes[..(at % (f.Bytes.Length + 1))], .. junk.Select(b => (byte)b), .. f.Bytes[(at % (f.Bytes.Length + 1))..]]))),
            (1, from length in Gen.Choose(1, 64) from junk in Gen.Choose(0, 255).ArrayOf(length) select Fn(f =>
                f.With($"{junk.Length} bytes appended", [.. f.Bytes, .. junk.Select(b => (byte)b)]))),
        };
        common.AddRange(format switch
        {
            TensorFormat.SafeTensors => [(4, SafeTensorsHeaderLie())],
            TensorFormat.Npy => [(4, NpyHeaderLie().Select(h => Fn(f => f.With($"header {Short(h.Header)}", h.Bytes))))],
            _ => [(6, ZipLie()), (2, NpyHeaderLie().Select(h => Fn(f => f.With($"member q.npy with header {Short(h.Header)}",
                ZipBytes.Build(("q.npy", h.Bytes, CompressionLevel.Optimal))))))],
        });
        return Gen.Frequency(common.ToArray());
    }

    private static Func<MalformedFile, MalformedFile> Fn(Func<MalformedFile, MalformedFile> f) => f;

    private MalformedFile With(string what, byte[] bytes) => this with { How = How + "; " + what, Bytes = bytes };

    private static string Short(string text) => text.Length <= 120 ? text : $"{text[..60]}…({text.Length} chars)…{text[^40..]}";

    private static Gen<Func<MalformedFile, MalformedFile>> SafeTensorsHeaderLie()
    {
        string deep = new string('[', 100_000) + new string(']', 100_000);
        string[] headers =
        [
            """{"x":{"dtype":"F64","shape":[2147483647,2147483647],"data_offsets":[0,8]}}""",
            """{"x":{"dtype":"F64","shape":[2147483648],"data_offsets":[0,8]}}""",
            """{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,18446744073709551615]}}""",
            """{"x":{"dtype":"F64","shape":[1],"data_offsets":[9223372036854775807,9223372036854775807]}}""",
            """{"x":{"dtype":"F64","shape":[1],"data_offsets":[8,0]}}""",
            """{"x":{"dtype":"F64","shape":[-1],"data_offsets":[0,8]}}""",
            """{"x":{"dtype":"F64","shape":[1e400],"data_offsets":[0,8]}}""",
            """{"x":{"dtype":"F64","shape":[0,2147483647,2147483647],"data_offsets":[0,0]}}""",
            """{"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}""",
            """{"x":{"dtype":"BOOL","shape":[8],"data_offsets":[0,8]}}""",
            """{"x":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}""",
            """{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"y":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}""",
            """{"__metadata__":{"a":{"b":1}}}""",
            """{"__metadata__":"x"}""",
            """{"x":""" + deep + "}",
            deep,
            "\"\\uD800\"",
        ];
        return from header in Gen.Elements(headers)
               from length in Gen.Elements(0, 8, 16, 64)
               from data in Gen.Choose(0, 255).ArrayOf(length)
               from lengthLie in Gen.Frequency((4, Gen.Constant<ulong?>(null)), (1, Gen.Elements(s_lies).Select(l => (ulong?)l)))
               select Fn(f =>
               {
                   byte[] bytes = HandBuilt.Safetensors(header, data.Select(b => (byte)(b | 0x7F)).ToArray()); // 0x7F..: int64 beyond 2^53
                   if (lengthLie is { } lie)
                   {
                       BinaryPrimitives.WriteUInt64LittleEndian(bytes, lie);
                   }
                   return f.With($"header {Short(header)} with {data.Length} data bytes{(lengthLie is null ? "" : $", header length {lengthLie}")}", bytes);
               });
    }

    private static Gen<(string Header, byte[] Bytes)> NpyHeaderLie()
    {
        string Dict(string shape, string descr = "<f8", string fortran = "False") => $"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}";
        string[] headers =
        [
            Dict(new string('(', 100_000) + new string(')', 100_000)),
            Dict(new string('[', 17) + new string(']', 17)),
            Dict("(2147483647, 2147483647)"),
            Dict("(4611686018427387904, 4)"),
            Dict("(99999999999999999999999,)"),
            Dict("(-1,)"),
            Dict("(0, 2147483647, 2147483647)", fortran: "True"),
            Dict("(" + string.Concat(Enumerable.Repeat("2, ", 70)) + ")"),
            Dict("(" + string.Concat(Enumerable.Repeat("1, ", 20_000)) + ")", fortran: "True"),
            Dict("('a',)"),
            Dict("(2,)", descr: "<c16"),
            Dict("(2,)", descr: "|O"),
            Dict("(2,)", descr: "V2"),
            Dict("(1,)", descr: "<i8"),
            Dict("(2, 3)", fortran: "True"),
            "{'descr': '<f8', 'shape': (1,), }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': {'a': [1, (2, {})]}, }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)",
            "{'descr': '<f8\\x', 'fortran_order': False, 'shape': (1,), }",
        ];
        return from header in Gen.Elements(headers)
               from version in Gen.Elements(1, 2, 3)
               from length in Gen.Elements(0, 8, 48, 64)
               from data in Gen.Choose(0, 255).ArrayOf(length)
               let fits = version > 1 || header.Length < 0xFFF0
               select (header, HandBuilt.Npy(fits ? version : 2, header + "\n", data.Select(b => (byte)(b | 0x7F)).ToArray()));
    }

    private static Gen<Func<MalformedFile, MalformedFile>> ZipLie() =>
        from field in Gen.Elements("crc", "uncompressed", "compressed", "flags")
        from lie in Gen.Elements(s_lies)
        from member in Gen.Choose(0, 2)
        select Fn(f =>
        {
            byte[] bytes = (byte[])f.Bytes.Clone();
            try
            {
                int count = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(bytes.Length - 22 + 10));
                int index = member % Math.Max(1, count);
                switch (field)
                {
                    case "crc": ZipBytes.SetCrc(bytes, index, ZipBytes.Crc(bytes, index) ^ (uint)(lie | 1)); break;
                    case "uncompressed": ZipBytes.SetUncompressedSize(bytes, index, (uint)lie); break;
                    case "compressed": ZipBytes.SetCompressedSize(bytes, index, (uint)lie); break;
                    default: ZipBytes.SetFlags(bytes, index, (ushort)(lie | 1)); break;
                }
                return f.With($"member {index}'s {field} set to {(uint)lie}", bytes);
            }
            catch (Exception e) when (e is ArgumentOutOfRangeException or IndexOutOfRangeException)
            {
                return f; // an earlier mutation broke the archive's directory: nothing to patch
            }
        });

    private static byte[] Set(byte[] bytes, int at, byte value)
    {
        byte[] copy = (byte[])bytes.Clone();
        copy[at] = value;
        return copy;
    }

    private static byte[] Lie(byte[] bytes, int at, int width, ulong value)
    {
        byte[] copy = (byte[])bytes.Clone();
        Span<byte> field = copy.AsSpan(at, width);
        switch (width)
        {
            case 2: BinaryPrimitives.WriteUInt16LittleEndian(field, (ushort)value); break;
            case 4: BinaryPrimitives.WriteUInt32LittleEndian(field, (uint)value); break;
            default: BinaryPrimitives.WriteUInt64LittleEndian(field, value); break;
        }
        return copy;
    }
}

/// <summary>
/// Every reader, fed any malformed file, returns a valid file or throws the project's <see cref="InputException"/>
/// (one line, naming the file): never another exception, never a crash. And memory stays bounded: reading N bytes
/// allocates at most 24 × (N + I) + 1 MiB, where I ≤ the inflated-bytes limit (here 256 KiB, so that a lie about a
/// member's size would show as an allocation far past the bound instead of exhausting the machine). That is the
/// bound <see cref="ReadLimits"/> states: bytes, doubles (8 per element of at least 1 byte), a reordered copy for a
/// Fortran-order .npy, and header text.
/// </summary>
public sealed class MalformedFileProperties
{
    private const string FileName = "hostile";

    private static readonly ReadLimits s_limits = new() { MaxMemberBytes = 256 << 10, MaxInflatedBytes = 256 << 10 };

    private static TensorFile Read(MalformedFile file)
    {
        switch (file.Format)
        {
            case TensorFormat.SafeTensors:
                return SafeTensors.Parse(file.Bytes, FileName);
            case TensorFormat.Npy:
                return new TensorFile(FileName).Add("x", Npy.Parse(file.Bytes, FileName, "x"));
            default:
                using (var stream = new MemoryStream(file.Bytes, writable: false))
                {
                    return Npz.Parse(stream, FileName, wanted: null, s_limits);
                }
        }
    }

    [Law(300)]
    public bool A_reader_returns_a_valid_file_or_throws_InputException_within_bounded_memory(MalformedFile file)
    {
        long bound = 24L * (file.Bytes.Length + s_limits.MaxInflatedBytes) + (1 << 20);
        long before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            TensorFile read = Read(file);
            Assert.All(read.Tensors.Values, t => Assert.Equal(Tensor.ElementCount(t.Shape), t.Data.Length));
        }
        catch (InputException error)
        {
            Assert.StartsWith($"{FileName}: ", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', error.Message);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated <= bound, $"{file}: reading allocated {allocated} bytes, past the bound of {bound}");
        return true;
    }

    [Fact]
    public void The_generator_makes_every_kind_of_file_and_valid_ones_still_read()
    {
        var sample = MalformedFile.Arbitrary.Generator.Sample(300);
        foreach (TensorFormat format in Enum.GetValues<TensorFormat>())
        {
            Assert.Contains(sample, f => f.Format == format);
        }
        Assert.Contains(sample, f => f.How.Contains("truncated", StringComparison.Ordinal));
        Assert.Contains(sample, f => f.How.Contains("header", StringComparison.Ordinal));
        Assert.Contains(sample, f => f.How.Contains("crc", StringComparison.Ordinal));
        // Some broken files still read (a flipped data byte is a different value): the property sees both outcomes.
        int read = sample.Count(f =>
        {
            try
            {
                Read(f);
                return true;
            }
            catch (InputException)
            {
                return false;
            }
        });
        Assert.InRange(read, 1, sample.Length - 1);
    }
}
