using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>The images activation ranges are calibrated on: a few of the user's own training images, as the featurizer sees them.</summary>
public static class CalibrationSample
{
    /// <summary>
    /// About <paramref name="count"/> of <paramref name="training"/>, the same share of every class, taken at even
    /// strides over each class's images in path order: deterministic, and spread over the whole folder.
    /// </summary>
    public static IReadOnlyList<ImageRecord> Choose(IReadOnlyList<ImageRecord> training, int count)
    {
        var classes = training.GroupBy(i => i.Label).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
        var perClass = Math.Max(1, (int)Math.Ceiling((double)count / Math.Max(1, classes.Count)));
        var chosen = new List<ImageRecord>();
        foreach (var group in classes)
        {
            var members = group.OrderBy(i => i.Path, StringComparer.Ordinal).ToList();
            var take = Math.Min(perClass, members.Count);
            for (var i = 0; i < take; i++)
            {
                chosen.Add(members[(int)((long)i * members.Count / take)]);
            }
        }

        return chosen;
    }

    /// <summary>
    /// Reads, decodes, resizes and extracts the pixels of <paramref name="images"/> (files, or encoded bytes held in
    /// memory) with the featurizer's own decoder and transforms (<see cref="ImageClassificationChain.ImageToPixels(MLContext, int)"/>);
    /// images that are refused are left out, as featurization skips and reports them.
    /// </summary>
    public static IReadOnlyList<float[]> Pixels(MLContext ml, IEnumerable<ImageRecord> images, int imageSize, ImageLimits? limits = null, AlphaPolicy alpha = FeaturizationOptions.DefaultAlpha)
    {
        var toPixels = ImageClassificationChain.ImageToPixels(ml, imageSize).Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
        using var engine = ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(toPixels);
        var pixels = new List<float[]>();
        foreach (var record in images)
        {
            try
            {
                using var image = record.Content is { } content
                    ? ImageDecoder.Decode(content.ToArray(), record.Path, limits, alpha)
                    : ImageDecoder.DecodeFile(record.Path, limits, alpha);
                pixels.Add(engine.Predict(new ImageInput { Image = image }).Pixels);
            }
            catch (InvalidImageException)
            {
                // Calibration only needs the others; featurization reports the refused image.
            }
        }

        return pixels;
    }

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
