using System.Buffers.Binary;
using System.Text;
using MlNetFinetune.BadInputCorpus;
using MlNetFinetune.Images;
using SkiaSharp;

namespace MlNetFinetune.Tests.Images;

public sealed class ImageHeaderTests
{
    private const int Width = 37;
    private const int Height = 21;

    /// <summary>Each kind of header the reader knows, as the encoder (or, for BMP and GIF, which Skia cannot write, by hand) writes it.</summary>
    public static TheoryData<string> Kinds => ["png", "jpeg", "webp-lossy", "webp-lossless", "webp-alpha", "bmp", "bmp-top-down", "gif"];

    [Theory]
    [MemberData(nameof(Kinds))]
    public void HeaderGivesTheSizeTheDecoderDecodes(string kind)
    {
        var (bytes, format) = Encode(kind);

        var header = ImageHeader.Read(bytes);
        using var decoded = ImageDecoder.Decode(bytes, kind);

        Assert.Equal(format, header.Format);
        Assert.Equal(format, ImageHeader.DetectFormat(bytes));
        Assert.Equal((Width, Height), (header.Width, header.Height));
        Assert.Equal((decoded.Width, decoded.Height), (header.Width, header.Height));
        Assert.Equal((long)Width * Height, header.Pixels);
    }

    [Theory]
    [InlineData("webp-lossy", "VP8 ")]
    [InlineData("webp-lossless", "VP8L")]
    [InlineData("webp-alpha", "VP8X")]
    public void WebPCasesCoverEachBitstream(string kind, string chunk)
    {
        Assert.Equal(chunk, Encoding.ASCII.GetString(Encode(kind).Bytes, 12, 4));
    }

    [Fact]
    public void JpegFrameIsFoundAfterOtherSegments()
    {
        var jpeg = Encode("jpeg").Bytes;
        byte[] comment = [0xFF, 0xFE, 0x00, 0x07, .. "hello"u8];
        byte[] withComment = [.. jpeg[..2], .. comment, 0xFF, .. jpeg[2..]];

        var header = ImageHeader.Read(withComment);

        Assert.Equal((Width, Height), (header.Width, header.Height));
    }

    [Fact]
    public void UnknownSignatureIsNoFormat()
    {
        var text = "<html>not an image</html>"u8.ToArray();

        Assert.Null(ImageHeader.DetectFormat(text));
        Assert.Null(ImageHeader.DetectFormat([]));
        var error = Assert.Throws<InvalidImageException>(() => ImageHeader.Read(text, "upload.bin"));
        Assert.Equal(ImageProblem.UnknownFormat, error.Problem);
        Assert.Equal("upload.bin", error.Source);
        Assert.StartsWith("upload.bin: not a PNG, JPEG, GIF, BMP or WebP image (unknown file signature 3C68746D6C3E6E6F)", error.Message);
        Assert.Equal(ImageProblem.Empty, Assert.Throws<InvalidImageException>(() => ImageHeader.Read([], "upload.bin")).Problem);
    }

    [Theory]
    [InlineData("png", 20)]
    [InlineData("jpeg", 30)]
    [InlineData("webp-lossy", 24)]
    [InlineData("webp-alpha", 26)]
    [InlineData("bmp", 20)]
    [InlineData("gif", 8)]
    public void TruncatedHeaderIsInvalidData(string kind, int keep)
    {
        var error = Assert.Throws<InvalidImageException>(() => ImageHeader.Read(Encode(kind).Bytes[..keep], kind));

        Assert.Equal(ImageProblem.MalformedHeader, error.Problem);
        Assert.StartsWith(kind + ": ", error.Message);
    }

