using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.Data;
using SkiaSharp;

namespace MlNetFinetune.Images;

/// <summary>
/// The "load image" step of the Trainer, the Predictor and the server: encoded bytes (PNG, JPEG, GIF, BMP, WebP) to an
/// upright, opaque ML.NET image. In order: the size the decoder would allocate is read from the header and checked
/// against <see cref="ImageLimits"/>; a PNG's chunk chain and a JPEG's entropy-coded data are walked to prove the file
/// is whole (an appended end marker does not fool either); SkiaSharp's codec decodes into one buffer, its result code
/// revealing truncation of the other formats; the EXIF orientation is applied; transparency is resolved by an
/// <see cref="AlphaPolicy"/>. Every refusal is an <see cref="InvalidImageException"/> naming the source and the problem.
/// For opaque images in the stored orientation, the pixels are byte-identical to <c>MLImage.CreateFromStream</c>'s.
/// </summary>
public static class ImageDecoder
{
    /// <summary>
    /// The alpha policy used unless another is given: what <c>MLImage.CreateFromStream</c> gave (transparent pixels on
    /// black), and so what every model whose manifest names no policy was trained with. New models are trained with
    /// <see cref="Training.FeaturizationOptions.DefaultAlpha"/>.
    /// </summary>
    public const AlphaPolicy DefaultAlpha = AlphaPolicy.CompositeOnBlack;

    /// <summary>
    /// Decodes <paramref name="encoded"/>. Throws <see cref="InvalidImageException"/> naming <paramref name="source"/>
    /// when it is empty, of an unknown format, malformed, truncated, larger than <paramref name="limits"/> allow, or
    /// corrupt. Peak memory is the encoded bytes plus 4 bytes per decoded pixel; a progressive JPEG needs more, as
    /// libjpeg holds all its DCT coefficients while decoding (2 bytes each: 6 bytes per pixel at 4:4:4, 3 at 4:2:0) and
    /// the structure check one 8-byte word per 8x8 block.
    /// </summary>
    /// <param name="encoded">The encoded image.</param>
    /// <param name="source">A file path, or a description such as "request body", for messages.</param>
    /// <param name="limits">Size limits; <see cref="ImageLimits.Default"/> when null.</param>
    /// <param name="alpha">What transparent pixels become.</param>
    public static MLImage Decode(byte[] encoded, string source, ImageLimits? limits = null, AlphaPolicy alpha = DefaultAlpha)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        limits ??= ImageLimits.Default;
        var header = ImageHeader.Read(encoded, source);
        header.EnsureWithin(limits, source);
        if (header.Format == ImageFormat.Png)
        {
            PngStructure.EnsureComplete(encoded, source);
        }
        else if (header.Format == ImageFormat.Jpeg)
        {
            JpegStructure.EnsureComplete(encoded, source);
        }

