using System.Buffers.Binary;
using System.Text;
using AttentionReference.IO;
using AttentionReference.Tensors;

namespace AttentionReference.Tests.IO;

/// <summary>Bool tensors as PyTorch and NumPy write them: one byte per element, 0 or 1.</summary>
public sealed class BoolTests
{
    [Fact]
    public void A_hand_built_safetensors_bool_tensor_reads_as_zeros_and_ones()
    {
        byte[] file = SafetensorsBytes("BOOL", [2, 2], [1, 0, 0, 1]);
        var tensor = SafeTensors.Parse(file, "mask.safetensors")["mask"];
        Assert.Equal(DType.Bool, tensor.DType);
        Assert.Equal([1.0, 0.0, 0.0, 1.0], tensor.Data);
    }

    [Fact]
    public void A_bool_byte_other_than_0_or_1_is_bad_input_naming_the_element()
    {
        var error = Assert.Throws<InputException>(() => SafeTensors.Parse(SafetensorsBytes("BOOL", [3], [0, 1, 7]), "mask.safetensors"));
        Assert.Equal("mask.safetensors: tensor 'mask': element 2 is the byte 7; a bool must be 0 or 1", error.Message);
    }

    [Fact]
    public void A_hand_built_npy_bool_array_reads()
    {
        // NumPy's v1.0 header for np.array([True, False, True]): descr '|b1', padded so the data starts at 64.
        string header = "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }";
        header = header.PadRight(64 - 10 - 1) + "\n";
        byte[] bytes = [0x93, .. "NUMPY"u8, 1, 0, 0, 0, .. Encoding.ASCII.GetBytes(header), 1, 0, 1];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)header.Length);
        var tensor = Npy.Parse(bytes, "m.npy", "m");
        Assert.Equal(DType.Bool, tensor.DType);
        Assert.Equal([1.0, 0.0, 1.0], tensor.Data);
    }

    private static byte[] SafetensorsBytes(string dtype, int[] shape, byte[] data)
    {
        byte[] header = Encoding.UTF8.GetBytes(
            $"{{\"mask\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[0,{data.Length}]}}}}");
        byte[] file = [.. new byte[8], .. header, .. data];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        return file;
    }
}
