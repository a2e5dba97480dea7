using System.Buffers.Binary;
using System.IO.Compression;

namespace AttentionReference.Tests.IO;

/// <summary>
/// Zip archives built with ZipArchive, then patched field by field (APPNOTE.TXT 4.3.7, 4.3.12, 4.3.16) to lie: about a
/// member's sizes, its CRC-32, its flags. Each patch is made in both the local header and the central directory, so
/// the archive stays consistent apart from the lie.
/// </summary>
internal static class ZipBytes
{
    /// <summary>A zip of the given members, in order.</summary>
    public static byte[] Build(params (string Name, byte[] Bytes, CompressionLevel Level)[] members)
    {
        using var stream = new MemoryStream();
        using (var archive = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, bytes, level) in members)
            {
                using Stream entry = archive.CreateEntry(name, level).Open();
                entry.Write(bytes);
            }
        }
        return stream.ToArray();
    }

    /// <summary>Sets member <paramref name="index"/>'s general purpose flags (bit 0: encrypted).</summary>
    public static void SetFlags(byte[] zip, int index, ushort flags) => Patch(zip, index, local: 6, central: 8, size: 2, flags);

    /// <summary>Sets member <paramref name="index"/>'s CRC-32.</summary>
    public static void SetCrc(byte[] zip, int index, uint crc) => Patch(zip, index, local: 14, central: 16, size: 4, crc);

    /// <summary>Sets member <paramref name="index"/>'s compressed size.</summary>
    public static void SetCompressedSize(byte[] zip, int index, uint size) => Patch(zip, index, local: 18, central: 20, size: 4, size);

    /// <summary>Sets member <paramref name="index"/>'s uncompressed size.</summary>
    public static void SetUncompressedSize(byte[] zip, int index, uint size) => Patch(zip, index, local: 22, central: 24, size: 4, size);

    /// <summary>Member <paramref name="index"/>'s CRC-32 as its central directory entry declares it.</summary>
    public static uint Crc(byte[] zip, int index) => BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(CentralEntry(zip, index) + 16));

    /// <summary>The offset of the central directory entry of member <paramref name="index"/>.</summary>
    public static int CentralEntry(byte[] zip, int index)
    {
        int end = zip.Length - 22;
        while (end >= 0 && BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(end)) != 0x06054B50)
        {
            end--;
        }
        int at = BinaryPrimitives.ReadInt32LittleEndian(zip.AsSpan(end + 16));
        for (int i = 0; i < index; i++)
        {
            at += 46 + BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(at + 28))
                + BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(at + 30))
                + BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(at + 32));
        }
        return at;
    }

    private static void Patch(byte[] zip, int index, int local, int central, int size, uint value)
    {
        int entry = CentralEntry(zip, index);
        int header = BinaryPrimitives.ReadInt32LittleEndian(zip.AsSpan(entry + 42));
        foreach (int at in (int[])[header + local, entry + central])
        {
            if (size == 2)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(zip.AsSpan(at), (ushort)value);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(at), value);
            }
        }
    }
}