        // SkiaSharp reads the caller's array in place (pinned) rather than a copy.
        var pinned = GCHandle.Alloc(encoded, GCHandleType.Pinned);
        try
        {
            using var data = SKData.Create(pinned.AddrOfPinnedObject(), encoded.Length);
            using var codec = SKCodec.Create(new SKMemoryStream(data), out var created)
                ?? throw Failed(source, header.Format, created);
            return NewMLImage(DecodePixels(codec, header.Format, limits, alpha, source));
        }
        finally
        {
            pinned.Free();
        }
    }

    /// <summary>
    /// Reads and decodes an image file. Besides what <see cref="Decode"/> refuses, throws
    /// <see cref="InvalidImageException"/> with <see cref="ImageProblem.Unreadable"/> for a missing file, a dangling
    /// or looping link, a folder, a FIFO, socket or device (found before opening, so never blocking), a permission or
    /// I/O error, and <see cref="ImageProblem.TooLarge"/> for a file larger than <see cref="ImageLimits.MaxEncodedBytes"/>
    /// (found before reading).
    /// </summary>
    public static MLImage DecodeFile(string path, ImageLimits? limits = null, AlphaPolicy alpha = DefaultAlpha)
    {
        limits ??= ImageLimits.Default;
        return Decode(ReadFile(path, limits), path, limits, alpha);
    }

    /// <summary>
    /// Reads an image file's bytes with the checks of <see cref="DecodeFile"/> (regular file, size limit, read errors as
    /// <see cref="InvalidImageException"/>), for callers that need the bytes themselves, e.g. to hash them before decoding.
    /// </summary>
    public static byte[] ReadFile(string path, ImageLimits? limits = null) => ImageFileReader.Read(path, limits ?? ImageLimits.Default);

    private static SKBitmap DecodePixels(SKCodec codec, ImageFormat format, ImageLimits limits, AlphaPolicy alpha, string source)
    {
        // The header check covers every format; this one covers the codec's own idea of the canvas, should it differ.
        int width = codec.Info.Width, height = codec.Info.Height;
        if ((long)width * height > limits.MaxPixels)
        {
            throw new InvalidImageException(source, ImageProblem.TooLarge, string.Create(CultureInfo.InvariantCulture,
                $"{ImageHeader.NameOf(format)} would decode to {width}x{height} = {(long)width * height} pixels, more than the limit of {limits.MaxPixels} pixels"));
        }

        // No colour space, premultiplied alpha and the platform's 32-bit order: exactly what SKBitmap.Decode (behind
        // MLImage.CreateFromStream) asks the codec for, so opaque images come out byte for byte as before.
        var opaque = codec.Info.AlphaType == SKAlphaType.Opaque;
        var alphaType = opaque ? SKAlphaType.Opaque : alpha == AlphaPolicy.KeepColor ? SKAlphaType.Unpremul : SKAlphaType.Premul;
        var stored = new SKImageInfo(width, height, SKImageInfo.PlatformColorType, alphaType);
        var origin = codec.EncodedOrigin;
        var bitmap = new SKBitmap();
        if (!bitmap.TryAllocPixels(ImageOrientation.SwapsAxes(origin) ? stored.WithSize(height, width) : stored))
        {
            bitmap.Dispose();
            throw new InvalidImageException(source, ImageProblem.TooLarge, string.Create(CultureInfo.InvariantCulture,
                $"{ImageHeader.NameOf(format)} of {width}x{height} pixels does not fit in memory"));
        }

        try
        {
            var result = origin == SKEncodedOrigin.TopLeft
                ? codec.GetPixels(stored, bitmap.GetPixels())
                : DecodeUpright(codec, stored, bitmap, origin);
            if (result != SKCodecResult.Success)
            {
                throw Failed(source, format, result);
            }

            if (!opaque)
            {
                MakeOpaque(Pixels(bitmap), alpha);
            }

            return bitmap;
        }
        catch
        {
            bitmap.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Decodes an image stored in another orientation straight into the upright bitmap: row by row where the codec
    /// can (JPEG, where EXIF orientation lives), otherwise whole and then rearranged in place.
    /// </summary>
    private static SKCodecResult DecodeUpright(SKCodec codec, SKImageInfo stored, SKBitmap bitmap, SKEncodedOrigin origin)
    {
        var pixels = MemoryMarshal.Cast<byte, uint>(Pixels(bitmap));
        if (codec.StartScanlineDecode(stored) == SKCodecResult.Success && codec.ScanlineOrder == SKCodecScanlineOrder.TopDown)
        {
            var row = new uint[stored.Width];
            var rowHandle = GCHandle.Alloc(row, GCHandleType.Pinned);
            try
            {
                for (var y = 0; y < stored.Height; y++)
                {
                    if (codec.GetScanlines(rowHandle.AddrOfPinnedObject(), 1, stored.RowBytes) != 1)
                    {
                        return SKCodecResult.IncompleteInput;
                    }

                    var (start, step) = ImageOrientation.Placement(origin, y, stored.Width, stored.Height);
                    for (var x = 0; x < row.Length; x++)
                    {
                        pixels[start + (x * step)] = row[x];
                    }
                }
            }
            finally
            {
                rowHandle.Free();
            }

            return SKCodecResult.Success;
        }

        var result = codec.GetPixels(stored, bitmap.GetPixels(), stored.RowBytes, SKCodecOptions.Default);
        if (result == SKCodecResult.Success)
        {
            ImageOrientation.ApplyInPlace(pixels, origin, stored.Width, stored.Height);
        }

        return result;
    }

    /// <summary>Resolves transparency by <paramref name="alpha"/> and sets every alpha to 255 (byte 3 in both BGRA and RGBA).</summary>
    private static void MakeOpaque(Span<byte> pixels, AlphaPolicy alpha)
    {
        for (var p = 0; p + 3 < pixels.Length; p += 4)
        {
            if (alpha == AlphaPolicy.CompositeOnWhite)
            {
                // Premultiplied colour + white x (1 - alpha).
                var background = (byte)(255 - pixels[p + 3]);
                pixels[p] += background;
                pixels[p + 1] += background;
                pixels[p + 2] += background;
            }

            pixels[p + 3] = 255;
        }
    }

    /// <summary>The bitmap's pixel memory, writable (SkiaSharp 2.88 only hands out a read-only span).</summary>
    private static Span<byte> Pixels(SKBitmap bitmap)
    {
        var pixels = bitmap.GetPixelSpan();
        return MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(pixels), pixels.Length);
    }

    private static InvalidImageException Failed(string source, ImageFormat format, SKCodecResult result) => result switch
    {
        SKCodecResult.IncompleteInput => new InvalidImageException(source, ImageProblem.Truncated,
            $"truncated {ImageHeader.NameOf(format)} (the decoder ran out of data before the image was complete)"),
        SKCodecResult.ErrorInInput or SKCodecResult.InvalidInput => new InvalidImageException(source, ImageProblem.Corrupt,
            $"corrupt {ImageHeader.NameOf(format)} (the decoder found an error in the image data)"),
        _ => new InvalidImageException(source, ImageProblem.Corrupt, $"{ImageHeader.NameOf(format)} the decoder cannot read ({result})"),
    };

    /// <summary>
    /// Wraps the decoded bitmap without copying it. MLImage's public factories either decode themselves
    /// (<c>CreateFromStream</c>, with none of the checks above) or copy the pixels (<c>CreateFromPixels</c>, twice the
    /// memory at the peak); its private constructor adopts a bitmap, which is what this calls. ML.NET is pinned at 5.0.1,
    /// and every decoder test goes through here, so a change of that constructor fails the tests, not a user.
    /// </summary>
    [UnsafeAccessor(UnsafeAccessorKind.Constructor)]
    private static extern MLImage NewMLImage(SKBitmap image);
}
