using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace MlNetFinetune.Images;

/// <summary>The encoded image formats the decoder reads.</summary>
public enum ImageFormat
{
    /// <summary>PNG.</summary>
    Png,

    /// <summary>JPEG (JFIF, EXIF).</summary>
    Jpeg,

    /// <summary>GIF 87a or 89a; the first frame is decoded.</summary>
    Gif,

    /// <summary>Windows bitmap.</summary>
    Bmp,

    /// <summary>WebP, lossy, lossless or extended (alpha, animation).</summary>
    WebP,
}

/// <summary>
/// The format of an encoded image and the size of the largest canvas or frame the decoder would allocate for it, read
/// from the encoded bytes without decoding them, so that a decompression bomb (a few bytes that decode to gigabytes)
/// is refused before any pixel memory is allocated. Reading never allocates in proportion to a declared size.
/// </summary>
/// <param name="Format">The format named by the file signature.</param>
/// <param name="Width">Width of the largest canvas or frame extent (for a GIF, the logical screen and every frame's left + width).</param>
/// <param name="Height">Height of the largest canvas or frame extent.</param>
public sealed record ImageHeader(ImageFormat Format, int Width, int Height)
{
    /// <summary>The formats, for messages.</summary>
    public const string SupportedFormats = "PNG, JPEG, GIF, BMP or WebP";

    /// <summary>Width x height: the pixels the decoder would allocate, 4 bytes each.</summary>
    public long Pixels => (long)Width * Height;

    /// <summary>
    /// Where the size comes from when it is not the image's main header, e.g. "frame 1 is 16000x16000 at (0, 0) on a
    /// 10x10 logical screen"; null when the main header declares it.
    /// </summary>
    public string? SizeNote { get; init; }

    /// <summary>The format's usual written name, for messages: PNG, JPEG, GIF, BMP, WebP.</summary>
    public static string NameOf(ImageFormat format) => format switch
    {
        ImageFormat.WebP => "WebP",
        _ => format.ToString().ToUpperInvariant(),
    };

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
    /// Reads the format and the size the decoder would allocate. Throws <see cref="InvalidImageException"/> naming
    /// <paramref name="source"/>: <see cref="ImageProblem.Empty"/>, <see cref="ImageProblem.UnknownFormat"/>, or
    /// <see cref="ImageProblem.MalformedHeader"/> when the header is cut short or declares an empty image.
    /// </summary>
    public static ImageHeader Read(ReadOnlySpan<byte> data, string source = "image")
    {
        if (data.IsEmpty)
        {
            throw new InvalidImageException(source, ImageProblem.Empty, "empty (0 bytes)");
        }

        var format = DetectFormat(data)
            ?? throw new InvalidImageException(source, ImageProblem.UnknownFormat,
                $"not a {SupportedFormats} image (unknown file signature {Convert.ToHexString(data[..Math.Min(8, data.Length)])})");
        var reader = new HeaderReader(data, format, source);
        var header = format switch
        {
            ImageFormat.Png => reader.Png(),
            ImageFormat.Jpeg => reader.Jpeg(),
            ImageFormat.Gif => reader.Gif(),
            ImageFormat.Bmp => reader.Bmp(),
            _ => reader.WebP(),
        };
        if (header.Width <= 0 || header.Height <= 0)
        {
            throw new InvalidImageException(source, ImageProblem.MalformedHeader,
                string.Create(CultureInfo.InvariantCulture, $"{NameOf(format)} header declares an empty image ({header.Width}x{header.Height})"));
        }

        return header;
    }

    /// <summary>Throws <see cref="InvalidImageException"/> (<see cref="ImageProblem.TooLarge"/>) when the image would decode to more than <paramref name="limits"/> allows.</summary>
    public void EnsureWithin(ImageLimits limits, string source)
    {
        if (Pixels > limits.MaxPixels)
        {
            var where = SizeNote is null ? "" : $" ({SizeNote})";
            throw new InvalidImageException(source, ImageProblem.TooLarge, string.Create(CultureInfo.InvariantCulture,
                $"{NameOf(Format)} would decode to {Width}x{Height} = {Pixels} pixels{where}, more than the limit of {limits.MaxPixels} pixels"));
        }
    }

