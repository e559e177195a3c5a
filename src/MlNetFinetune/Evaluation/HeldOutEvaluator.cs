using MlNetFinetune.Data;

namespace MlNetFinetune.Evaluation;

/// <summary>Metrics from held-out predictions: accuracy, log-loss, per-class precision/recall/F1, confusion matrix.</summary>
internal static class HeldOutEvaluator
{
    /// <summary>Probabilities are clipped here before the logarithm, as ML.NET's multiclass evaluator does.</summary>
    public const double LogLossEpsilon = 1e-15;

    public static EvaluationReport Evaluate(
        IReadOnlyList<string> classNames,
        IReadOnlyList<HeldOutPrediction> predictions,
        IReadOnlyList<SkippedFile> skipped,
        TrainingSummary training)
    {
        var index = classNames.Select((name, i) => (name, i)).ToDictionary(p => p.name, p => p.i, StringComparer.Ordinal);
        var k = classNames.Count;
        var matrix = Enumerable.Range(0, k).Select(_ => new int[k]).ToArray();
        double logLoss = 0;
        foreach (var prediction in predictions)
        {
            var truth = index[prediction.TrueLabel];
            matrix[truth][index[prediction.PredictedLabel]]++;
            logLoss -= Math.Log(Math.Max(prediction.Scores[truth], LogLossEpsilon));
        }

        var n = predictions.Count;
        var correct = Enumerable.Range(0, k).Sum(i => matrix[i][i]);
        var classes = new List<ClassMetrics>();
        for (var c = 0; c < k; c++)
        {
            var support = matrix[c].Sum();
            var predicted = matrix.Sum(row => row[c]);
            var precision = predicted == 0 ? 0 : (double)matrix[c][c] / predicted;
            var recall = support == 0 ? 0 : (double)matrix[c][c] / support;
            var f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            classes.Add(new ClassMetrics(classNames[c], precision, recall, f1, support));
        }

        var present = classes.Where(c => c.Support > 0).ToList();
        return new EvaluationReport(
            MicroAccuracy: n == 0 ? 0 : (double)correct / n,
            MacroAccuracy: present.Count == 0 ? 0 : present.Average(c => c.Recall),
            LogLoss: n == 0 ? 0 : logLoss / n,
            classNames,
            classes,
            matrix,
            skipped,
            training);
    }
}
