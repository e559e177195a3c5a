using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Training;

/// <summary>The fitted head and how it was chosen.</summary>
public sealed record TrainedHead(ITransformer Transformer, float L2Regularization, IReadOnlyList<HeadCandidate> Candidates);

/// <summary>
/// Fits the classifier head on cached bottleneck features. When the L2 strength is not given it is chosen on the
/// validation split (never the held-out set), then the head is refitted on train + validation.
/// </summary>
public static class HeadTrainer
{
    public const string SoftmaxHead = "softmax";

    public static TrainedHead Fit(
        MLContext ml,
        ITransformer labelToKey,
        IReadOnlyList<FeatureRow> train,
        IReadOnlyList<FeatureRow> validation,
        int featureSize,
        HeadOptions options)
    {
        var candidates = new List<HeadCandidate>();
        var l2 = options.L2Regularization ?? HeadOptions.L2Candidates[^1];
        if (options.L2Regularization is null && validation.Count > 0)
        {
            var trainView = labelToKey.Transform(FeatureRow.ToDataView(ml, train, featureSize));
            foreach (var candidate in HeadOptions.L2Candidates)
            {
                var head = ImageClassificationChain.Head(ml, candidate, options.MaximumIterations).Fit(trainView);
                var (accuracy, logLoss) = Score(ml, labelToKey, head, validation, featureSize);
                candidates.Add(new HeadCandidate(SoftmaxHead, candidate, accuracy, logLoss));
            }

            l2 = candidates.OrderByDescending(c => c.ValidationAccuracy).ThenBy(c => c.ValidationLogLoss).First().L2Regularization;
        }

        var all = FeatureRow.ToDataView(ml, train.Concat(validation), featureSize);
        var final = ImageClassificationChain.Head(ml, l2, options.MaximumIterations).Fit(labelToKey.Transform(all));
        return new TrainedHead(final, l2, candidates);
    }

    /// <summary>Scores of <paramref name="head"/> on labelled features, in key order.</summary>
    public static IReadOnlyList<float[]> PredictScores(MLContext ml, ITransformer labelToKey, ITransformer head, IReadOnlyList<FeatureRow> rows, int featureSize)
    {
        var scored = head.Transform(labelToKey.Transform(FeatureRow.ToDataView(ml, rows, featureSize)));
        return [.. ml.Data.CreateEnumerable<ScoreRow>(scored, reuseRowObject: false).Select(r => r.Score)];
    }

    private static (double Accuracy, double LogLoss) Score(MLContext ml, ITransformer labelToKey, ITransformer head, IReadOnlyList<FeatureRow> rows, int featureSize)
    {
        var metrics = ml.MulticlassClassification.Evaluate(
            head.Transform(labelToKey.Transform(FeatureRow.ToDataView(ml, rows, featureSize))),
            labelColumnName: ColumnNames.LabelKey);
        return (metrics.MicroAccuracy, metrics.LogLoss);
    }

    private sealed class ScoreRow
    {
        [ColumnName(ColumnNames.Score)]
        public float[] Score { get; set; } = [];
    }
}
