using System.Buffers.Binary;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.BadInputCorpus;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using SkiaSharp;

namespace MlNetFinetune.Tests.Images;

public sealed class ImageDecoderTests
{
    private static byte[] Sample(string name) => File.ReadAllBytes(Path.Combine(TestData.SampleFolder, name));

    private static byte[] EnlargedJpeg(string sample, int side = 112)
    {
        using var bitmap = HostileImages.Enlarged(Sample(sample), side);
        return HostileImages.Encode(bitmap, SKEncodedImageFormat.Jpeg);
    }

    [Fact]
    public void OpaqueImagesDecodeToExactlyThePixelsOfCreateFromStream()
    {
        // Given every image of the committed sample (grayscale PNGs) and JPEG, WebP and BMP encodings of some, in colour and gray
        var encoded = Directory.GetFiles(TestData.SampleFolder, "*.png", SearchOption.AllDirectories).Select(File.ReadAllBytes).ToList();
        foreach (var file in Directory.GetFiles(Path.Combine(TestData.SampleFolder, "Sandal")).Order(StringComparer.Ordinal).Take(5))
        {
            using var colour = Tinted(HostileImages.Enlarged(File.ReadAllBytes(file), 100));
            using var gray = colour.Copy(SKColorType.Gray8);
            encoded.Add(HostileImages.Encode(colour, SKEncodedImageFormat.Jpeg, 85));
            encoded.Add(HostileImages.Encode(gray, SKEncodedImageFormat.Jpeg, 85));
            encoded.Add(HostileImages.Encode(colour, SKEncodedImageFormat.Webp, 80));
            encoded.Add(HostileImages.Encode(colour, SKEncodedImageFormat.Png));
        }

        // When each is decoded by the decoder and by ML.NET's own loader
        // Then the pixels are byte for byte the same, so bottleneck caches made before stay valid
        Assert.True(encoded.Count > 500);
        foreach (var bytes in encoded)
        {
            using var decoded = ImageDecoder.Decode(bytes, "image");
            using var reference = MLImage.CreateFromStream(new MemoryStream(bytes));
            Assert.Equal((reference.Width, reference.Height, reference.PixelFormat), (decoded.Width, decoded.Height, decoded.PixelFormat));
            Assert.True(reference.Pixels.SequenceEqual(decoded.Pixels));
        }
    }

    [Fact]
    public void DefaultAlphaGivesTheModelInputThatCreateFromStreamGave()
    {
        // Given a PNG with transparent, half-transparent and opaque pixels
        var png = TransparentPng();

        // When both decodings go through the model's resize and pixel extraction
        var ml = new MLContext(seed: 1);
        var before = ModelPixels(ml, MLImage.CreateFromStream(new MemoryStream(png)));
        var now = ModelPixels(ml, ImageDecoder.Decode(png, "transparent.png"));

        // Then the model sees the same numbers: transparent pixels on black (premultiplied colour)
        Assert.Equal(AlphaPolicy.CompositeOnBlack, ImageDecoder.DefaultAlpha);
        Assert.Equal(before, now);
        Assert.Equal([0f, 0f, 0f], RgbAt(now, 1, 1));
        Assert.Equal([100f, 15f, 45f], RgbAt(now, 48, 1));
    }

    [Theory]
    [InlineData(AlphaPolicy.CompositeOnBlack, 0, 0, 0, 100, 15, 45)]
    [InlineData(AlphaPolicy.CompositeOnWhite, 255, 255, 255, 227, 142, 172)]
    [InlineData(AlphaPolicy.KeepColor, 200, 30, 90, 200, 30, 90)]
    public void AlphaPolicyDecidesWhatTransparentPixelsBecome(AlphaPolicy alpha, int r0, int g0, int b0, int r1, int g1, int b1)
    {
        // Given a PNG whose left half is fully transparent and whose top-right quarter is half transparent, all (200, 30, 90)
        var png = TransparentPng();

        // When it is decoded with the policy
        using var image = ImageDecoder.Decode(png, "transparent.png", alpha: alpha);

        // Then invisible pixels take the policy's colour, half-visible ones a blend, opaque ones stay, and all are opaque
        Assert.Equal([r0, g0, b0, 255], Rgba(image, 1, 1));
        Assert.Equal([r1, g1, b1, 255], Rgba(image, 48, 1));
        Assert.Equal([200, 30, 90, 255], Rgba(image, 48, 48));
    }

