using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace MlNetFinetune.Images;

/// <summary>
/// Checks that a PNG is whole by walking its chunk chain: every chunk's length must fit in the file, every critical
/// chunk's CRC must match, and the chain must reach IEND. A truncated file with "IEND" appended fails, because the appended bytes lie
/// inside the cut-off chunk's declared length; bytes after a real IEND are allowed.
/// </summary>
internal static class PngStructure
{
    // Eight tables, so that the CRC takes eight bytes per step ("slicing by 8"): the IDAT data is most of the file.
    private static readonly uint[][] s_crcTables = BuildCrcTables();

    /// <summary>Throws <see cref="InvalidImageException"/>: <see cref="ImageProblem.Truncated"/> when the chain stops before IEND, <see cref="ImageProblem.Corrupt"/> for a bad chunk.</summary>
    public static void EnsureComplete(ReadOnlySpan<byte> png, string source)
    {
        var at = 8;
        while (true)
        {
            if (at + 8 > png.Length)
            {
                throw new InvalidImageException(source, ImageProblem.Truncated, string.Create(CultureInfo.InvariantCulture,
                    $"truncated PNG (the file ends at byte {png.Length}, before the IEND chunk)"));
            }

            var length = BinaryPrimitives.ReadUInt32BigEndian(png[at..]);
            var type = png.Slice(at + 4, 4);
            if (length > int.MaxValue || !IsChunkType(type))
            {
                throw new InvalidImageException(source, ImageProblem.Corrupt, string.Create(CultureInfo.InvariantCulture,
                    $"corrupt PNG (no valid chunk at byte {at}: {Convert.ToHexString(png.Slice(at, 8))})"));
            }

            var name = Encoding.ASCII.GetString(type);
            if (at + 12L + length > png.Length)
            {
                throw new InvalidImageException(source, ImageProblem.Truncated, string.Create(CultureInfo.InvariantCulture,
                    $"truncated PNG (chunk {name} at byte {at} declares {length} bytes; the file ends {png.Length - at - 8} bytes into it)"));
            }

            // As libpng does, a critical chunk (upper-case first letter) with a wrong CRC is an error and an ancillary one is not.
            var crc = BinaryPrimitives.ReadUInt32BigEndian(png[(at + 8 + (int)length)..]);
            if (char.IsAsciiLetterUpper((char)type[0]) && Crc(png.Slice(at + 4, 4 + (int)length)) != crc)
            {
                throw new InvalidImageException(source, ImageProblem.Corrupt, string.Create(CultureInfo.InvariantCulture,
                    $"corrupt PNG (CRC mismatch in chunk {name} at byte {at})"));
            }

            if (name == "IEND")
            {
                return;
            }

            at += 12 + (int)length;
        }
    }

    /// <summary>The CRC-32 of PNG (and zlib, gzip): polynomial 0xEDB88320, reflected.</summary>
    internal static uint Crc(ReadOnlySpan<byte> data)
    {
        var t = s_crcTables;
        var crc = 0xFFFFFFFFu;
        for (; data.Length >= 8; data = data[8..])
        {
            var low = BinaryPrimitives.ReadUInt32LittleEndian(data) ^ crc;
            var high = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            crc = t[7][low & 0xFF] ^ t[6][(low >> 8) & 0xFF] ^ t[5][(low >> 16) & 0xFF] ^ t[4][low >> 24]
                ^ t[3][high & 0xFF] ^ t[2][(high >> 8) & 0xFF] ^ t[1][(high >> 16) & 0xFF] ^ t[0][high >> 24];
        }

        foreach (var b in data)
        {
            crc = t[0][(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return ~crc;
    }

    private static bool IsChunkType(ReadOnlySpan<byte> type)
    {
        foreach (var c in type)
        {
            if (!char.IsAsciiLetter((char)c))
            {
                return false;
            }
        }

        return true;
    }

    private static uint[][] BuildCrcTables()
    {
        var tables = new uint[8][];
        tables[0] = new uint[256];
        for (var n = 0u; n < 256; n++)
        {
            var c = n;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            tables[0][n] = c;
        }

        for (var k = 1; k < 8; k++)
        {
            tables[k] = new uint[256];
            for (var n = 0; n < 256; n++)
            {
                var previous = tables[k - 1][n];
                tables[k][n] = (previous >> 8) ^ tables[0][previous & 0xFF];
            }
        }

        return tables;
    }
}
