using System.Buffers.Binary;
using System.IO.Compression;
using SkiaSharp;

namespace MlNetFinetune.BadInputCorpus;

/// <summary>
/// Hostile encoded images, one kind per method: decompression bombs that declare or hold huge sizes, truncations with
/// fake end markers, trailers, EXIF orientations. Each is built from real image bytes where one is needed, and is
/// usable alone as an input to the decoder, the Predictor or the server.
/// </summary>
public static class HostileImages
{
    /// <summary>The GIF logical screen of <see cref="GifFrameBomb"/>.</summary>
    public const int BombScreenSide = 10;

    /// <summary>
    /// A 29-byte GIF with a 10x10 logical screen and one <paramref name="frameSide"/>-square frame (one pixel of LZW data):
    /// a decoder that reads only the screen thinks it small, SkiaSharp enlarges its canvas to the frame (1 GB at 16000).
    /// </summary>
    public static byte[] GifFrameBomb(int frameSide) =>
    [
        .. "GIF89a"u8, BombScreenSide, 0, BombScreenSide, 0, 0, 0, 0,
        0x2C, 0, 0, 0, 0, (byte)frameSide, (byte)(frameSide >> 8), (byte)frameSide, (byte)(frameSide >> 8), 0,
        0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
    ];

    /// <summary>A PNG of about 69 bytes declaring <paramref name="width"/> x <paramref name="height"/> 8-bit gray pixels, with a few bytes of image data.</summary>
    public static byte[] PngDeclaring(int width, int height) =>
        Png(width, height, bitDepth: 8, Compress(new byte[2]));

    /// <summary>
    /// A real, complete 1-bit PNG of <paramref name="side"/> x <paramref name="side"/> black pixels. At 30000 it is
    /// about 109 KB (deflate's best ratio) and decodes to 3.6 GB of 32-bit pixels. Rows are compressed one at a time.
    /// </summary>
    public static byte[] PngOneBitBlank(int side)
    {
        var row = new byte[1 + ((side + 7) / 8)];
        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            for (var y = 0; y < side; y++)
            {
                zlib.Write(row);
            }
        }

