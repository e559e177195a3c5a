using System.Diagnostics;
using Microsoft.ML;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Explanations;

/// <summary>A training image whose label the model, trained without it, finds unlikely.</summary>
/// <param name="Path">The image.</param>
/// <param name="GivenLabel">Its label (its class folder).</param>
/// <param name="PredictedLabel">The class the out-of-fold model gives it.</param>
/// <param name="GivenLabelProbability">Out-of-fold probability of the given label: the lower, the more suspect.</param>
/// <param name="PredictedProbability">Out-of-fold probability of the predicted class.</param>
public sealed record SuspectedLabelError(string Path, string GivenLabel, string PredictedLabel, float GivenLabelProbability, float PredictedProbability);

/// <summary>What the label-error search did and found.</summary>
/// <param name="Images">Training and validation images searched.</param>
/// <param name="Folds">Folds: each image was scored by a head trained on the other folds.</param>
/// <param name="L2Regularization">L2 strength of the fold heads (the chosen head's).</param>
/// <param name="Iterations">L-BFGS iterations of each fold head (the chosen head's epochs).</param>
/// <param name="Suspects">Every image whose out-of-fold prediction is not its label, least likely label first.</param>
/// <param name="Seconds">Wall time of the search.</param>
public sealed record LabelErrorSearchResult(int Images, int Folds, float L2Regularization, int Iterations, IReadOnlyList<SuspectedLabelError> Suspects, double Seconds)
{
    /// <summary>File the full list is written to, next to report.json.</summary>
    public const string FileName = "suspected-label-errors.csv";
}

/// <summary>
/// Finds training images whose label looks wrong, by out-of-fold probabilities (the idea behind confident learning):
/// the images are split into stratified folds; each fold is scored by a head trained on the others, so no image's
/// own label is in the model that judges it; images are ranked by the probability of their given label. Only the head
/// is trained, on the cached features, so the search costs a few head fits and no backbone work.
/// </summary>
internal static class LabelErrorSearch
{
    public static LabelErrorSearchResult Run(
        MLContext ml,
        ITransformer labelToKey,
        IReadOnlyList<string> classNames,
        IReadOnlyList<FeaturizedImage> images,
        int featureSize,
        float l2,
        int iterations,
        int folds,
        int seed,
        CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        var foldOf = Folds(images, folds, seed);
        var rows = images.Select(i => new FeatureRow { Label = i.Image.Label, Features = i.Features! }).ToList();
        var probabilities = new float[images.Count][];
        for (var fold = 0; fold < folds; fold++)
        {
            cancellation.ThrowIfCancellationRequested();
            var train = rows.Where((_, i) => foldOf[i] != fold).ToList();
            var scoredIndices = Enumerable.Range(0, images.Count).Where(i => foldOf[i] == fold).ToList();
            if (scoredIndices.Count == 0)
            {
                continue;
            }

            var head = ImageClassificationChain.Head(ml, l2, iterations).Fit(labelToKey.Transform(FeatureRow.ToDataView(ml, train, featureSize)));
            var scores = HeadTrainer.PredictScores(ml, labelToKey, head, [.. scoredIndices.Select(i => rows[i])], featureSize);
            for (var j = 0; j < scoredIndices.Count; j++)
            {
                probabilities[scoredIndices[j]] = scores[j];
            }
        }

        var index = classNames.Select((name, i) => (name, i)).ToDictionary(p => p.name, p => p.i, StringComparer.Ordinal);
        var suspects = new List<SuspectedLabelError>();
        for (var i = 0; i < images.Count; i++)
        {
            var p = probabilities[i];
            var predicted = Array.IndexOf(p, p.Max());
            var given = index[images[i].Image.Label];
            if (predicted != given)
            {
                suspects.Add(new SuspectedLabelError(images[i].Image.Path, images[i].Image.Label, classNames[predicted], p[given], p[predicted]));
            }
        }

        return new LabelErrorSearchResult(images.Count, folds, l2, iterations,
            [.. suspects.OrderBy(s => s.GivenLabelProbability).ThenBy(s => s.Path, StringComparer.Ordinal)], clock.Elapsed.TotalSeconds);
    }

    /// <summary>Stratified fold of each image: each class's images are shuffled (seeded) and dealt to the folds in turn.</summary>
    internal static int[] Folds(IReadOnlyList<FeaturizedImage> images, int folds, int seed)
    {
        var random = new Random(seed);
        var foldOf = new int[images.Count];
        foreach (var group in Enumerable.Range(0, images.Count).GroupBy(i => images[i].Image.Label, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var members = group.ToArray();
            random.Shuffle(members);
            for (var j = 0; j < members.Length; j++)
            {
                foldOf[members[j]] = j % folds;
            }
        }

        return foldOf;
    }
}
