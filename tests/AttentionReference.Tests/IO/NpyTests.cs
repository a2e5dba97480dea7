using System.Text;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.IO;

/// <summary>.npy files built by hand from NumPy's format specification, and the ways they can be malformed.</summary>
public sealed class NpyTests
{
    private const string File = "x.npy";

    private static Tensor Read(byte[] bytes) => Npy.Parse(bytes, File, "x");

    private static InputException Rejected(byte[] bytes)
    {
        var error = Assert.Throws<InputException>(() => Read(bytes));
        Assert.StartsWith($"{File}: tensor 'x': ", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
        return error;
    }

    /// <summary>Issue #21, cause 4: a shape nesting 10^5 parentheses overflowed the stack of the recursive parser.</summary>
    [Fact]
    public void A_header_nesting_brackets_100000_deep_is_refused_without_exhausting_the_stack()
    {
        string shape = new string('(', 100_000) + new string(')', 100_000);
        var error = Rejected(HandBuilt.Npy(2, "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }\n", []));
        Assert.Contains($"header nests brackets more than {ReadLimits.NpyHeaderMaxDepth} deep", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_header_nesting_within_the_limit_is_parsed_and_judged_on_its_content()
    {
        string shape = new string('(', 10) + "2," + new string(')', 10);
        var error = Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }", HandBuilt.F64(1, 2)));
        Assert.Contains("'shape' must be a tuple of non-negative integers", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Version_1_little_endian_f8_reads_in_C_order()
    {
        Tensor t = Read(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", HandBuilt.F64(1, 2, 3, 4, 5, -0.5)));
        Assert.Equal(DType.F64, t.DType);
        Assert.Equal([2, 3], t.Shape);
        Assert.Equal([1, 2, 3, 4, 5, -0.5], t.Data);
    }

    [Fact]
    public void Version_1_little_endian_f4_reads_exactly()
    {
        Tensor t = Read(HandBuilt.NpyV1("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", HandBuilt.F32(0.1f, float.NaN, float.Epsilon)));
        Assert.Equal(DType.F32, t.DType);
        Assert.Equal([3], t.Shape);
        Assert.Equal((double)0.1f, t.Data[0]);
        Assert.True(double.IsNaN(t.Data[1]));
        Assert.Equal(Math.ScaleB(1, -149), t.Data[2]);
    }

    [Fact]
    public void Big_endian_f8_is_byte_swapped()
    {
        Tensor t = Read(HandBuilt.NpyV1("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", HandBuilt.F64BigEndian(Math.PI, -1e300)));
        Assert.Equal([Math.PI, -1e300], t.Data);
    }

    [Fact]
    public void Fortran_order_is_transposed_to_row_major()
    {
        // a[i, j] = 10 i + j stored column by column: a00 a10 a01 a11 a02 a12.
        Tensor t = Read(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", HandBuilt.F64(0, 10, 1, 11, 2, 12)));
        Assert.Equal([2, 3], t.Shape);
        Assert.Equal([0, 1, 2, 10, 11, 12], t.Data);
    }

    [Fact]
    public void Fortran_order_of_rank_3_puts_every_element_at_its_index()
    {
        int[] shape = [2, 3, 4];
        // Column-major: the first index varies fastest; the value encodes the index as 100 i + 10 j + k.
        var data = new List<double>();
        for (int k = 0; k < 4; k++)
        {
            for (int j = 0; j < 3; j++)
            {
                for (int i = 0; i < 2; i++)
                {
                    data.Add(100 * i + 10 * j + k);
                }
            }
        }
        Tensor t = Read(HandBuilt.NpyV1("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3, 4), }", HandBuilt.I64(data.Select(v => (long)v).ToArray())));
        Assert.Equal(shape, t.Shape);
        Assert.Equal(123, t[1, 2, 3]);
        Assert.Equal(20, t[0, 2, 0]);
        Assert.Equal(101, t[1, 0, 1]);
    }

    [Fact]
    public void Version_2_header_with_a_32_bit_length_reads()
    {
        string dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
        Tensor t = Read(HandBuilt.Npy(2, dict.PadRight(128 - 12 - 1) + "\n", HandBuilt.I64(-5, 1L << 40)));
        Assert.Equal(DType.I64, t.DType);
        Assert.Equal([-5, Math.ScaleB(1, 40)], t.Data);
    }

    [Fact]
    public void Version_3_header_in_UTF8_reads()
    {
        Tensor t = Read(HandBuilt.Npy(3, "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }\n", HandBuilt.I32(-7)));
        Assert.Equal(DType.I32, t.DType);
        Assert.Equal([-7.0], t.Data);
    }

    [Fact]
    public void A_rank_0_f2_array_reads_as_a_scalar()
    {
        Tensor t = Read(HandBuilt.NpyV1("{'descr': '<f2', 'fortran_order': False, 'shape': (), }", HandBuilt.U16(0x3555)));
        Assert.Equal(0, t.Rank);
        Assert.Equal(DType.F16, t.DType);
        Assert.Equal(FloatBits.HalfToDouble(0x3555), t.Data[0]);
    }

    [Fact]
    public void Old_Python_2_headers_with_long_suffixes_and_double_quotes_read()
    {
        Tensor t = Read(HandBuilt.NpyV1("{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (1L, 2L)}", HandBuilt.F64(1, 2)));
        Assert.Equal([1, 2], t.Shape);
    }

    [Fact]
    public void The_writer_produces_NumPys_version_1_layout_with_64_byte_aligned_data()
    {
        byte[] bytes = Npy.Serialize(new Tensor([2, 3], [1, 2, 3, 4, 5, 6], DType.F32));

        byte[] expected = HandBuilt.NpyV1("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", HandBuilt.F32(1, 2, 3, 4, 5, 6));
        Assert.Equal(Encoding.Latin1.GetString(expected), Encoding.Latin1.GetString(bytes));
        Assert.Equal(0, (bytes.Length - 24) % 64); // the data (6 floats) starts on a 64-byte boundary
        Assert.Equal((byte)'\n', bytes[^25]);
    }

    [Theory]
    [InlineData(new int[0], "()")]
    [InlineData(new[] { 5 }, "(5,)")]
    [InlineData(new[] { 0, 2, 1 }, "(0, 2, 1)")]
    public void The_writer_spells_shapes_as_Python_tuples(int[] shape, string tuple)
    {
        var t = new Tensor(shape, new double[shape.Aggregate(1, (a, b) => a * b)]);
        byte[] bytes = Npy.Serialize(t);
        string header = Encoding.Latin1.GetString(bytes[10..(bytes.Length - 8 * t.Length)]);
        Assert.Equal($"{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}", header.TrimEnd());
    }

    [Fact]
    public void Writing_bf16_is_refused_because_npy_has_no_bfloat16()
    {
        var error = Assert.Throws<ArgumentException>(() => Npy.Serialize(new Tensor([1], [1], DType.BF16)));
        Assert.Contains(".npy has no bfloat16", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_magic_is_rejected() =>
        Assert.Contains("bad magic", Rejected(Encoding.ASCII.GetBytes("PK\x03\x04 this is a zip")).Message, StringComparison.Ordinal);

    [Fact]
    public void A_file_that_ends_inside_the_preamble_is_rejected() =>
        Assert.Contains("truncated header", Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", [])[..9]).Message, StringComparison.Ordinal);

    [Fact]
    public void A_header_length_past_the_end_is_rejected() =>
        Assert.Equal($"{File}: tensor 'x': truncated header: header length 118 runs past the end of the file (50 bytes)",
            Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", [])[..50].Also(b => b[8] = 118)).Message);

    [Fact]
    public void A_header_that_is_not_a_dict_is_rejected() => Assert.Equal(
        $"{File}: tensor 'x': header is not a Python dict literal",
        Rejected(HandBuilt.NpyV1("[1, 2]", [])).Message);

    [Fact]
    public void A_header_without_shape_is_rejected() => Assert.Equal(
        $"{File}: tensor 'x': header lacks the key 'shape'",
        Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False}", [])).Message);

    [Fact]
    public void A_header_with_an_extra_key_is_rejected() => Assert.Contains(
        "unexpected key 'strides'",
        Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (), 'strides': ()}", HandBuilt.F64(1))).Message, StringComparison.Ordinal);

    [Fact]
    public void An_unsupported_descr_is_named_with_the_supported_ones() => Assert.Equal(
        $"{File}: tensor 'x': unsupported descr '<u2'; supported: <f8, <f4, <f2, <i4, <i8, |b1 (or with > for big-endian)",
        Rejected(HandBuilt.NpyV1("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", HandBuilt.U16(1))).Message);

    [Fact]
    public void A_structured_descr_is_rejected() => Assert.Contains(
        "structured dtypes",
        Rejected(HandBuilt.NpyV1("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }", HandBuilt.F64(1))).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData("<V2")]
    [InlineData("bfloat16")]
    public void An_ml_dtypes_bfloat16_array_is_rejected_with_a_pointer_to_safetensors(string descr) => Assert.Contains(
        ".npy has no bfloat16, save bf16 tensors as .safetensors",
        Rejected(HandBuilt.NpyV1($"{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}", HandBuilt.U16(0x3F80))).Message, StringComparison.Ordinal);

    [Fact]
    public void Truncated_data_is_rejected() => Assert.Equal(
        $"{File}: tensor 'x': truncated data: the file holds 40 data bytes but shape [2,3] of '<f8' needs 48",
        Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", new byte[40])).Message);

    [Fact]
    public void Data_longer_than_the_shape_is_rejected() => Assert.Equal(
        $"{File}: tensor 'x': extra bytes after the data: the file holds 56 data bytes but shape [2,3] of '<f8' needs 48",
        Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", new byte[56])).Message);

    [Fact]
    public void A_negative_extent_is_rejected() => Assert.Contains(
        "'shape' must be a tuple of non-negative integers",
        Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (2, -3), }", [])).Message, StringComparison.Ordinal);

    [Fact]
    public void An_unknown_version_is_rejected() => Assert.Contains(
        "unsupported .npy version 4.0",
        Rejected(HandBuilt.NpyV1("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", HandBuilt.F64(1)).Also(b => b[6] = 4)).Message, StringComparison.Ordinal);
}

internal static class ByteArrayExtensions
{
    /// <summary>Applies <paramref name="change"/> to <paramref name="bytes"/> and returns them, for building broken files inline.</summary>
    public static byte[] Also(this byte[] bytes, Action<byte[]> change)
    {
        change(bytes);
        return bytes;
    }
}