    /// <summary>The per-format readers; each throws <see cref="ImageProblem.MalformedHeader"/> for a header it cannot read.</summary>
    private readonly ref struct HeaderReader(ReadOnlySpan<byte> data, ImageFormat format, string source)
    {
        private readonly ReadOnlySpan<byte> _data = data;

        public ImageHeader Png()
        {
            // The first chunk must be IHDR: length, type, then width and height as big-endian 31-bit numbers.
            if (!Slice(12, 4).SequenceEqual("IHDR"u8))
            {
                throw Malformed("PNG does not start with an IHDR chunk");
            }

            return new ImageHeader(format, Positive31(BinaryPrimitives.ReadUInt32BigEndian(Slice(16, 4))), Positive31(BinaryPrimitives.ReadUInt32BigEndian(Slice(20, 4))));
        }

        public ImageHeader Jpeg()
        {
            // Walk the marker segments up to the first start-of-frame, which holds the dimensions.
            var at = 2;
            while (true)
            {
                if (Slice(at, 1)[0] != 0xFF)
                {
                    throw Malformed(string.Create(CultureInfo.InvariantCulture, $"JPEG marker expected at byte {at}"));
                }

                while (Slice(at + 1, 1)[0] == 0xFF)
                {
                    at++;
                }

                var marker = _data[at + 1];
                at += 2;
                if (marker is 0x01 or (>= 0xD0 and <= 0xD7))
                {
                    continue;
                }

                if (marker is 0xD9 or 0xDA)
                {
                    throw Malformed("JPEG has no frame header before its image data");
                }

                var length = BinaryPrimitives.ReadUInt16BigEndian(Slice(at, 2));
                if (length < 2)
                {
                    throw Malformed(string.Create(CultureInfo.InvariantCulture, $"JPEG segment at byte {at} has length {length}"));
                }

                // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width.
                if (marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC)
                {
                    var frame = Slice(at + 2, 5);
                    return new ImageHeader(format, BinaryPrimitives.ReadUInt16BigEndian(frame[3..]), BinaryPrimitives.ReadUInt16BigEndian(frame[1..]));
                }

                at += length;
            }
        }

        /// <summary>
        /// The logical screen and every frame. The decoder enlarges its canvas to the first frame's extent, so a 29-byte
        /// file with a 10x10 screen and a 16000x16000 frame allocates 1 GB; later frames are taken as well, to stay on
        /// the safe side. The blocks are walked as far as the data goes: what is cut off is the decoder's to report.
        /// </summary>
        public ImageHeader Gif()
        {
            var screen = Slice(6, 7);
            int screenWidth = BinaryPrimitives.ReadUInt16LittleEndian(screen), screenHeight = BinaryPrimitives.ReadUInt16LittleEndian(screen[2..]);
            var (width, height) = (screenWidth, screenHeight);
            string? note = null;
            var at = 13 + ColorTableLength(screen[4]);
            var frames = 0;
            while (at < _data.Length)
            {
                var introducer = _data[at];
                if (introducer == 0x21)
                {
                    at = SkipSubBlocks(at + 2);
                }
                else if (introducer == 0x2C && at + 10 <= _data.Length)
                {
                    var descriptor = _data.Slice(at + 1, 9);
                    int left = BinaryPrimitives.ReadUInt16LittleEndian(descriptor), top = BinaryPrimitives.ReadUInt16LittleEndian(descriptor[2..]);
                    int frameWidth = BinaryPrimitives.ReadUInt16LittleEndian(descriptor[4..]), frameHeight = BinaryPrimitives.ReadUInt16LittleEndian(descriptor[6..]);
                    frames++;
                    if (left + frameWidth > width || top + frameHeight > height)
                    {
                        (width, height) = (Math.Max(width, left + frameWidth), Math.Max(height, top + frameHeight));
                        note = string.Create(CultureInfo.InvariantCulture,
                            $"frame {frames} is {frameWidth}x{frameHeight} at ({left}, {top}) on a {screenWidth}x{screenHeight} logical screen");
                    }

                    // Then the local colour table, the LZW minimum code size and the data sub-blocks.
                    at = SkipSubBlocks(at + 10 + ColorTableLength(descriptor[8]) + 1);
                }
                else
                {
                    // The trailer (0x3B), a descriptor cut short, or stray bytes, which the decoder also takes as the end.
                    break;
                }
            }

            return new ImageHeader(format, width, height) { SizeNote = note };
        }

        public ImageHeader Bmp()
        {
            var infoSize = BinaryPrimitives.ReadUInt32LittleEndian(Slice(14, 4));
            if (infoSize == 12)
            {
                // OS/2 BITMAPCOREHEADER: 16-bit unsigned dimensions.
                return new ImageHeader(format, BinaryPrimitives.ReadUInt16LittleEndian(Slice(18, 2)), BinaryPrimitives.ReadUInt16LittleEndian(Slice(20, 2)));
            }

            if (infoSize < 40)
            {
                throw Malformed(string.Create(CultureInfo.InvariantCulture, $"BMP info header of {infoSize} bytes is not one the decoder reads"));
            }

            // A negative height means the rows are stored top-down; the image is just as tall.
            var height = BinaryPrimitives.ReadInt32LittleEndian(Slice(22, 4));
            return new ImageHeader(format, BinaryPrimitives.ReadInt32LittleEndian(_data[18..]), height == int.MinValue ? 0 : Math.Abs(height));
        }

        /// <summary>
        /// The first chunk (VP8X canvas, or the VP8 / VP8L bitstream of a simple file), then every chunk after it: the
        /// extent of each animation frame (ANMF) and of each bitstream, inside frames too. Chunks are walked as far as the
        /// data and the RIFF size go.
        /// </summary>
        public ImageHeader WebP()
        {
            var (width, height) = Bitstream(12, strict: true) ?? throw Malformed(
                $"WebP chunk '{Encoding.ASCII.GetString(Slice(12, 4))}' is not VP8, VP8L or VP8X");
            string? note = null;
            var end = (int)Math.Min(_data.Length, 8L + BinaryPrimitives.ReadUInt32LittleEndian(_data[4..]));
            var frames = 0;
            for (var at = 12; at + 8 <= end; at = Next(at))
            {
                if (!_data.Slice(at, 4).SequenceEqual("ANMF"u8) || at + 24 > end)
                {
                    if (at > 12 && Bitstream(at, strict: false) is var (w, h) && (w > width || h > height))
                    {
                        (width, height) = (Math.Max(width, w), Math.Max(height, h));
                        note = string.Create(CultureInfo.InvariantCulture, $"a {w}x{h} bitstream beyond the canvas");
                    }

                    continue;
                }

                // ANMF: 24-bit X / 2, Y / 2, width - 1, height - 1, duration, a flags byte, then the frame's own chunks.
                var frame = _data.Slice(at + 8, 16);
                frames++;
                int left = ReadUInt24(frame) * 2, top = ReadUInt24(frame[3..]) * 2;
                int frameWidth = ReadUInt24(frame[6..]) + 1, frameHeight = ReadUInt24(frame[9..]) + 1;
                for (var inner = at + 24; inner + 8 <= Math.Min(end, Next(at)); inner = Next(inner))
                {
                    if (Bitstream(inner, strict: false) is var (w, h))
                    {
                        (frameWidth, frameHeight) = (Math.Max(frameWidth, w), Math.Max(frameHeight, h));
                    }
                }

                if (left + frameWidth > width || top + frameHeight > height)
                {
                    (width, height) = (Math.Max(width, left + frameWidth), Math.Max(height, top + frameHeight));
                    note = string.Create(CultureInfo.InvariantCulture, $"animation frame {frames} is {frameWidth}x{frameHeight} at ({left}, {top})");
                }
            }

            return new ImageHeader(format, width, height) { SizeNote = note };
        }

        /// <summary>
        /// The size a VP8X, VP8L or VP8 chunk at <paramref name="at"/> declares; null for any other chunk, and, unless
        /// <paramref name="strict"/>, for one cut off before its size (a later chunk the decoder cannot reach either).
        /// </summary>
        private (int Width, int Height)? Bitstream(int at, bool strict)
        {
            if (!strict && at + 18 > _data.Length)
            {
                return null;
            }

            var chunk = Slice(at, 4);
            if (chunk.SequenceEqual("VP8X"u8))
            {
                // Extended format: 24-bit canvas width - 1 and height - 1 after four bytes of flags.
                var canvas = Slice(at + 12, 6);
                return (ReadUInt24(canvas) + 1, ReadUInt24(canvas[3..]) + 1);
            }

            if (chunk.SequenceEqual("VP8L"u8))
            {
                // Lossless: signature 0x2F, then 14-bit width - 1 and height - 1 packed little-endian.
                if (Slice(at + 8, 1)[0] != 0x2F)
                {
                    throw Malformed("WebP lossless bitstream lacks its signature");
                }

                var bits = BinaryPrimitives.ReadUInt32LittleEndian(Slice(at + 9, 4));
                return ((int)(bits & 0x3FFF) + 1, (int)((bits >> 14) & 0x3FFF) + 1);
            }

            if (chunk.SequenceEqual("VP8 "u8))
            {
                // Lossy: a 3-byte frame tag, the start code 9D 01 2A, then 14-bit width and height (2 bits of scaling each).
                var frame = Slice(at + 8, 10);
                if (!frame[3..6].SequenceEqual((ReadOnlySpan<byte>)[0x9D, 0x01, 0x2A]))
                {
                    throw Malformed("WebP lossy frame lacks its start code");
                }

                return (BinaryPrimitives.ReadUInt16LittleEndian(frame[6..]) & 0x3FFF, BinaryPrimitives.ReadUInt16LittleEndian(frame[8..]) & 0x3FFF);
            }

            return null;
        }

        /// <summary>The offset of the RIFF chunk after the one at <paramref name="at"/> (chunks are padded to even sizes).</summary>
        private int Next(int at)
        {
            var size = BinaryPrimitives.ReadUInt32LittleEndian(_data[(at + 4)..]);
            return (int)Math.Min(int.MaxValue, at + 8L + size + (size & 1));
        }

        private int SkipSubBlocks(int at)
        {
            while (at < _data.Length && _data[at] != 0)
            {
                at += _data[at] + 1;
            }

            return at + 1;
        }

        private static int ColorTableLength(byte flags) => (flags & 0x80) == 0 ? 0 : 3 << ((flags & 7) + 1);

        private ReadOnlySpan<byte> Slice(int start, int length) => start + length <= _data.Length
            ? _data.Slice(start, length)
            : throw Malformed(string.Create(CultureInfo.InvariantCulture, $"{NameOf(format)} header is truncated ({_data.Length} bytes)"));

        private int Positive31(uint value) => value <= int.MaxValue
            ? (int)value
            : throw Malformed(string.Create(CultureInfo.InvariantCulture, $"PNG dimension {value} is beyond the format's 2^31-1"));

        private InvalidImageException Malformed(string detail) => new(source, ImageProblem.MalformedHeader, detail);

        private static int ReadUInt24(ReadOnlySpan<byte> bytes) => bytes[0] | (bytes[1] << 8) | (bytes[2] << 16);
    }
}
