using Microsoft.ML.Data;

namespace MlNetFinetune.Images;

/// <summary>The "load image" step: encoded bytes (PNG, JPEG, BMP, GIF, WebP) to an ML.NET image.</summary>
public static class ImageDecoder
{
    /// <summary>Decodes <paramref name="encoded"/>; throws <see cref="InvalidDataException"/> naming <paramref name="source"/> when it is not a decodable image.</summary>
    public static MLImage Decode(byte[] encoded, string source)
    {
        if (encoded.Length == 0)
        {
            throw new InvalidDataException($"{source}: empty file (0 bytes)");
        }

        // SkiaSharp decodes a cut-off PNG or JPEG without complaint, filling the missing rows; such an image would
        // train and predict as if it were whole, so a file without its end marker is refused as truncated.
        if (IsTruncated(encoded))
        {
            throw new InvalidDataException($"{source}: truncated image (the file ends before the image's end marker)");
        }

        try
        {
            using var stream = new MemoryStream(encoded, writable: false);
            return MLImage.CreateFromStream(stream);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NullReferenceException or IOException)
        {
            throw new InvalidDataException($"{source}: not a decodable image ({e.Message.Split('\n')[0].Trim()})", e);
        }
    }

    private static bool IsTruncated(ReadOnlySpan<byte> encoded) => ImageHeader.DetectFormat(encoded) switch
    {
        ImageFormat.Png => encoded.LastIndexOf("IEND"u8) is var end && (end < 0 || end < encoded.Length - 64),
        ImageFormat.Jpeg => encoded.TrimEnd((byte)0) is var trimmed && !trimmed.EndsWith((ReadOnlySpan<byte>)[0xFF, 0xD9]),
        _ => false,
    };
}
