namespace MlNetFinetune.Explanations;

/// <summary>
/// Occlusion sensitivity (Zeiler and Fergus, 2014): hide one region of the image at a time and watch the class
/// probabilities fall. It needs nothing but forward passes, so it explains any backbone, frozen or fine-tuned, and
/// any head; every hidden variant of an image goes through the backbone in one batch.
/// </summary>
internal static class Occlusion
{
    /// <summary>
    /// The occlusion map of one image. <paramref name="pixels"/> are planar RGB in 0..255 at the backbone's input
    /// size; <paramref name="probabilities"/> runs a batch of such images (concatenated) through the model.
    /// </summary>
    public static OcclusionMap Explain(
        float[] pixels, int imageSize, IReadOnlyList<string> classes, OcclusionOptions options, Func<float[], int, float[][]> probabilities)
    {
        options.Validate();
        options.CheckFits(imageSize);
        var variants = Variants(pixels, imageSize, options);
        var scores = probabilities(variants, options.Variants);
        return Map(scores, classes, options);
    }

    /// <summary>The unhidden image followed by one copy per patch position (row-major), each with its patch filled.</summary>
    public static float[] Variants(float[] pixels, int imageSize, OcclusionOptions options)
    {
        var plane = imageSize * imageSize;
        var cell = imageSize / options.Grid;
        var patch = cell * options.PatchCells;
        var positions = options.Positions;
        var batch = new float[options.Variants * 3 * plane];
        pixels.CopyTo(batch, 0);
        var imageMean = options.Fill == OcclusionFill.ImageMean ? ChannelMeans(pixels, imageSize, 0, 0, imageSize) : null;
        for (var row = 0; row < positions; row++)
        {
            for (var column = 0; column < positions; column++)
            {
                var offset = (1 + (row * positions) + column) * 3 * plane;
                pixels.CopyTo(batch, offset);
                var (top, left) = (row * cell, column * cell);
                var fill = options.Fill switch
                {
                    OcclusionFill.Black => [0f, 0f, 0f],
                    OcclusionFill.Gray => [128f, 128f, 128f],
                    OcclusionFill.ImageMean => imageMean!,
                    _ => ChannelMeans(pixels, imageSize, top, left, patch),
                };
                for (var channel = 0; channel < 3; channel++)
                {
                    for (var y = top; y < top + patch; y++)
                    {
                        batch.AsSpan(offset + (channel * plane) + (y * imageSize) + left, patch).Fill(fill[channel]);
                    }
                }
            }
        }

        return batch;
    }

    /// <summary>Turns the probabilities of the variants into per-class cell heat: the mean drop over the patches hiding each cell.</summary>
    public static OcclusionMap Map(float[][] scores, IReadOnlyList<string> classes, OcclusionOptions options)
    {
        var (grid, patchCells, positions) = (options.Grid, options.PatchCells, options.Positions);
        var original = scores[0];
        var heat = new float[classes.Count][];
        for (var k = 0; k < classes.Count; k++)
        {
            heat[k] = new float[grid * grid];
            for (var row = 0; row < grid; row++)
            {
                for (var column = 0; column < grid; column++)
                {
                    double sum = 0;
                    var count = 0;
                    for (var pr = Math.Max(0, row - patchCells + 1); pr <= Math.Min(row, positions - 1); pr++)
                    {
                        for (var pc = Math.Max(0, column - patchCells + 1); pc <= Math.Min(column, positions - 1); pc++)
                        {
                            sum += original[k] - scores[1 + (pr * positions) + pc][k];
                            count++;
                        }
                    }

                    heat[k][(row * grid) + column] = (float)(sum / count);
                }
            }
        }

        return new OcclusionMap(options, classes, original, heat);
    }

    private static float[] ChannelMeans(float[] pixels, int imageSize, int top, int left, int side)
    {
        var plane = imageSize * imageSize;
        var means = new float[3];
        for (var channel = 0; channel < 3; channel++)
        {
            double sum = 0;
            for (var y = top; y < top + side; y++)
            {
                foreach (var value in pixels.AsSpan((channel * plane) + (y * imageSize) + left, side))
                {
                    sum += value;
                }
            }

            means[channel] = (float)(sum / (side * side));
        }

        return means;
    }
}
