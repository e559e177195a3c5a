using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>Image files to the pixel tensors <see cref="FineTuner"/> takes, through the same ML.NET resize and pixel extraction as the saved chain.</summary>
public static class LabelledImages
{
    /// <summary>
    /// Decodes, resizes and extracts each file lazily, in order, on <paramref name="workers"/> threads (0: the number of
    /// cores), keeping at most a few batches of pixels in memory. A file that <see cref="ImageDecoder"/> refuses is
    /// left out (the featurization that follows fine-tuning reports it with its reason). Transparent pixels become
    /// what <paramref name="alpha"/> says, as in the featurization, so the network trains on the pixels it will see.
    /// </summary>
    public static IEnumerable<LabelledPixels> FromFiles(MLContext ml, IReadOnlyList<(string Path, int Label)> files, int imageSize, int workers = 0,
        ImageLimits? limits = null, AlphaPolicy alpha = ImageDecoder.DefaultAlpha)
    {
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        var transformer = ImageClassificationChain.ImageToPixels(ml, imageSize).Fit(empty);
        var threads = workers > 0 ? workers : Environment.ProcessorCount;
        var engines = new ThreadLocal<PredictionEngine<ImageInput, PixelRow>>(
            () => ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(transformer), trackAllValues: true);
        try
        {
            const int Block = 64;
            for (var start = 0; start < files.Count; start += Block)
            {
                var block = new LabelledPixels[Math.Min(Block, files.Count - start)];
                Parallel.For(0, block.Length, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
                {
                    var (path, label) = files[start + i];
                    try
                    {
                        using var image = ImageDecoder.DecodeFile(path, limits, alpha);
                        block[i] = new LabelledPixels(engines.Value!.Predict(new ImageInput { Image = image }).Pixels, label);
                    }
                    catch (InvalidImageException)
                    {
                        block[i] = default;
                    }
                });
                foreach (var item in block.Where(b => b.Pixels is not null))
                {
                    yield return item;
                }
            }
        }
        finally
        {
            foreach (var engine in engines.Values)
            {
                engine.Dispose();
            }

            engines.Dispose();
        }
    }

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
