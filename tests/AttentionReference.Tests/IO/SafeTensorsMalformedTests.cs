using System.Buffers.Binary;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.IO;

/// <summary>Every malformed or lying safetensors file is refused with one line naming the file and the tensor.</summary>
public sealed class SafeTensorsMalformedTests
{
    private const string File = "bad.safetensors";

    private static InputException Rejected(byte[] bytes)
    {
        var error = Assert.Throws<InputException>(() => SafeTensors.Parse(bytes, File));
        Assert.DoesNotContain('\n', error.Message);
        Assert.StartsWith($"{File}: ", error.Message, StringComparison.Ordinal);
        return error;
    }

    private static InputException Rejected(string header, params byte[][] data) => Rejected(HandBuilt.Safetensors(header, data));

    [Fact]
    public void A_file_shorter_than_the_header_length_is_rejected() =>
        Assert.Equal($"{File}: file is 3 bytes, too short for the 8-byte header length that starts a safetensors file", Rejected([1, 2, 3]).Message);

    [Fact]
    public void A_header_length_past_the_end_of_the_file_is_rejected()
    {
        byte[] bytes = HandBuilt.Safetensors("{}");
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1000);
        Assert.Equal($"{File}: header length 1000 runs past the end of the file (10 bytes)", Rejected(bytes).Message);
    }

    [Fact]
    public void A_header_length_over_100_MB_is_rejected_before_anything_is_read()
    {
        byte[] bytes = HandBuilt.Safetensors("{}");
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 100_000_001);
        Assert.Contains("exceeds the safetensors limit of 100000000 bytes", Rejected(bytes).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_header_that_is_not_JSON_is_rejected() =>
        Assert.Contains("header is not valid JSON", Rejected("""{"x": """).Message, StringComparison.Ordinal);

    [Fact]
    public void A_header_that_is_not_UTF8_is_rejected()
    {
        byte[] bytes = HandBuilt.Safetensors("""{"x":1}""");
        bytes[10] = 0xFF; // inside the key
        Assert.Equal($"{File}: header is not valid UTF-8", Rejected(bytes).Message);
    }

    [Fact]
    public void A_header_with_an_escaped_lone_surrogate_is_rejected() => Assert.Contains(
        "header holds a string that is not valid Unicode",
        Rejected("""{"\uDE00":{"dtype":"F64","shape":[0],"data_offsets":[0,0]}}""").Message, StringComparison.Ordinal);

    [Fact]
    public void A_header_that_is_a_JSON_array_is_rejected() =>
        Assert.Equal($"{File}: header must be a JSON object, found array", Rejected("[]").Message);

    [Fact]
    public void Offsets_past_the_end_of_the_data_are_rejected_naming_the_tensor() => Assert.Equal(
        $"{File}: tensor 'x': data_offsets [0,16] run past the end of the data buffer (8 bytes)",
        Rejected("""{"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}""", HandBuilt.F64(1)).Message);

    [Fact]
    public void Offsets_that_hold_the_wrong_number_of_bytes_for_the_shape_are_rejected() => Assert.Equal(
        $"{File}: tensor 'x': data_offsets [0,96] hold 96 bytes but shape [2,3,4] of F64 needs 192",
        Rejected("""{"x":{"dtype":"F64","shape":[2,3,4],"data_offsets":[0,96]}}""", new byte[96]).Message);

    [Fact]
    public void Offsets_that_end_before_they_begin_are_rejected() => Assert.Equal(
        $"{File}: tensor 'x': data_offsets [8,0] end before they begin",
        Rejected("""{"x":{"dtype":"F64","shape":[0],"data_offsets":[8,0]}}""", new byte[8]).Message);

    [Fact]
    public void Negative_offsets_are_rejected() => Assert.Contains(
        "tensor 'x': data_offsets must be two non-negative integers [begin, end], found [-8,0]",
        Rejected("""{"x":{"dtype":"F64","shape":[1],"data_offsets":[-8,0]}}""", new byte[8]).Message, StringComparison.Ordinal);

    [Fact]
    public void Overlapping_tensors_are_rejected_naming_both() => Assert.Equal(
        $"{File}: tensor 'b': data_offsets [8,24] overlap those of tensor 'a' [0,16]",
        Rejected("""{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F64","shape":[2],"data_offsets":[8,24]}}""", new byte[24]).Message);

    [Fact]
    public void A_gap_between_tensors_is_rejected_as_the_Hugging_Face_reader_rejects_it() => Assert.Equal(
        $"{File}: tensor 'b': data_offsets [16,24] leave bytes [8,16) of the data buffer to no tensor",
        Rejected("""{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F64","shape":[1],"data_offsets":[16,24]}}""", new byte[24]).Message);

    [Fact]
    public void Trailing_bytes_after_the_last_tensor_are_rejected() => Assert.Contains(
        "bytes [8,16) belong to no tensor",
        Rejected("""{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}""", new byte[16]).Message, StringComparison.Ordinal);

    [Fact]
    public void An_unknown_dtype_is_named_with_the_supported_ones() => Assert.Equal(
        $"{File}: tensor 'q': unknown dtype 'F8_E4M3'; supported: F64, F32, F16, BF16, I32, I64",
        Rejected("""{"q":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}""", new byte[1]).Message);

    [Fact]
    public void A_duplicate_tensor_name_is_rejected() => Assert.Equal(
        $"{File}: tensor 'q': header names this tensor twice",
        Rejected("""{"q":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"q":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}""", new byte[16]).Message);

    [Fact]
    public void A_negative_extent_is_rejected() => Assert.Equal(
        $"{File}: tensor 'x': shape [2,-1] has a negative extent",
        Rejected("""{"x":{"dtype":"F64","shape":[2,-1],"data_offsets":[0,0]}}""").Message);

    [Fact]
    public void A_shape_whose_element_count_overflows_is_rejected() => Assert.Contains(
        "tensor 'x': shape [2147483647,2147483647,2147483647] has more elements than one array holds",
        Rejected("""{"x":{"dtype":"F64","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,0]}}""").Message, StringComparison.Ordinal);

    [Fact]
    public void An_extent_beyond_int32_is_rejected() => Assert.Contains(
        "tensor 'x': shape [1,4294967296] has an extent beyond 2147483647",
        Rejected("""{"x":{"dtype":"F64","shape":[1,4294967296],"data_offsets":[0,0]}}""").Message, StringComparison.Ordinal);

    [Fact]
    public void A_fractional_extent_is_rejected() => Assert.Contains(
        "tensor 'x': shape [2.5] has an extent that is not an integer: 2.5",
        Rejected("""{"x":{"dtype":"F64","shape":[2.5],"data_offsets":[0,0]}}""").Message, StringComparison.Ordinal);

    [Fact]
    public void A_missing_field_is_rejected() => Assert.Equal(
        $"{File}: tensor 'x': header entry lacks the field 'data_offsets' (expected dtype, shape, data_offsets)",
        Rejected("""{"x":{"dtype":"F64","shape":[1]}}""").Message);

    [Fact]
    public void An_unexpected_field_is_rejected() => Assert.Contains(
        "tensor 'x': header entry has the unexpected field 'strides'",
        Rejected("""{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8],"strides":[1]}}""", new byte[8]).Message, StringComparison.Ordinal);

    [Fact]
    public void A_dtype_that_is_not_a_string_is_rejected() => Assert.Equal(
        $"{File}: tensor 'x': dtype must be a string, found number 64",
        Rejected("""{"x":{"dtype":64,"shape":[1],"data_offsets":[0,8]}}""", new byte[8]).Message);

    [Fact]
    public void An_entry_that_is_not_an_object_is_rejected() => Assert.Contains(
        "tensor 'x': header entry must be an object",
        Rejected("""{"x":[1,2]}""").Message, StringComparison.Ordinal);

    [Fact]
    public void A_metadata_value_that_is_not_a_string_is_rejected() => Assert.Equal(
        $"{File}: __metadata__ value of 'chunk_size' must be a string, found number 64",
        Rejected("""{"__metadata__":{"chunk_size":64}}""").Message);

    [Fact]
    public void Metadata_that_is_not_an_object_is_rejected() => Assert.Equal(
        $"{File}: __metadata__ must be an object of strings, found string",
        Rejected("""{"__metadata__":"gla"}""").Message);

    [Fact]
    public void An_int64_beyond_2_pow_53_is_rejected_rather_than_rounded() => Assert.Equal(
        $"{File}: tensor 'cu_seqlens': element 1 is 9007199254740993, beyond ±2^53, so no double holds it exactly",
        Rejected("""{"cu_seqlens":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}""", HandBuilt.I64(0, (1L << 53) + 1)).Message);
}