        return Png(side, side, bitDepth: 1, compressed.ToArray());
    }

    /// <summary><paramref name="jpeg"/> with its frame header (SOF0) patched to declare <paramref name="width"/> x <paramref name="height"/>.</summary>
    public static byte[] JpegDeclaring(byte[] jpeg, ushort width, ushort height)
    {
        var bytes = jpeg.ToArray();
        var frame = bytes.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xC0]);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(frame + 5), height);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(frame + 7), width);
        return bytes;
    }

    /// <summary>A 54-byte 24-bit BMP header declaring <paramref name="width"/> x <paramref name="height"/>, with no pixel data.</summary>
    public static byte[] BmpDeclaring(int width, int height)
    {
        var bytes = new byte[54];
        "BM"u8.CopyTo(bytes);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(2), bytes.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(18), width);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(22), height);
        BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(28), 24);
        return bytes;
    }

    /// <summary>An extended WebP whose canvas (VP8X) is <paramref name="width"/> x <paramref name="height"/>, holding a 1x1 lossless bitstream.</summary>
    public static byte[] WebPDeclaring(int width, int height) =>
        Riff([.. Chunk("VP8X"u8, [0, 0, 0, 0, .. UInt24(width - 1), .. UInt24(height - 1)]), .. TinyLosslessChunk()]);

    /// <summary>
    /// An animated WebP with a 16x16 canvas and one <paramref name="frameSide"/>-square frame (ANMF) holding a 1x1
    /// bitstream: the canvas alone looks harmless.
    /// </summary>
    public static byte[] WebPFrameBomb(int frameSide) => Riff(
    [
        .. Chunk("VP8X"u8, [0x02, 0, 0, 0, .. UInt24(15), .. UInt24(15)]),
        .. Chunk("ANIM"u8, [0, 0, 0, 0, 0, 0]),
        .. Chunk("ANMF"u8, [.. UInt24(0), .. UInt24(0), .. UInt24(frameSide - 1), .. UInt24(frameSide - 1), .. UInt24(100), 0, .. TinyLosslessChunk()]),
    ]);

    /// <summary><paramref name="png"/> cut in the middle of its first IDAT chunk, with a whole IEND chunk appended.</summary>
    public static byte[] TruncatedPngWithEnd(byte[] png)
    {
        var idat = png.AsSpan().IndexOf("IDAT"u8) - 4;
        var length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(idat));
        return [.. png[..(idat + 8 + (length / 2))], 0, 0, 0, 0, .. "IEND"u8, 0xAE, 0x42, 0x60, 0x82];
    }

    /// <summary><paramref name="jpeg"/> cut 60% into its entropy-coded data, with the end-of-image marker FFD9 appended.</summary>
    public static byte[] TruncatedJpegWithEnd(byte[] jpeg)
    {
        var scan = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
        var data = scan + 2 + BinaryPrimitives.ReadUInt16BigEndian(jpeg.AsSpan(scan + 2));
        var end = jpeg.AsSpan().LastIndexOf((ReadOnlySpan<byte>)[0xFF, 0xD9]);
        return [.. jpeg[..(data + ((end - data) * 6 / 10))], 0xFF, 0xD9];
    }

    /// <summary>The first <paramref name="fraction"/> of <paramref name="image"/>: a plain truncation, no end marker.</summary>
    public static byte[] Truncated(byte[] image, double fraction) => image[..(int)(image.Length * fraction)];

    /// <summary>
    /// <paramref name="jpeg"/> followed by 100 bytes, as camera trailers and phone "motion photos" (a video after the
    /// JPEG) are: the image is whole and must be accepted.
    /// </summary>
    public static byte[] WithTrailer(byte[] jpeg)
    {
        var trailer = new byte[100];
        new Random(100).NextBytes(trailer);
        // It starts like the MP4 of a motion photo: a 24-byte "ftyp" box.
        ((ReadOnlySpan<byte>)[0, 0, 0, 24, .. "ftypmp42"u8]).CopyTo(trailer);
        return [.. jpeg, .. trailer];
    }

    /// <summary><paramref name="jpeg"/> with an EXIF segment (APP1) after its start marker whose orientation tag (0x0112) is <paramref name="orientation"/>.</summary>
    public static byte[] WithExifOrientation(byte[] jpeg, int orientation)
    {
        byte[] payload = [.. "Exif\0\0"u8, .. ExifTiff(orientation)];
        return [0xFF, 0xD8, 0xFF, 0xE1, (byte)((payload.Length + 2) >> 8), (byte)(payload.Length + 2), .. payload, .. jpeg[2..]];
    }

    /// <summary>
    /// A lossy <paramref name="webp"/> (simple format, as SkiaSharp writes it) rewritten in the extended format with an
    /// EXIF chunk whose orientation tag is <paramref name="orientation"/>; SkiaSharp reports it, as it does for JPEG.
    /// </summary>
    public static byte[] WebPWithExifOrientation(byte[] webp, int orientation, int width, int height) => Riff(
    [
        .. Chunk("VP8X"u8, [0x08, 0, 0, 0, .. UInt24(width - 1), .. UInt24(height - 1)]),
        .. webp[12..],
        .. Chunk("EXIF"u8, ExifTiff(orientation)),
    ]);

    /// <summary>
    /// The pixels a camera stores, with EXIF orientation <paramref name="orientation"/>, for the upright image
    /// <paramref name="upright"/>: drawn through the inverse of the orientation's transform with SkiaSharp's canvas, so
    /// that it is made independently of the decoder's own mapping.
    /// </summary>
    public static SKBitmap Stored(SKBitmap upright, int orientation)
    {
        var sideways = orientation >= 5;
        int width = sideways ? upright.Height : upright.Width, height = sideways ? upright.Width : upright.Height;

        // Upright (x, y) to stored coordinates, in pixel edges, e.g. orientation 6 (rotate 90 clockwise to view) stores (y, height - x).
        var transform = orientation switch
        {
            1 => SKMatrix.Identity,
            2 => new SKMatrix(-1, 0, width, 0, 1, 0, 0, 0, 1),
            3 => new SKMatrix(-1, 0, width, 0, -1, height, 0, 0, 1),
            4 => new SKMatrix(1, 0, 0, 0, -1, height, 0, 0, 1),
            5 => new SKMatrix(0, 1, 0, 1, 0, 0, 0, 0, 1),
            6 => new SKMatrix(0, 1, 0, -1, 0, height, 0, 0, 1),
            7 => new SKMatrix(0, -1, width, -1, 0, height, 0, 0, 1),
            8 => new SKMatrix(0, -1, width, 1, 0, 0, 0, 0, 1),
            _ => throw new ArgumentOutOfRangeException(nameof(orientation), orientation, "EXIF orientations are 1 to 8"),
        };
        var stored = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(stored);
        canvas.SetMatrix(transform);
        canvas.DrawBitmap(upright, 0, 0);
        return stored;
    }

    /// <summary>
    /// An upright picture that shows which way is up: the real image <paramref name="samplePng"/> in the middle of a
    /// <see cref="UprightWidth"/> x <see cref="UprightHeight"/> black canvas, a red band along the top edge and a blue
    /// square in the top-left corner. Mirrored, the square is on the right; turned, the band is on another edge.
    /// </summary>
    public static SKBitmap UprightPattern(byte[] samplePng)
    {
        using var sample = SKBitmap.Decode(samplePng);
        var upright = new SKBitmap(new SKImageInfo(UprightWidth, UprightHeight, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(upright);
        canvas.Clear(SKColors.Black);
        canvas.DrawBitmap(sample, new SKRect(0, 0, sample.Width, sample.Height), new SKRect(14, 6, 46, 38));
        using var red = new SKPaint { Color = new SKColor(230, 20, 20) };
        using var blue = new SKPaint { Color = new SKColor(20, 20, 230) };
        canvas.DrawRect(0, 0, UprightWidth, BandHeight, red);
        canvas.DrawRect(0, 0, CornerSide, CornerSide, blue);
        return upright;
    }

    /// <summary>Width of <see cref="UprightPattern"/>.</summary>
    public const int UprightWidth = 60;

    /// <summary>Height of <see cref="UprightPattern"/>.</summary>
    public const int UprightHeight = 40;

    /// <summary>Rows of the red band along the top of <see cref="UprightPattern"/>.</summary>
    public const int BandHeight = 6;

    /// <summary>Side of the blue square in the top-left corner of <see cref="UprightPattern"/>.</summary>
    public const int CornerSide = 10;

    /// <summary>Bytes that are no image, whatever the file is called.</summary>
    public static byte[] NotAnImage() => "<html><body>this is not a picture</body></html>\n"u8.ToArray();

    /// <summary><paramref name="samplePng"/> enlarged to <paramref name="side"/> x <paramref name="side"/> (so that its image data spans many blocks), opaque.</summary>
    public static SKBitmap Enlarged(byte[] samplePng, int side)
    {
        using var sample = SKBitmap.Decode(samplePng);
        var enlarged = new SKBitmap(new SKImageInfo(side, side, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(enlarged);
        using var paint = new SKPaint { FilterQuality = SKFilterQuality.Medium };
        canvas.DrawBitmap(sample, new SKRect(0, 0, sample.Width, sample.Height), new SKRect(0, 0, side, side), paint);
        return enlarged;
    }

    /// <summary>Encodes with SkiaSharp (PNG, JPEG or WebP).</summary>
    public static byte[] Encode(SKBitmap bitmap, SKEncodedImageFormat format, int quality = 90)
    {
        using var data = bitmap.Encode(format, quality);
        return data.ToArray();
    }

    /// <summary>
    /// A real GIF of <paramref name="bitmap"/>'s gray levels (SkiaSharp writes no GIF): a 256-gray palette and LZW data
    /// of literal codes only, with a clear code every 250 pixels so that codes stay 9 bits wide.
    /// </summary>
    public static byte[] Gif(SKBitmap bitmap)
    {
        var codes = new List<int> { 256 };
        for (var y = 0; y < bitmap.Height; y++)
        {
            for (var x = 0; x < bitmap.Width; x++)
            {
                var color = bitmap.GetPixel(x, y);
                codes.Add((color.Red + color.Green + color.Blue) / 3);
                if (codes.Count % 251 == 0)
                {
                    codes.Add(256);
                }
            }
        }

        codes.Add(257);
        var packed = new List<byte>();
        int buffer = 0, bits = 0;
        foreach (var code in codes)
        {
            buffer |= code << bits;
            for (bits += 9; bits >= 8; bits -= 8, buffer >>= 8)
            {
                packed.Add((byte)buffer);
            }
        }

        if (bits > 0)
        {
            packed.Add((byte)buffer);
        }

        var gif = new List<byte>();
        gif.AddRange("GIF89a"u8);
        gif.AddRange([(byte)bitmap.Width, (byte)(bitmap.Width >> 8), (byte)bitmap.Height, (byte)(bitmap.Height >> 8), 0xF7, 0, 0]);
        for (var level = 0; level < 256; level++)
        {
            gif.AddRange([(byte)level, (byte)level, (byte)level]);
        }

        gif.AddRange([0x2C, 0, 0, 0, 0, (byte)bitmap.Width, (byte)(bitmap.Width >> 8), (byte)bitmap.Height, (byte)(bitmap.Height >> 8), 0, 8]);
        foreach (var block in packed.Chunk(255))
        {
            gif.Add((byte)block.Length);
            gif.AddRange(block);
        }

        gif.AddRange([0, 0x3B]);
        return [.. gif];
    }

    /// <summary>A little-endian TIFF header and one IFD holding one SHORT entry, the orientation tag (0x0112); no next IFD.</summary>
    private static byte[] ExifTiff(int orientation) =>
        [.. "II*\0"u8, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (byte)orientation, 0, 0, 0, 0, 0, 0, 0];

    private static byte[] Png(int width, int height, byte bitDepth, byte[] compressed)
    {
        byte[] header = [0, 0, 0, 0, 0, 0, 0, 0, bitDepth, 0, 0, 0, 0];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        return [0x89, .. "PNG\r\n\x1A\n"u8, .. PngChunk("IHDR"u8, header), .. PngChunk("IDAT"u8, compressed), .. PngChunk("IEND"u8, [])];
    }

    private static byte[] PngChunk(ReadOnlySpan<byte> type, byte[] data)
    {
        byte[] typeAndData = [.. type, .. data];
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(chunk, data.Length);
        typeAndData.CopyTo(chunk, 4);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32(typeAndData));
        return chunk;
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
            }
        }

        return ~crc;
    }

    private static byte[] Compress(byte[] raw)
    {
        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            zlib.Write(raw);
        }

        return compressed.ToArray();
    }

    /// <summary>The VP8L chunk of a 1x1 lossless WebP as SkiaSharp writes it.</summary>
    private static byte[] TinyLosslessChunk()
    {
        using var pixel = new SKBitmap(new SKImageInfo(1, 1, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        pixel.Erase(SKColors.Gray);
        using var pixmap = pixel.PeekPixels();
        using var data = pixmap.Encode(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossless, 100));
        return data.ToArray()[12..];
    }

    private static byte[] Riff(byte[] chunks) =>
        [.. "RIFF"u8, .. UInt32(4 + chunks.Length), .. "WEBP"u8, .. chunks];

    private static byte[] Chunk(ReadOnlySpan<byte> type, byte[] data) =>
        [.. type, .. UInt32(data.Length), .. data, .. data.Length % 2 == 1 ? new byte[1] : []];

    private static byte[] UInt32(int value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
        return bytes;
    }

    private static byte[] UInt24(int value) => [(byte)value, (byte)(value >> 8), (byte)(value >> 16)];
}
