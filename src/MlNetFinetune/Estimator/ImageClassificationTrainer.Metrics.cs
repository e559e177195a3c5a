using System.Globalization;

namespace MlNetFinetune;

public sealed partial class ImageClassificationTrainer
{
    /// <summary>
    /// What <see cref="Options.MetricsCallback"/> receives: either featurization progress (<see cref="Bottleneck"/>) or a
    /// finished head epoch (<see cref="Train"/>); the other is null.
    /// </summary>
    public sealed record ImageClassificationMetrics
    {
        /// <summary>The rows a metric is about.</summary>
        public enum Dataset
        {
            /// <summary>The training rows (the data given to <c>Fit</c>, less a validation split).</summary>
            Train,

            /// <summary>The validation rows.</summary>
            Validation,
        }

        /// <summary>A finished head epoch, or null.</summary>
        public TrainMetrics? Train { get; init; }

        /// <summary>Featurization progress, or null.</summary>
        public BottleneckMetrics? Bottleneck { get; init; }

        /// <summary>One line for a log.</summary>
        public override string ToString() => Train?.ToString() ?? Bottleneck?.ToString() ?? string.Empty;
    }

    /// <summary>One head epoch's scores on one set of rows.</summary>
    public sealed record TrainMetrics
    {
        /// <summary>The rows scored.</summary>
        public ImageClassificationMetrics.Dataset DatasetUsed { get; init; }

        /// <summary>The epoch just finished, from 1; each L2 strength of the search starts again at 1.</summary>
        public int Epoch { get; init; }

        /// <summary>The L2 strength of the head being trained.</summary>
        public float L2Regularization { get; init; }

        /// <summary>Share of the rows predicted right.</summary>
        public float Accuracy { get; init; }

        /// <summary>Mean log-loss (cross-entropy) of the rows, natural log.</summary>
        public float CrossEntropy { get; init; }

        /// <summary>One line for a log.</summary>
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"Phase: Training, Dataset used: {DatasetUsed,10}, L2: {L2Regularization,6}, Epoch: {Epoch,3}, Accuracy: {Accuracy,10:F4}, Cross-Entropy: {CrossEntropy,10:F4}");
    }

    /// <summary>How far the backbone has run over one set of rows.</summary>
    public sealed record BottleneckMetrics
    {
        /// <summary>The rows being featurized.</summary>
        public ImageClassificationMetrics.Dataset DatasetUsed { get; init; }

        /// <summary>Rows of that set handled so far (featurized, found in the cache or skipped).</summary>
        public int Index { get; init; }

        /// <summary>One line for a log.</summary>
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"Phase: Bottleneck Computation, Dataset used: {DatasetUsed,10}, Image Index: {Index,5}");
    }
}
