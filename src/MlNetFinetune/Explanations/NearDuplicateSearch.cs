using System.Diagnostics;
using System.Numerics.Tensors;
using MlNetFinetune.Training;

namespace MlNetFinetune.Explanations;

/// <summary>A held-out image and the training image most like it.</summary>
/// <param name="HeldOutPath">The held-out image.</param>
/// <param name="HeldOutLabel">Its class.</param>
/// <param name="TrainingPath">The training or validation image most like it.</param>
/// <param name="TrainingLabel">That image's class.</param>
/// <param name="Similarity">Cosine similarity of their standardised bottleneck features (1: the same features).</param>
public sealed record NearDuplicatePair(string HeldOutPath, string HeldOutLabel, string TrainingPath, string TrainingLabel, float Similarity);

/// <summary>What the near-duplicate search compared and found.</summary>
/// <param name="Threshold">Pairs at or above this similarity are near duplicates.</param>
/// <param name="HeldOutImages">Held-out images compared.</param>
/// <param name="TrainingImages">Training and validation images they were compared with.</param>
/// <param name="Pairs">Every held-out image with a near duplicate among the training images (byte-identical ones are
/// listed with the duplicates instead), most similar first.</param>
/// <param name="AccuracyWithout">Held-out accuracy over the images that have no near duplicate; null when none is left.</param>
/// <param name="Seconds">Wall time of the search.</param>
public sealed record NearDuplicateSearchResult(float Threshold, int HeldOutImages, int TrainingImages, IReadOnlyList<NearDuplicatePair> Pairs, double? AccuracyWithout, double Seconds);

/// <summary>
/// Finds held-out images that are near copies of training images (re-encoded, resized, retouched): they flatter the
/// held-out accuracy, which should measure images the model has not seen. Each feature is standardised with the
/// training images' mean and spread, and images are compared by cosine similarity. Centring matters because the
/// backbone's pooled activations are all positive, which makes any two raw feature vectors look alike; dividing by the
/// spread keeps a few high-variance channels from deciding alone (measured: it separates edited copies from distinct
/// images best, see the README).
/// </summary>
internal static class NearDuplicateSearch
{
    /// <summary>Held-out rows compared per pass over the training rows: 32 rows of 2048 floats stay in a core's L2 cache.</summary>
    private const int BlockRows = 32;

    public static NearDuplicateSearchResult Run(
        IReadOnlyList<FeaturizedImage> training, IReadOnlyList<FeaturizedImage> heldOut, IReadOnlyDictionary<string, bool> heldOutCorrect, float threshold, CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        var pairs = new List<NearDuplicatePair>();
        if (training.Count == 0 || heldOut.Count == 0)
        {
            return new NearDuplicateSearchResult(threshold, heldOut.Count, training.Count, pairs, null, clock.Elapsed.TotalSeconds);
        }

        var size = training[0].Features!.Length;
        var (mean, scale) = Standardisation(training, size);
        var trainingMatrix = Normalized(training, mean, scale);
        var heldOutMatrix = Normalized(heldOut, mean, scale);
        var best = new (float Similarity, int Index)[heldOut.Count];
        var blocks = (heldOut.Count + BlockRows - 1) / BlockRows;
        Parallel.For(0, blocks, new ParallelOptions { CancellationToken = cancellation }, block =>
        {
            // A block of held-out rows is compared with each training row while that row is in cache: the training
            // matrix is read once per block instead of once per held-out image.
            var first = block * BlockRows;
            var rows = Math.Min(BlockRows, heldOut.Count - first);
            var found = new (float Similarity, int Index)[rows];
            Array.Fill(found, (float.NegativeInfinity, -1));
            for (var t = 0; t < training.Count; t++)
            {
                var candidate = trainingMatrix.AsSpan(t * size, size);
                for (var r = 0; r < rows; r++)
                {
                    var dot = TensorPrimitives.Dot(heldOutMatrix.AsSpan((first + r) * size, size), candidate);
                    if (dot > found[r].Similarity && !SameBytes(heldOut[first + r], training[t]))
                    {
                        found[r] = (dot, t);
                    }
                }
            }

            found.CopyTo(best, first);
        });

        for (var h = 0; h < heldOut.Count; h++)
        {
            if (best[h].Index >= 0 && best[h].Similarity >= threshold)
            {
                var match = training[best[h].Index];
                pairs.Add(new NearDuplicatePair(heldOut[h].Image.Path, heldOut[h].Image.Label, match.Image.Path, match.Image.Label, best[h].Similarity));
            }
        }

        var duplicated = pairs.Select(p => p.HeldOutPath).ToHashSet(StringComparer.Ordinal);
        var rest = heldOut.Where(i => !duplicated.Contains(i.Image.Path) && heldOutCorrect.ContainsKey(i.Image.Path)).ToList();
        double? accuracy = rest.Count == 0 ? null : (double)rest.Count(i => heldOutCorrect[i.Image.Path]) / rest.Count;
        return new NearDuplicateSearchResult(threshold, heldOut.Count, training.Count,
            [.. pairs.OrderByDescending(p => p.Similarity).ThenBy(p => p.HeldOutPath, StringComparer.Ordinal)], accuracy, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Best matches of every held-out image regardless of threshold: what the threshold was chosen from.</summary>
    internal static float[] NearestSimilarities(IReadOnlyList<FeaturizedImage> training, IReadOnlyList<FeaturizedImage> heldOut) =>
        [.. Run(training, heldOut, new Dictionary<string, bool>(), float.NegativeInfinity).Pairs.Select(p => p.Similarity)];

    private static bool SameBytes(FeaturizedImage a, FeaturizedImage b) => a.Key is not null && string.Equals(a.Key, b.Key, StringComparison.Ordinal);

    /// <summary>Per-feature mean and 1/spread over the training images; a feature that never varies gets weight 0.</summary>
    private static (float[] Mean, float[] Scale) Standardisation(IReadOnlyList<FeaturizedImage> training, int size)
    {
        var mean = new double[size];
        var square = new double[size];
        foreach (var image in training)
        {
            var features = image.Features!;
            for (var d = 0; d < size; d++)
            {
                mean[d] += features[d];
                square[d] += (double)features[d] * features[d];
            }
        }

        var scale = new float[size];
        for (var d = 0; d < size; d++)
        {
            mean[d] /= training.Count;
            var spread = Math.Sqrt(Math.Max(0, (square[d] / training.Count) - (mean[d] * mean[d])));
            scale[d] = spread > 1e-6 ? (float)(1 / spread) : 0f;
        }

        return ([.. mean.Select(m => (float)m)], scale);
    }

    /// <summary>The images' standardised features scaled to unit length, one row each.</summary>
    private static float[] Normalized(IReadOnlyList<FeaturizedImage> images, float[] mean, float[] scale)
    {
        var size = mean.Length;
        var matrix = new float[images.Count * size];
        for (var i = 0; i < images.Count; i++)
        {
            var row = matrix.AsSpan(i * size, size);
            TensorPrimitives.Subtract(images[i].Features!, mean, row);
            TensorPrimitives.Multiply(row, scale, row);
            var norm = TensorPrimitives.Norm(row);
            if (norm > 0)
            {
                TensorPrimitives.Divide(row, norm, row);
            }
        }

        return matrix;
    }
}