    [Fact]
    public void JpegFollowedByATrailerIsAccepted()
    {
        // Given a whole JPEG followed by 100 bytes, as a phone's motion photo or a camera trailer (refused before as "truncated")
        var jpeg = EnlargedJpeg("Bag/train-00023.png");
        var withTrailer = HostileImages.WithTrailer(jpeg);

        // When it is decoded
        using var decoded = ImageDecoder.Decode(withTrailer, "motion.jpg");

        // Then it is the same image as without the trailer
        using var plain = ImageDecoder.Decode(jpeg, "plain.jpg");
        Assert.True(plain.Pixels.SequenceEqual(decoded.Pixels));
    }

    [Theory]
    [InlineData("png-fake-end")]
    [InlineData("jpeg-fake-end")]
    [InlineData("png")]
    [InlineData("jpeg")]
    [InlineData("gif")]
    [InlineData("webp")]
    public void TruncatedImagesAreRefusedWhateverEndMarkerFollows(string kind)
    {
        // Given a real image cut short, for two of them with a fake end marker appended (IEND chunk, FFD9), which the old check took as whole
        using var bitmap = HostileImages.Enlarged(Sample("Coat/train-00019.png"), 112);
        var truncated = kind switch
        {
            "png-fake-end" => HostileImages.TruncatedPngWithEnd(HostileImages.Encode(bitmap, SKEncodedImageFormat.Png)),
            "jpeg-fake-end" => HostileImages.TruncatedJpegWithEnd(HostileImages.Encode(bitmap, SKEncodedImageFormat.Jpeg)),
            "png" => HostileImages.Truncated(HostileImages.Encode(bitmap, SKEncodedImageFormat.Png), 0.6),
            "jpeg" => HostileImages.Truncated(HostileImages.Encode(bitmap, SKEncodedImageFormat.Jpeg), 0.6),
            "gif" => HostileImages.Truncated(HostileImages.Gif(bitmap), 0.6),
            _ => HostileImages.Truncated(HostileImages.Encode(bitmap, SKEncodedImageFormat.Webp), 0.6),
        };

        // When it is decoded
        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(truncated, "cut"));