    [Fact]
    public void HugeDeclaredSizeIsReadWithoutOverflow()
    {
        var png = Encode("png").Bytes;
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), int.MaxValue);
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(20), int.MaxValue);

        Assert.Equal((long)int.MaxValue * int.MaxValue, ImageHeader.Read(png).Pixels);

        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), 0);
        var empty = Assert.Throws<InvalidImageException>(() => ImageHeader.Read(png));
        Assert.Equal(ImageProblem.MalformedHeader, empty.Problem);
        Assert.Contains("empty image", empty.Message);
    }

    [Fact]
    public void GifSizeIsTheLargestFrameExtentNotJustTheLogicalScreen()
    {
        // Given a 29-byte GIF whose 10x10 logical screen holds one 16000x16000 frame, which SkiaSharp decodes to 16000x16000
        var bomb = HostileImages.GifFrameBomb(16000);
        using var codec = SKCodec.Create(new MemoryStream(bomb));

        // When its header is read
        var header = ImageHeader.Read(bomb, "bomb.gif");

        // Then the size is the frame's, as the decoder's canvas is (the old reader said 10x10)
        Assert.Equal(29, bomb.Length);
        Assert.Equal((16000, 16000), (header.Width, header.Height));
        Assert.Equal((codec.Info.Width, codec.Info.Height), (header.Width, header.Height));
        Assert.Contains("frame 1 is 16000x16000 at (0, 0) on a 10x10 logical screen", header.SizeNote);
        var refused = Assert.Throws<InvalidImageException>(() => header.EnsureWithin(ImageLimits.Default, "bomb.gif"));
        Assert.Equal(ImageProblem.TooLarge, refused.Problem);
        Assert.Equal(
            "bomb.gif: GIF would decode to 16000x16000 = 256000000 pixels (frame 1 is 16000x16000 at (0, 0) on a 10x10 logical screen), more than the limit of 40000000 pixels",
            refused.Message);
    }

    [Fact]
    public void GifFramesAfterExtensionsAndColourTablesAreFound()
    {
        // Given a GIF with a global colour table, a comment extension, a small first frame and an offset second frame
        byte[] frame(int left, int top, int width, int height) =>
            [0x2C, (byte)left, (byte)(left >> 8), (byte)top, (byte)(top >> 8), (byte)width, (byte)(width >> 8), (byte)height, (byte)(height >> 8), 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00];
        byte[] gif = [.. "GIF89a"u8, 20, 0, 20, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255, 0x21, 0xFE, 3, .. "hi!"u8, 0, .. frame(0, 0, 1, 1), .. frame(300, 7, 50, 60), 0x3B];

        // When its header is read
        var header = ImageHeader.Read(gif);

        // Then the second frame's extent (300 + 50, 7 + 60) is the size
        Assert.Equal((350, 67), (header.Width, header.Height));
        Assert.Contains("frame 2", header.SizeNote);
    }

    [Theory]
    [InlineData("canvas", 20000, 20000)]
    [InlineData("frame", 16000, 16000)]
    public void WebPSizeCoversTheCanvasAndEveryAnimationFrame(string kind, int width, int height)
    {
        var webp = kind == "canvas" ? HostileImages.WebPDeclaring(width, height) : HostileImages.WebPFrameBomb(width);

        var header = ImageHeader.Read(webp);

        Assert.Equal(ImageFormat.WebP, header.Format);
        Assert.Equal((width, height), (header.Width, header.Height));
    }

    private static (byte[] Bytes, ImageFormat Format) Encode(string kind) => kind switch
    {
        "png" => (Skia(SKEncodedImageFormat.Png, 100), ImageFormat.Png),
        "jpeg" => (Skia(SKEncodedImageFormat.Jpeg, 90), ImageFormat.Jpeg),
        "webp-lossy" => (Skia(SKEncodedImageFormat.Webp, 80), ImageFormat.WebP),
        "webp-lossless" => (WebP(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossless, 100), alpha: 255), ImageFormat.WebP),
        "webp-alpha" => (WebP(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossy, 80), alpha: 128), ImageFormat.WebP),
        "bmp" => (Bmp(topDown: false), ImageFormat.Bmp),
        "bmp-top-down" => (Bmp(topDown: true), ImageFormat.Bmp),
        "gif" => (Gif(), ImageFormat.Gif),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    private static SKBitmap Bitmap(byte alpha)
    {
        var bitmap = new SKBitmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        bitmap.Erase(new SKColor(200, 30, 90, alpha));
        return bitmap;
    }

    private static byte[] Skia(SKEncodedImageFormat format, int quality)
    {
        using var bitmap = Bitmap(255);
        using var data = bitmap.Encode(format, quality);
        return data.ToArray();
    }

    private static byte[] WebP(SKWebpEncoderOptions options, byte alpha)
    {
        using var bitmap = Bitmap(alpha);
        using var pixels = bitmap.PeekPixels();
        using var data = pixels.Encode(options);
        return data.ToArray();
    }

    /// <summary>A 24-bit BMP with a BITMAPINFOHEADER; top-down ones declare a negative height.</summary>
    private static byte[] Bmp(bool topDown)
    {
        var stride = (Width * 3 + 3) & ~3;
        var bytes = new byte[54 + stride * Height];
        "BM"u8.CopyTo(bytes);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(2), bytes.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(18), Width);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(22), topDown ? -Height : Height);
        BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(28), 24);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(34), stride * Height);
        bytes.AsSpan(54).Fill(0x7F);
        return bytes;
    }

    /// <summary>A GIF whose logical screen is Width x Height, holding one 1x1 frame (the classic smallest GIF's).</summary>
    private static byte[] Gif()
    {
        byte[] screen = [(byte)Width, 0, (byte)Height, 0, 0x80, 0, 0];
        byte[] palette = [0, 0, 0, 0xFF, 0xFF, 0xFF];
        byte[] frame = [0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00];
        return [.. "GIF89a"u8, .. screen, .. palette, .. frame, 0x3B];
    }
}
