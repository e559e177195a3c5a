using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;

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
    /// Decodes, resizes and extracts the pixels of <paramref name="paths"/> with the featurizer's own transforms
    /// (<see cref="ImageClassificationChain.ImageToPixels"/>); files that do not decode are left out.
    /// </summary>
    public static IReadOnlyList<float[]> Pixels(MLContext ml, IEnumerable<string> paths, int imageSize)
    {
        var toPixels = ImageClassificationChain.ImageToPixels(ml, imageSize).Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
        using var engine = ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(toPixels);
        var pixels = new List<float[]>();
        foreach (var path in paths)
        {
            try
            {
                using var image = ImageDecoder.Decode(File.ReadAllBytes(path), path);
                pixels.Add(engine.Predict(new ImageInput { Image = image }).Pixels);
            }
            catch (InvalidDataException)
            {
                // An undecodable file is skipped and reported by featurization; calibration only needs the others.
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