        // Then it is refused as truncated, naming the source
        Assert.Equal(ImageProblem.Truncated, error.Problem);
        Assert.StartsWith("cut: truncated ", error.Message);
    }

    [Fact]
    public void WholeGifDecodesToItsGrayLevels()
    {
        using var bitmap = HostileImages.Enlarged(Sample("Coat/train-00019.png"), 64);

        using var decoded = ImageDecoder.Decode(HostileImages.Gif(bitmap), "coat.gif");

        Assert.Equal((64, 64), (decoded.Width, decoded.Height));
        var expected = bitmap.GetPixel(30, 30);
        Assert.Equal((expected.Red + expected.Green + expected.Blue) / 3, Rgba(decoded, 30, 30)[0]);
    }

    [Fact]
    public void PngWithABadChecksumIsCorrupt()
    {
        // Given a PNG one of whose image data bytes is flipped
        var png = HostileImages.Encode(HostileImages.Enlarged(Sample("Coat/train-00019.png"), 64), SKEncodedImageFormat.Png);
        var idat = png.AsSpan().IndexOf("IDAT"u8);
        png[idat + 10] ^= 0x40;

        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(png, "flipped.png"));

        Assert.Equal(ImageProblem.Corrupt, error.Problem);
        Assert.Contains("CRC mismatch in chunk IDAT", error.Message);
    }

    [Fact]
    public void PngCutAtAChunkBoundaryWithAWholeIendIsRefused()
    {
        // Given a PNG whose image data spans several IDAT chunks, cut after the first and closed with a valid IEND chunk
        using var noise = new SKBitmap(new SKImageInfo(200, 200, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var random = new Random(3);
        for (var y = 0; y < 200; y++)
        {
            for (var x = 0; x < 200; x++)
            {
                noise.SetPixel(x, y, new SKColor((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256)));
            }
        }

        var png = HostileImages.Encode(noise, SKEncodedImageFormat.Png);
        var chunks = new List<(int At, string Type)>();
        for (var at = 8; at < png.Length; at += 12 + BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at)))
        {
            chunks.Add((at, System.Text.Encoding.ASCII.GetString(png, at + 4, 4)));
        }

        var secondImageChunk = chunks.Where(c => c.Type == "IDAT").Skip(1).First().At;
        byte[] cut = [.. png[..secondImageChunk], 0, 0, 0, 0, .. "IEND"u8, 0xAE, 0x42, 0x60, 0x82];

        // When it is decoded, then the decoder's own result refuses it (the chunk chain alone is whole)
        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(cut, "cut.png"));
        Assert.True(error.Problem is ImageProblem.Truncated or ImageProblem.Corrupt, error.Message);
    }

    [Theory]
    [InlineData("gif-frame-bomb", 16000)]
    [InlineData("gif-frame-bomb", 30000)]
    [InlineData("png-declared", 65535)]
    [InlineData("jpeg-declared", 65535)]
    [InlineData("bmp-declared", 100000)]
    [InlineData("webp-declared", 20000)]
    [InlineData("webp-frame-bomb", 16000)]
    public void BombsAreRefusedAsTooLargeBeforeDecoding(string kind, int side)
    {
        var bomb = kind switch
        {
            "gif-frame-bomb" => HostileImages.GifFrameBomb(side),
            "png-declared" => HostileImages.PngDeclaring(side, side),
            "jpeg-declared" => HostileImages.JpegDeclaring(EnlargedJpeg("Bag/train-00023.png"), (ushort)side, (ushort)side),
            "bmp-declared" => HostileImages.BmpDeclaring(side, side),
            "webp-declared" => HostileImages.WebPDeclaring(side, side),
            _ => HostileImages.WebPFrameBomb(side),
        };

        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(bomb, "bomb"));

        Assert.Equal(ImageProblem.TooLarge, error.Problem);
        Assert.Contains("more than the limit of 40000000 pixels", error.Message);
    }

    [Fact]
    public void PixelLimitIsConfigurable()
    {
        var jpeg = EnlargedJpeg("Bag/train-00023.png", side: 100);

        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(jpeg, "photo.jpg", new ImageLimits(MaxPixels: 9_999)));
        using var fits = ImageDecoder.Decode(jpeg, "photo.jpg", new ImageLimits(MaxPixels: 10_000));

        Assert.Equal("photo.jpg: JPEG would decode to 100x100 = 10000 pixels, more than the limit of 9999 pixels", error.Message);
        Assert.Equal(100, fits.Width);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void ExifOrientedJpegsAreDecodedUpright(int orientation)
    {
        // Given the upright picture (red band on top, blue square top-left) stored as a camera does with EXIF orientation n
        using var upright = HostileImages.UprightPattern(Sample("Ankle-boot/train-00000.png"));
        using var stored = HostileImages.Stored(upright, orientation);
        var jpeg = HostileImages.WithExifOrientation(HostileImages.Encode(stored, SKEncodedImageFormat.Jpeg, 95), orientation);

        // When it is decoded
        using var decoded = ImageDecoder.Decode(jpeg, "photo.jpg");

        // Then it comes out upright: the stored image was turned or mirrored, the decoded one never is
        Assert.Equal((HostileImages.UprightWidth, HostileImages.UprightHeight), (decoded.Width, decoded.Height));
        AssertUpright(decoded);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(8)]
    public void ExifOrientedWebPsAreTurnedUprightInPlace(int orientation)
    {
        // Given the picture stored with EXIF orientation n in a WebP, whose codec decodes whole images only
        using var upright = HostileImages.UprightPattern(Sample("Ankle-boot/train-00000.png"));
        using var stored = HostileImages.Stored(upright, orientation);
        var webp = HostileImages.WebPWithExifOrientation(HostileImages.Encode(stored, SKEncodedImageFormat.Webp, 95), orientation, stored.Width, stored.Height);

        // When it is decoded (into one buffer, then rearranged in place)
        using var decoded = ImageDecoder.Decode(webp, "photo.webp");

        // Then it comes out upright
        Assert.Equal((HostileImages.UprightWidth, HostileImages.UprightHeight), (decoded.Width, decoded.Height));
        AssertUpright(decoded);
    }

    [Fact]
    public void LimitsAreValidated()
    {
        new ImageLimits().Validate();
        Assert.Contains("MaxPixels 0", Assert.Throws<UserInputException>(() => new ImageLimits(MaxPixels: 0).Validate()).Message);
        Assert.Contains("MaxPixels", Assert.Throws<UserInputException>(() => new ImageLimits(MaxPixels: int.MaxValue).Validate()).Message);
        Assert.Contains("MaxEncodedBytes -1", Assert.Throws<UserInputException>(() => new ImageLimits(MaxEncodedBytes: -1).Validate()).Message);
    }

    [Fact]
    public void RefusalsAreInvalidImageExceptionsWithSourceProblemAndOneLine()
    {
        var error = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode([], "request body"));

        Assert.Equal(ImageProblem.Empty, error.Problem);
        Assert.Equal("request body", error.Source);
        Assert.Equal("request body: empty (0 bytes)", error.Message);
        Assert.Equal("empty (0 bytes)", error.Detail);
        Assert.IsAssignableFrom<IOException>(error);
    }

    /// <summary>Red band along the top edge, blue square in the top-left corner, dark elsewhere on the left (JPEG tolerance).</summary>
    private static void AssertUpright(MLImage image)
    {
        var width = image.Width;
        var topMiddle = Rgba(image, width / 2, 2);
        var topLeft = Rgba(image, 4, 4);
        var topRight = Rgba(image, width - 4, 2);
        var bottomLeft = Rgba(image, 4, image.Height - 4);
        Assert.True(topMiddle[0] > 150 && topMiddle[1] < 90 && topMiddle[2] < 90, $"top middle should be red: {string.Join(",", topMiddle)}");
        Assert.True(topRight[0] > 150 && topRight[2] < 90, $"top right should be red: {string.Join(",", topRight)}");
        Assert.True(topLeft[2] > 150 && topLeft[0] < 90, $"top left should be blue: {string.Join(",", topLeft)}");
        Assert.True(bottomLeft[0] < 90 && bottomLeft[2] < 90, $"bottom left should be dark: {string.Join(",", bottomLeft)}");
    }

    /// <summary>(R, G, B, A) of the pixel at (x, y), whatever the byte order.</summary>
    private static int[] Rgba(MLImage image, int x, int y)
    {
        var p = image.Pixels.Slice(((y * image.Width) + x) * 4, 4);
        return image.PixelFormat == MLPixelFormat.Bgra32 ? [p[2], p[1], p[0], p[3]] : [p[0], p[1], p[2], p[3]];
    }

    private static SKBitmap Tinted(SKBitmap gray)
    {
        for (var y = 0; y < gray.Height; y++)
        {
            for (var x = 0; x < gray.Width; x++)
            {
                var c = gray.GetPixel(x, y);
                gray.SetPixel(x, y, new SKColor(c.Red, (byte)(c.Green / 2), (byte)(255 - c.Blue)));
            }
        }

        return gray;
    }

    /// <summary>
    /// A 64x64 RGBA PNG, (200, 30, 90) everywhere: alpha 0 on the left half, 128 top right, 255 bottom right. Written
    /// here rather than by SkiaSharp, whose encoder stores black under fully transparent pixels.
    /// </summary>
    private static byte[] TransparentPng()
    {
        var raw = new byte[64 * (1 + (64 * 4))];
        for (var y = 0; y < 64; y++)
        {
            for (var x = 0; x < 64; x++)
            {
                byte[] pixel = [200, 30, 90, x < 32 ? (byte)0 : y < 32 ? (byte)128 : (byte)255];
                pixel.CopyTo(raw, (y * (1 + (64 * 4))) + 1 + (x * 4));
            }
        }

        using var compressed = new MemoryStream();
        using (var zlib = new System.IO.Compression.ZLibStream(compressed, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(raw);
        }

        byte[] header = [0, 0, 0, 64, 0, 0, 0, 64, 8, 6, 0, 0, 0];
        return [0x89, .. "PNG\r\n\x1A\n"u8, .. PngChunk("IHDR", header), .. PngChunk("IDAT", compressed.ToArray()), .. PngChunk("IEND", [])];
    }

    private static byte[] PngChunk(string type, byte[] data)
    {
        byte[] typeAndData = [.. System.Text.Encoding.ASCII.GetBytes(type), .. data];
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(chunk, data.Length);
        typeAndData.CopyTo(chunk, 4);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), PngStructure.Crc(typeAndData));
        return chunk;
    }

    /// <summary>The planar RGB floats the model's resize and pixel extraction make of <paramref name="image"/> at 64 px.</summary>
    private static float[] ModelPixels(MLContext ml, MLImage image)
    {
        using (image)
        {
            var data = ml.Data.LoadFromEnumerable(new[] { new ImageInput { Image = image } });
            var pixels = ImageClassificationChain.ImageToPixels(ml, 64).Fit(data).Transform(data);
            return ml.Data.CreateEnumerable<PixelRow>(pixels, reuseRowObject: false).Single().Pixels;
        }
    }

    private static float[] RgbAt(float[] planar, int x, int y) => [planar[(y * 64) + x], planar[4096 + (y * 64) + x], planar[8192 + (y * 64) + x]];

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
