using System.Text;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.IO;

/// <summary>Files built by hand from the safetensors specification read as the specification says.</summary>
public sealed class SafeTensorsFormatTests
{
    private const string File = "case.safetensors";

    [Fact]
    public void F64_F32_I32_I64_tensors_read_with_shapes_dtypes_and_exact_values()
    {
        byte[] bytes = HandBuilt.Safetensors(
            """
            {"a":{"dtype":"F64","shape":[2,2],"data_offsets":[0,32]},"b":{"dtype":"F32","shape":[3],"data_offsets":[32,44]},
             "c":{"dtype":"I32","shape":[2],"data_offsets":[44,52]},"d":{"dtype":"I64","shape":[2],"data_offsets":[52,68]}}
            """,
            HandBuilt.F64(1.5, -0.0, Math.PI, double.Epsilon),
            HandBuilt.F32(0.1f, float.MaxValue, float.NegativeInfinity),
            HandBuilt.I32(int.MinValue, int.MaxValue),
            HandBuilt.I64(1L << 53, -(1L << 53)));

        TensorFile file = SafeTensors.Parse(bytes, File);

        Assert.Equal(["a", "b", "c", "d"], file.Names);
        Assert.Equal([2, 2], file["a"].Shape);
        Assert.Equal(DType.F64, file["a"].DType);
        Assert.Equal([1.5, -0.0, Math.PI, double.Epsilon], file["a"].Data);
        Assert.True(double.IsNegative(file["a"].Data[1]));
        Assert.Equal(DType.F32, file["b"].DType);
        Assert.Equal([(double)0.1f, float.MaxValue, double.NegativeInfinity], file["b"].Data);
        Assert.Equal([int.MinValue, int.MaxValue], file["c"].Data);
        Assert.Equal(DType.I64, file["d"].DType);
        Assert.Equal([9007199254740992.0, -9007199254740992.0], file["d"].Data);
    }

    [Fact]
    public void F16_bit_patterns_convert_exactly_including_subnormals_infinities_and_NaN()
    {
        ushort[] bits = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x8000, 0x7C00, 0xFC00, 0x7E00];
        byte[] bytes = HandBuilt.Safetensors("""{"h":{"dtype":"F16","shape":[9],"data_offsets":[0,18]}}""", HandBuilt.U16(bits));

        double[] values = SafeTensors.Parse(bytes, File)["h"].Data;

