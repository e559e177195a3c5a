using System.Buffers.Binary;

namespace MlNetFinetune.Images;

/// <summary>The encoded image formats the decoder reads.</summary>
public enum ImageFormat
{
    Png,
    Jpeg,
    Gif,
    Bmp,
    WebP,
}

/// <summary>
/// The format and dimensions an encoded image declares, read from its first bytes without decoding it, so that a
/// server can refuse a decompression bomb (a few kilobytes that decode to gigabytes) before paying for it.
/// </summary>
public sealed record ImageHeader(ImageFormat Format, int Width, int Height)
{
    public const string SupportedFormats = "PNG, JPEG, GIF, BMP or WebP";

    public long Pixels => (long)Width * Height;

    /// <summary>The format named by the file signature, or null when it is none the decoder reads.</summary>
    public static ImageFormat? DetectFormat(ReadOnlySpan<byte> data)
    {
        if (data.StartsWith((ReadOnlySpan<byte>)[0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]))
        {
            return ImageFormat.Png;
        }

        if (data.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF]))
        {
            return ImageFormat.Jpeg;
        }

        if (data.StartsWith("GIF87a"u8) || data.StartsWith("GIF89a"u8))
        {
            return ImageFormat.Gif;
        }

        if (data.StartsWith("BM"u8))
        {
            return ImageFormat.Bmp;
        }

        if (data.Length >= 12 && data.StartsWith("RIFF"u8) && data[8..12].SequenceEqual("WEBP"u8))
        {
            return ImageFormat.WebP;
        }

        return null;
    }

    /// <summary>
    /// Reads the declared dimensions; throws <see cref="InvalidDataException"/> naming <paramref name="source"/> when the
    /// format is unknown or its header is truncated or malformed.
    /// </summary>
    public static ImageHeader Read(ReadOnlySpan<byte> data, string source = "image")
    {
        var format = DetectFormat(data)
            ?? throw new InvalidDataException($"{source}: not a {SupportedFormats} image (unknown file signature)");
        var (width, height) = format switch
        {
            ImageFormat.Png => ReadPng(data),
            ImageFormat.Jpeg => ReadJpeg(data),
            ImageFormat.Gif => ReadGif(data),
            ImageFormat.Bmp => ReadBmp(data),
            _ => ReadWebP(data),
        };
        if (width <= 0 || height <= 0)
        {
            throw new InvalidDataException($"{source}: {format} header declares an empty image ({width}x{height})");
        }

        return new ImageHeader(format, width, height);

        ReadOnlySpan<byte> Slice(ReadOnlySpan<byte> bytes, int start, int length) => start + length <= bytes.Length
            ? bytes.Slice(start, length)
            : throw new InvalidDataException($"{source}: {format} header is truncated ({bytes.Length} bytes)");

        (int, int) ReadPng(ReadOnlySpan<byte> bytes)
        {
            // The first chunk must be IHDR: length, type, then width and height as big-endian 31-bit numbers.
            if (!Slice(bytes, 12, 4).SequenceEqual("IHDR"u8))
            {
                throw new InvalidDataException($"{source}: PNG does not start with an IHDR chunk");
            }

            return (Positive31(BinaryPrimitives.ReadUInt32BigEndian(Slice(bytes, 16, 4))), Positive31(BinaryPrimitives.ReadUInt32BigEndian(Slice(bytes, 20, 4))));
        }

        (int, int) ReadGif(ReadOnlySpan<byte> bytes)
        {
            // The logical screen, the canvas every frame is drawn on, right after the signature.
            var screen = Slice(bytes, 6, 4);
            return (BinaryPrimitives.ReadUInt16LittleEndian(screen), BinaryPrimitives.ReadUInt16LittleEndian(screen[2..]));
        }

        (int, int) ReadJpeg(ReadOnlySpan<byte> bytes)
        {
            // Walk the marker segments up to the first start-of-frame, which holds the dimensions.
            var at = 2;
            while (true)
            {
                if (Slice(bytes, at, 1)[0] != 0xFF)
                {
                    throw new InvalidDataException($"{source}: JPEG marker expected at byte {at}");
                }

                while (Slice(bytes, at + 1, 1)[0] == 0xFF)
                {
                    at++;
                }

                var marker = bytes[at + 1];
                at += 2;
                if (marker is 0x01 or (>= 0xD0 and <= 0xD7))
                {
                    continue;
                }

                if (marker is 0xD9 or 0xDA)
                {
                    throw new InvalidDataException($"{source}: JPEG has no frame header before its image data");
                }

                var length = BinaryPrimitives.ReadUInt16BigEndian(Slice(bytes, at, 2));
                if (length < 2)
                {
                    throw new InvalidDataException($"{source}: JPEG segment at byte {at} has length {length}");
                }

                // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width.
                if (marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC)
                {
                    var frame = Slice(bytes, at + 2, 5);
                    return (BinaryPrimitives.ReadUInt16BigEndian(frame[3..]), BinaryPrimitives.ReadUInt16BigEndian(frame[1..]));
                }

                at += length;
            }
        }

        (int, int) ReadBmp(ReadOnlySpan<byte> bytes)
        {
            var infoSize = BinaryPrimitives.ReadUInt32LittleEndian(Slice(bytes, 14, 4));
            if (infoSize == 12)
            {
                // OS/2 BITMAPCOREHEADER: 16-bit unsigned dimensions.
                return (BinaryPrimitives.ReadUInt16LittleEndian(Slice(bytes, 18, 2)), BinaryPrimitives.ReadUInt16LittleEndian(Slice(bytes, 20, 2)));
            }

            if (infoSize < 40)
            {
                throw new InvalidDataException($"{source}: BMP info header of {infoSize} bytes is not one the decoder reads");
            }

            // A negative height means the rows are stored top-down; the image is just as tall.
            var height = BinaryPrimitives.ReadInt32LittleEndian(Slice(bytes, 22, 4));
            return (BinaryPrimitives.ReadInt32LittleEndian(bytes[18..]), height == int.MinValue ? 0 : Math.Abs(height));
        }

        (int, int) ReadWebP(ReadOnlySpan<byte> bytes)
        {
            var chunk = Slice(bytes, 12, 4);
            if (chunk.SequenceEqual("VP8X"u8))
            {
                // Extended format: 24-bit canvas width - 1 and height - 1 after four bytes of flags.
                var canvas = Slice(bytes, 24, 6);
                return (ReadUInt24(canvas) + 1, ReadUInt24(canvas[3..]) + 1);
            }

            if (chunk.SequenceEqual("VP8L"u8))
            {
                // Lossless: signature 0x2F, then 14-bit width - 1 and height - 1 packed little-endian.
                if (Slice(bytes, 20, 1)[0] != 0x2F)
                {
                    throw new InvalidDataException($"{source}: WebP lossless bitstream lacks its signature");
                }

                var bits = BinaryPrimitives.ReadUInt32LittleEndian(Slice(bytes, 21, 4));
                return ((int)(bits & 0x3FFF) + 1, (int)((bits >> 14) & 0x3FFF) + 1);
            }

            if (chunk.SequenceEqual("VP8 "u8))
            {
                // Lossy: a 3-byte frame tag, the start code 9D 01 2A, then 14-bit width and height (2 bits of scaling each).
                var frame = Slice(bytes, 20, 10);
                if (!frame[3..6].SequenceEqual((ReadOnlySpan<byte>)[0x9D, 0x01, 0x2A]))
                {
                    throw new InvalidDataException($"{source}: WebP lossy frame lacks its start code");
                }

                return (BinaryPrimitives.ReadUInt16LittleEndian(frame[6..]) & 0x3FFF, BinaryPrimitives.ReadUInt16LittleEndian(frame[8..]) & 0x3FFF);
            }

            throw new InvalidDataException($"{source}: WebP chunk '{System.Text.Encoding.ASCII.GetString(chunk)}' is not VP8, VP8L or VP8X");
        }

        int Positive31(uint value) => value <= int.MaxValue
            ? (int)value
            : throw new InvalidDataException($"{source}: PNG dimension {value} is beyond the format's 2^31-1");
    }

    private static int ReadUInt24(ReadOnlySpan<byte> bytes) => bytes[0] | (bytes[1] << 8) | (bytes[2] << 16);
}
