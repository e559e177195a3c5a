using MlNetFinetune.Images;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Backbones;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;
using SkiaSharp;

namespace MlNetFinetune.Explanations;

/// <summary>Heat maps of one gallery mistake, for the predicted and the true class, drawn on one scale.</summary>
/// <param name="Map">The occlusion map of every class.</param>
/// <param name="PredictedOverlay">JPEG: where the model looked for the class it predicted.</param>
/// <param name="TrueOverlay">JPEG: where it looked for the true class.</param>
/// <param name="Scale">The probability drop drawn at full colour in both.</param>
internal sealed record GalleryExplanation(OcclusionMap Map, byte[] PredictedOverlay, byte[] TrueOverlay, float Scale);

/// <summary>What a training run's explanation step produced.</summary>
/// <param name="Gallery">Heat maps of the gallery's mistakes, by image path.</param>
/// <param name="LabelErrors">The label-error search; null when it did not run.</param>
/// <param name="NearDuplicates">The near-duplicate search; null when it did not run.</param>
internal sealed record RunExplanations(IReadOnlyDictionary<string, GalleryExplanation> Gallery, LabelErrorSearchResult? LabelErrors, NearDuplicateSearchResult? NearDuplicates)
{
    /// <summary>Nothing explained.</summary>
    public static RunExplanations Empty { get; } = new(new Dictionary<string, GalleryExplanation>(), null, null);
}

/// <summary>
/// The training run's explanation step, after evaluation: heat maps of the gallery's mistakes, the label-error search
/// over the training images, and near duplicates of training images among the held-out ones. All of it works on
/// features the run already has, except the heat maps (one backbone batch per gallery image).
/// </summary>
internal static class RunExplainer
{
    /// <summary>Gallery thumbnails are drawn at twice their 112 CSS pixels, sharp on high-density screens.</summary>
    private const int OverlaySide = 224;

    public static RunExplanations Explain(
        MLContext ml,
        IBackbone backbone,
        TrainedHead head,
        ITransformer labelToKey,
        IReadOnlyList<string> classNames,
        IReadOnlyList<FeaturizedImage> training,
        IReadOnlyList<FeaturizedImage> heldOut,
        IReadOnlyList<HeldOutPrediction> predictions,
        TrainingOptions run,
        Action<string> log,
        CancellationToken cancellation)
    {
        var options = run.Explanations;
        var gallery = new Dictionary<string, GalleryExplanation>(StringComparer.Ordinal);
        if (options.ExplainMistakes)
        {
            options.Occlusion.CheckFits(backbone.ImageSize);
            var clock = Stopwatch.StartNew();
            using var model = ExplanationModel.FromTraining(ml, backbone, head.Transformer, classNames, run.Workspace ?? TrainingOptions.DefaultWorkspace, run.Featurization.GpuDevice);
            var setUp = clock.Elapsed.TotalSeconds;
            foreach (var mistake in HtmlReportWriter.MostConfidentMistakes(predictions))
            {
                cancellation.ThrowIfCancellationRequested();
                if (ExplainMistake(model, mistake, options.Occlusion, run.Featurization.Alpha) is { } explained)
                {
                    gallery[mistake.Path] = explained;
                }
            }

            log(string.Create(CultureInfo.InvariantCulture, $"Heat maps of {gallery.Count} mistakes in {clock.Elapsed.TotalSeconds:F1} s (occlusion, {options.Occlusion.Variants} backbone images each; {setUp:F1} s of it loading the backbone)"));
        }

        LabelErrorSearchResult? labelErrors = null;
        if (options.SearchesLabelErrors(training.Count, backbone.FeatureSize))
        {
            var iterations = Math.Min(options.FoldIterations, Math.Max(1, head.Epochs) * run.Head.EpochIterations);
            labelErrors = LabelErrorSearch.Run(ml, labelToKey, classNames, training, backbone.FeatureSize, FoldL2(head), iterations, options.Folds, run.Seed, cancellation);
            log(string.Create(CultureInfo.InvariantCulture,
                $"Label-error search: {labelErrors.Suspects.Count} of {labelErrors.Images} training images disagree with their label out of fold ({labelErrors.Folds} folds, {labelErrors.Seconds:F1} s); see {LabelErrorSearchResult.FileName}"));
        }
        else if (options.FindLabelErrors is null)
        {
            log(string.Create(CultureInfo.InvariantCulture,
                $"Label-error search skipped: {training.Count} images x {backbone.FeatureSize} features is over the automatic limit of {ExplanationOptions.LabelErrorSearchLimit}; --find-label-errors on runs it"));
        }

        NearDuplicateSearchResult? nearDuplicates = null;
        if (options.FindNearDuplicates)
        {
            var correct = predictions.ToDictionary(p => p.Path, p => string.Equals(p.TrueLabel, p.PredictedLabel, StringComparison.Ordinal), StringComparer.Ordinal);
            nearDuplicates = NearDuplicateSearch.Run(training, heldOut, correct, options.NearDuplicateThreshold, cancellation);
            log(string.Create(CultureInfo.InvariantCulture,
                $"Near duplicates: {nearDuplicates.Pairs.Count} of {nearDuplicates.HeldOutImages} held-out images have a training image with similarity >= {nearDuplicates.Threshold} ({nearDuplicates.Seconds:F1} s)"));
        }

        return new RunExplanations(gallery, labelErrors, nearDuplicates);
    }

    /// <summary>The fold heads are softmax heads with the chosen L2; after a non-softmax winner, the best softmax candidate's.</summary>
    private static float FoldL2(TrainedHead head) => head.Name == HeadTrainer.SoftmaxHead
        ? head.L2Regularization
        : head.Candidates.Where(c => c.Head == HeadTrainer.SoftmaxHead).OrderByDescending(c => c.ValidationAccuracy).Select(c => c.L2Regularization).FirstOrDefault(HeadOptions.L2Candidates[1]);

    private static GalleryExplanation? ExplainMistake(ExplanationModel model, HeldOutPrediction mistake, OcclusionOptions occlusion, AlphaPolicy alpha)
    {
        MLImage image;
        try
        {
            image = ImageDecoder.DecodeFile(mistake.Path, alpha: alpha);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            // The gallery says the file is gone or unreadable; the run goes on.
            return null;
        }

        using (image)
        {
            var map = model.Explain(image, occlusion);
            var predicted = map.Heat[map.IndexOf(mistake.PredictedLabel)];
            var truth = map.Heat[map.IndexOf(mistake.TrueLabel)];
            var scale = HeatMapPainter.CommonScale(predicted, truth);
            using var view = HeatMapPainter.ModelView(image, OverlaySide);
            return new GalleryExplanation(map, Jpeg(HeatMapPainter.Overlay(view, predicted, map.Grid, scale)), Jpeg(HeatMapPainter.Overlay(view, truth, map.Grid, scale)), scale);
        }
    }

    private static byte[] Jpeg(SKBitmap bitmap)
    {
        using (bitmap)
        {
            using var image = SKImage.FromBitmap(bitmap);
            using var data = image.Encode(SKEncodedImageFormat.Jpeg, 85);
            return data.ToArray();
        }
    }
}
