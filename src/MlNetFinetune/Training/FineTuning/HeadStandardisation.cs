namespace MlNetFinetune.Training.FineTuning;

/// <summary>
/// The fixed standardisation of the head's input, (features - mean) * scale, measured once per run, and its removal
/// from the trained head so that the result reads the raw features the backbone graph outputs.
/// </summary>
internal static class HeadStandardisation
{
    /// <summary>Enough images for per-feature means and deviations; more would only lengthen the start of a run.</summary>
    public const int Images = 2048;

    private const int Batch = 256;

    /// <summary>
    /// Mean and 1/standard deviation of each head feature under the pretrained weights, over the first
    /// <see cref="Images"/> training images (as cached, not augmented): fixed for the whole run, so a
    /// resumed run computes the same.
    /// </summary>
    public static (float[] Mean, float[] Scale) Measure(TrainStepSession session, FeatureMapStore store)
    {
        var images = Math.Min(store.Count, Images);
        double[]? sum = null, squares = null;
        var batch = store.NewBatch(Batch);
        var labels = new long[Batch];
        for (var start = 0; start < images; start += Batch)
        {
            var count = Math.Min(Batch, images - start);
            for (var i = 0; i < count; i++)
            {
                store.CopyMap(start + i, 0, batch, i);
            }

            var features = session.Evaluate(batch, labels, count).Features;
            var size = features.Length / count;
            sum ??= new double[size];
            squares ??= new double[size];
            for (var i = 0; i < features.Length; i++)
            {
                sum[i % size] += features[i];
                squares[i % size] += (double)features[i] * features[i];
            }
        }

        var mean = sum!.Select(v => v / images).ToArray();
        var deviation = squares!.Select((v, i) => Math.Sqrt(Math.Max(0, (v / images) - (mean[i] * mean[i])))).ToArray();

        // A feature that never varies (a dead channel) gets the typical scale rather than an enormous one.
        var typical = deviation.Average();
        return ([.. mean.Select(m => (float)m)], [.. deviation.Select(d => (float)(1 / Math.Max(d, 0.01 * typical + 1e-12)))]);
    }

    /// <summary>The head on standardised features rewritten for the raw features: W = W' * scale, b = b' - Σ mean * scale * W'.</summary>
    public static FineTunedHead RawFeatureHead(string features, float[] weights, float[] bias, float[] mean, float[] scale, int classes)
    {
        var size = mean.Length;
        var raw = new float[weights.Length];
        var rawBias = bias.Select(b => (double)b).ToArray();
        for (var f = 0; f < size; f++)
        {
            for (var k = 0; k < classes; k++)
            {
                var w = (double)weights[(f * classes) + k] * scale[f];
                raw[(f * classes) + k] = (float)w;
                rawBias[k] -= mean[f] * w;
            }
        }

        return new FineTunedHead(features, size, classes, raw, [.. rawBias.Select(b => (float)b)]);
    }
}
