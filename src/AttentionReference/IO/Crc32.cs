namespace AttentionReference.IO;

/// <summary>
/// The CRC-32 that zip archives carry for each member (ISO-HDLC / IEEE 802.3: reflected polynomial 0xEDB88320,
/// initial value and final XOR 0xFFFFFFFF; the check value of "123456789" is 0xCBF43926), computed a byte at a time
/// from a 256-entry table.
/// </summary>
internal static class Crc32
{
    private static readonly uint[] s_table = BuildTable();

    /// <summary>The CRC-32 of <paramref name="bytes"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> bytes) => ~Update(0xFFFFFFFFu, bytes);

    /// <summary>Advances a running (not yet inverted) register over <paramref name="bytes"/>.</summary>
    private static uint Update(uint register, ReadOnlySpan<byte> bytes)
    {
        uint[] table = s_table;
        foreach (byte b in bytes)
        {
            register = table[(byte)(register ^ b)] ^ (register >> 8);
        }
        return register;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int bit = 0; bit < 8; bit++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }
            table[n] = c;
        }
        return table;
    }
}
