using System.Globalization;

namespace MlNetFinetune.Images;

/// <summary>How large an image may be; larger ones are refused before any pixel memory is allocated.</summary>
/// <param name="MaxPixels">
/// Largest width x height of the canvas or frame the decoder would allocate (for a GIF or an animated WebP, the largest
/// extent of any frame). Decoded pixels take 4 bytes each, so the default 40,000,000 is about 160 MB: above any camera
/// photo worth classifying at a few hundred pixels.
/// </param>
/// <param name="MaxEncodedBytes">Largest image file read, checked before reading it. Default 64 MiB.</param>
public sealed record ImageLimits(long MaxPixels = ImageLimits.DefaultMaxPixels, long MaxEncodedBytes = ImageLimits.DefaultMaxEncodedBytes)
{
    /// <summary>The default of <see cref="MaxPixels"/>: 40 megapixels.</summary>
    public const long DefaultMaxPixels = 40_000_000;

    /// <summary>The default of <see cref="MaxEncodedBytes"/>: 64 MiB.</summary>
    public const long DefaultMaxEncodedBytes = 64L * 1024 * 1024;

    /// <summary>
    /// The largest <see cref="MaxPixels"/> that can be honoured: a decoded image is one buffer of 4 bytes per pixel,
    /// which ML.NET hands out as a span (at most 2^31-1 bytes).
    /// </summary>
    public const long LargestMaxPixels = int.MaxValue / 4;

    /// <summary>The defaults.</summary>
    public static ImageLimits Default { get; } = new();

    /// <summary>Throws <see cref="UserInputException"/> naming the limit when it is impossible.</summary>
    public void Validate()
    {
        if (MaxPixels is < 1 or > LargestMaxPixels)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"{nameof(MaxPixels)} {MaxPixels}: must be between 1 and {LargestMaxPixels} (4 bytes per pixel in one buffer)"));
        }

        if (MaxEncodedBytes < 1 || MaxEncodedBytes > Array.MaxLength)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"{nameof(MaxEncodedBytes)} {MaxEncodedBytes}: must be between 1 and {Array.MaxLength} (a file is read into one array)"));
        }
    }
}