        Assert.Equal(1.0, values[0]);
        Assert.Equal(-2.0, values[1]);
        Assert.Equal(65504.0, values[2]);                       // largest finite half
        Assert.Equal(Math.ScaleB(1, -24), values[3]);           // smallest subnormal
        Assert.Equal(Math.ScaleB(1023, -24), values[4]);        // largest subnormal
        Assert.True(values[5] == 0 && double.IsNegative(values[5]));
        Assert.Equal(double.PositiveInfinity, values[6]);
        Assert.Equal(double.NegativeInfinity, values[7]);
        Assert.True(double.IsNaN(values[8]));
    }

    [Fact]
    public void BF16_bit_patterns_convert_exactly_including_subnormals_infinities_and_NaN()
    {
        ushort[] bits = [0x3F80, 0x4049, 0x7F7F, 0x0001, 0xFF80, 0x7FC0, 0xBF80];
        byte[] bytes = HandBuilt.Safetensors("""{"b":{"dtype":"BF16","shape":[7],"data_offsets":[0,14]}}""", HandBuilt.U16(bits));

        double[] values = SafeTensors.Parse(bytes, File)["b"].Data;

        Assert.Equal(1.0, values[0]);
        Assert.Equal(3.140625, values[1]);
        Assert.Equal(255.0 * Math.ScaleB(1, 120), values[2]);  // largest finite bf16: (2 - 2^-7) * 2^127
        Assert.Equal(Math.ScaleB(1, -133), values[3]);          // smallest subnormal: 2^-126 * 2^-7
        Assert.Equal(double.NegativeInfinity, values[4]);
        Assert.True(double.IsNaN(values[5]));
        Assert.Equal(-1.0, values[6]);
    }

    [Fact]
    public void Rank_0_and_zero_size_tensors_read_with_their_shapes()
    {
        byte[] bytes = HandBuilt.Safetensors(
            """{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]},"z":{"dtype":"BF16","shape":[4,0],"data_offsets":[8,8]}}""",
            HandBuilt.F64(-7.25));

        TensorFile file = SafeTensors.Parse(bytes, File);

        Assert.Equal(0, file["s"].Rank);
        Assert.Equal([-7.25], file["s"].Data);
        Assert.Equal([0, 3], file["e"].Shape);
        Assert.Empty(file["e"].Data);
        Assert.Equal([4, 0], file["z"].Shape);
    }

    [Fact]
    public void Metadata_is_read_and_file_order_is_kept_as_written()
    {
        byte[] bytes = HandBuilt.Safetensors(
            """
            {"__metadata__":{"form":"gla","causal":"true","note":"ünï \"q\""},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},
             "k":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}
            """,
            HandBuilt.F32(2, 3));

        TensorFile file = SafeTensors.Parse(bytes, File);

        Assert.Equal(["v", "k"], file.Names);
        Assert.Equal([3.0], file["v"].Data);
        Assert.Equal([2.0], file["k"].Data);
        Assert.Equal("gla", file.Metadata["form"]);
        Assert.Equal("true", file.Metadata["causal"]);
        Assert.Equal("ünï \"q\"", file.Metadata["note"]);
    }

    [Fact]
    public void A_header_padded_with_spaces_as_the_Hugging_Face_writer_pads_it_is_accepted()
    {
        byte[] bytes = HandBuilt.Safetensors("""{"x":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}      """, HandBuilt.I32(42));
        Assert.Equal([42.0], SafeTensors.Parse(bytes, File)["x"].Data);
    }

    [Fact]
    public void The_writer_produces_the_Hugging_Face_layout_byte_for_byte()
    {
        var file = new TensorFile();
        file.Metadata["form"] = "gla";
        file.Metadata["causal"] = "true";
        file.Add("x", new Tensor([2], [1.0, -2.5], DType.F32));
        file.Add("n", new Tensor([1], [7], DType.I64));

        byte[] bytes = SafeTensors.Serialize(file);

        string json = """{"__metadata__":{"causal":"true","form":"gla"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"n":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}""";
        string padded = json.PadRight((json.Length + 7) / 8 * 8);
        byte[] expected = HandBuilt.Safetensors(padded, HandBuilt.F32(1.0f, -2.5f), HandBuilt.I64(7));
        Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(bytes));
        Assert.Equal(expected, bytes);
    }

    [Fact]
    public void Writing_f16_and_bf16_rounds_to_nearest_even()
    {
        var file = new TensorFile();
        // 1 + 2^-11 lies halfway between the halves 1 and 1 + 2^-10: ties go to the even one, 1.
        file.Add("h", new Tensor([2], [1 + Math.ScaleB(1, -11), 1e6], DType.F16));
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7 in bf16: ties to even, 1; 1 + 3 * 2^-9 rounds up.
        file.Add("b", new Tensor([2], [1 + Math.ScaleB(1, -8), 1 + 3 * Math.ScaleB(1, -9)], DType.BF16));

        TensorFile back = SafeTensors.Parse(SafeTensors.Serialize(file), File);

        Assert.Equal([1.0, double.PositiveInfinity], back["h"].Data);
        Assert.Equal([1.0, 1 + Math.ScaleB(1, -7)], back["b"].Data);
    }

    [Fact]
    public void Writing_a_non_integer_to_an_integer_dtype_is_an_argument_error_naming_the_tensor()
    {
        var file = new TensorFile().Add("cu_seqlens", new Tensor([2], [0, 2.5], DType.I32));
        var error = Assert.Throws<ArgumentException>(() => SafeTensors.Serialize(file));
        Assert.Contains("tensor 'cu_seqlens': element 1 is 2.5", error.Message, StringComparison.Ordinal);
    }
}
