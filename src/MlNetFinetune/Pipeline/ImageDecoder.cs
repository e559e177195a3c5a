using Microsoft.ML.Data;

namespace MlNetFinetune.Pipeline;

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
}
