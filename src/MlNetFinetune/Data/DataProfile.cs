using System.Globalization;
using Microsoft.ML.Data;
using MlNetFinetune.Images;

namespace MlNetFinetune.Data;

/// <summary>What the defaults are chosen from: how large the source images are, whether they have colour, how many there are.</summary>
/// <param name="MedianSide">Median of the shorter side of the sampled images, in pixels.</param>
/// <param name="Grayscale">True when every sampled image has equal red, green and blue.</param>
/// <param name="ImagesPerClass">Mean number of images per class.</param>
/// <param name="Sampled">Images decoded to measure this.</param>
public sealed record DataProfile(int MedianSide, bool Grayscale, double ImagesPerClass, int Sampled)
{
    /// <summary>Images decoded at most: enough for a median, few enough to take a second.</summary>
    public const int SampleSize = 64;

    /// <summary>Decodes up to <see cref="SampleSize"/> images spread evenly over <paramref name="folder"/>; unreadable ones are passed over.</summary>
    public static DataProfile Measure(ImageFolder folder) => Measure(folder.Images, folder.Images.Count, folder.Classes.Count);

    /// <summary>
    /// Decodes up to <see cref="SampleSize"/> images spread evenly over <paramref name="sample"/> (files, or bytes held in
    /// <see cref="ImageRecord.Content"/>), which stands for <paramref name="imageCount"/> images in
    /// <paramref name="classCount"/> classes; unreadable ones are passed over.
    /// </summary>
    internal static DataProfile Measure(IReadOnlyList<ImageRecord> sample, int imageCount, int classCount)
    {
        var step = Math.Max(1, sample.Count / SampleSize);
        var sides = new List<int>();
        var grayscale = true;
        for (var i = 0; i < sample.Count && sides.Count < SampleSize; i += step)
        {
            try
            {
                using var image = sample[i].Content is { } content
                    ? ImageDecoder.Decode(content.ToArray(), sample[i].Path)
                    : ImageDecoder.DecodeFile(sample[i].Path);
                sides.Add(Math.Min(image.Width, image.Height));
                grayscale &= IsGrayscale(image);
            }
            catch (InvalidImageException)
            {
                // An unreadable image says nothing about the others; the featurizer reports it.
            }
        }

        sides.Sort();
        return new DataProfile(
            sides.Count == 0 ? 0 : sides[sides.Count / 2],
            grayscale && sides.Count > 0,
            (double)imageCount / classCount,
            sides.Count);
    }

    /// <summary>The profile as the Trainer's <c>Data:</c> line prints it.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"median side {MedianSide} px, {(Grayscale ? "grayscale" : "colour")}, {ImagesPerClass:F0} images per class ({Sampled} sampled)");

    private static bool IsGrayscale(MLImage image)
    {
        var pixels = image.Pixels;
        var (r, g, b) = image.PixelFormat == MLPixelFormat.Rgba32 ? (0, 1, 2) : (2, 1, 0);
        for (var p = 0; p + 3 < pixels.Length; p += 4)
        {
            if (pixels[p + r] != pixels[p + g] || pixels[p + g] != pixels[p + b])
            {
                return false;
            }
        }

        return true;
    }
}
