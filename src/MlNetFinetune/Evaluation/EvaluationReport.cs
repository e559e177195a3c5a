using MlNetFinetune.Data;
using MlNetFinetune.Training;

namespace MlNetFinetune.Evaluation;

/// <summary>Precision, recall and F1 of one class on the held-out set; support is its number of held-out images.</summary>
public sealed record ClassMetrics(string Name, double Precision, double Recall, double F1, int Support);

/// <summary>A head setting tried while choosing the head, scored on the validation split at its best epoch.</summary>
/// <param name="Head">"softmax", "sdca" or "lightgbm".</param>
/// <param name="L2Regularization">L2 strength tried.</param>
/// <param name="ValidationAccuracy">Accuracy on the validation split at the best epoch.</param>
/// <param name="ValidationLogLoss">Log-loss on the validation split at the best epoch.</param>
/// <param name="BestEpoch">The epoch whose weights were kept (1-based); later epochs did not lower the validation log-loss.</param>
/// <param name="EpochsRun">Epochs trained before early stopping.</param>
public sealed record HeadCandidate(string Head, float L2Regularization, double ValidationAccuracy, double ValidationLogLoss, int BestEpoch, int EpochsRun);

/// <summary>The model's answer for one held-out image.</summary>
public sealed record HeldOutPrediction(string Path, string TrueLabel, string PredictedLabel, float[] Scores);

/// <summary>How the model was trained: sizes of the parts, the backbone, the head and the featurization.</summary>
public sealed record TrainingSummary(
    string Backbone,
    int FeatureSize,
    int TrainImages,
    int ValidationImages,
    int HeldOutImages,
    string HeldOutSource,
    string Head,
    float L2Regularization,
    IReadOnlyList<HeadCandidate> HeadCandidates,
    int FeaturesFromCache,
    int FeaturesComputed,
    double FeaturizationImagesPerSecond,
    double FeaturizationSeconds,
    double HeadTrainingSeconds,
    int Seed)
{
    /// <summary>Whether <paramref name="candidate"/> is the setting the head was trained with.</summary>
    public bool IsChosen(HeadCandidate candidate) =>
        candidate.Head.StartsWith(Head, StringComparison.Ordinal) && candidate.L2Regularization == L2Regularization && candidate.EpochsRun > 0;
}

/// <summary>The held-out evaluation: what report.json and report.md hold.</summary>
/// <param name="MicroAccuracy">Share of held-out images classified correctly.</param>
/// <param name="MacroAccuracy">Mean over classes of each class's recall.</param>
/// <param name="LogLoss">Mean of -ln p(true class), p clipped at 1e-15 as ML.NET does.</param>
/// <param name="ClassNames">The classes, in the model's order.</param>
/// <param name="Classes">Precision, recall, F1 and support per class.</param>
/// <param name="ConfusionMatrix">Rows are true classes, columns predicted classes, both in <paramref name="ClassNames"/> order.</param>
/// <param name="SkippedFiles">Images that could not be read or decoded, with the reason; the run went on without them.</param>
/// <param name="Training">How the model was trained: backbone, head, data counts, timings, seed.</param>
public sealed record EvaluationReport(
    double MicroAccuracy,
    double MacroAccuracy,
    double LogLoss,
    IReadOnlyList<string> ClassNames,
    IReadOnlyList<ClassMetrics> Classes,
    int[][] ConfusionMatrix,
    IReadOnlyList<SkippedFile> SkippedFiles,
    TrainingSummary Training)
{
    /// <summary>Entries of the image folders left out on purpose (hidden, links to folders, not images by name).</summary>
    public IReadOnlyList<IgnoredEntry> Ignored { get; init; } = [];

    /// <summary>Byte-identical images across training, validation and held-out images; null when not looked for.</summary>
    public DuplicateImages? Duplicates { get; init; }

    /// <summary>Training images whose label looks wrong to a model trained without them; null when not searched.</summary>
    public Explanations.LabelErrorSearchResult? LabelErrors { get; init; }

    /// <summary>Held-out images that are near copies of training images; null when not searched.</summary>
    public Explanations.NearDuplicateSearchResult? NearDuplicates { get; init; }
}
