using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Explanations;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training.FineTuning;

namespace MlNetFinetune.Training;

/// <summary>What a training run produced.</summary>
/// <param name="ModelPath">Full path of the saved model.zip.</param>
/// <param name="Report">The held-out evaluation.</param>
/// <param name="HeldOutPredictions">The model's answer for every held-out image scored.</param>
/// <param name="Featurization">Every image of the run with its features or skip reason.</param>
/// <param name="Backbone">The backbone the features came from.</param>
public sealed record TrainingResult(
    string ModelPath,
    EvaluationReport Report,
    IReadOnlyList<HeldOutPrediction> HeldOutPredictions,
    FeaturizationResult Featurization,
    IBackbone Backbone)
{
    /// <summary>Whether Ctrl+C stopped the fine-tuning: the model holds the best epoch finished before it.</summary>
    public bool FineTuningInterrupted => Report.FineTuning?.StopReason == FineTuner.Cancelled;
}

/// <summary>
/// Trains an image classifier in six steps: scan and split the folders, (with <see cref="TrainingOptions.FineTune"/>,
/// fine-tune the backbone,) featurize every image once into the bottleneck cache, fit the head on cached features,
/// compose the fitted featurizer and head into one ML.NET model and save it, and evaluate on the held-out images. Cancelling stops it between or inside steps (an
/// <see cref="OperationCanceledException"/>), never with half a file written; cancelling a fine-tuning after its first
/// epoch instead finishes the model with the best epoch so far, no longer cancellable.
/// </summary>
public sealed class ImageClassifierTrainer(TrainingOptions options)
{
    /// <summary>Runs the training; <paramref name="log"/> receives one line per step.</summary>
    public TrainingResult Train(IProgress<FeaturizationProgress>? progress = null, Action<string>? log = null, CancellationToken cancellation = default)
    {
        log ??= _ => { };
        options.Validate();
        var ml = new MLContext(options.Seed);

        var images = TrainingImages.Collect(options);
        log(images.Describe());
        var backbone = ResolveBackbone(images, log);
        var workspace = options.Workspace ?? TrainingOptions.DefaultWorkspace;
        FineTuningReport? fineTuning = null;
        if (options.FineTune is not null)
        {
            (backbone, fineTuning) = BackboneFineTuning.Run(options, images, (ResNet18Backbone)backbone, workspace, log, cancellation);
            if (fineTuning.StopReason == FineTuner.Cancelled)
            {
                log(string.Create(CultureInfo.InvariantCulture,
                    $"interrupted: fine-tuning stopped; the model is finished with the best epoch so far ({fineTuning.BestEpoch}); press Ctrl+C again to stop without saving it"));
                cancellation = CancellationToken.None;
            }
        }

        using var store = FeatureStore.Open(ml, workspace, backbone, options.Featurization);
        var corrupt = store.CorruptCount > 0 ? string.Create(CultureInfo.InvariantCulture, $", {store.CorruptCount} corrupt record(s) dropped, their images recomputed") : "";
        log(string.Create(CultureInfo.InvariantCulture, $"Bottleneck cache {store.Directory}: {store.LoadedCount} feature vectors on disk{corrupt}"));
        cancellation.ThrowIfCancellationRequested();

        var mirrored = options.MirroredViews ? images.Train.Concat(images.Validation).Select(i => i.Path).ToHashSet(StringComparer.Ordinal) : null;
        var featurization = store.Featurize(images.All, mirrored, progress, cancellation);
        if (featurization.GpuFallbackMessage is not null)
        {
            log(featurization.GpuFallbackMessage);
        }

        foreach (var s in featurization.Skipped)
        {
            log($"skipped {s.Path}: {s.Reason}");
        }

        var (train, validation, heldOut, duplicates) = Parts(images, featurization);
        if (duplicates.Any)
        {
            log(DescribeDuplicates(duplicates));
        }

        var trainRows = Rows(train, options.MirroredViews);
        var validationRows = Rows(validation, withMirrored: false);
        var heldOutRows = Rows(heldOut, withMirrored: false);
        cancellation.ThrowIfCancellationRequested();

        var labelToKey = ImageClassificationChain.LabelToKey(ml).Fit(FeatureRow.ToDataView(ml, trainRows, backbone.FeatureSize));
        var classNames = ImageClassificationChain.ClassNames(labelToKey, FeatureRow.ToDataView(ml, trainRows.Take(1), backbone.FeatureSize).Schema);
        var headClock = Stopwatch.StartNew();
        var head = HeadTrainer.Fit(ml, labelToKey, trainRows, validationRows, backbone.FeatureSize, options.Head, cancellation);
        headClock.Stop();
        log(string.Create(CultureInfo.InvariantCulture, $"Head fitted in {headClock.Elapsed.TotalSeconds:F1} s: {head.Name}, L2 = {head.L2Regularization}, {head.Epochs} epoch(s)"));
        cancellation.ThrowIfCancellationRequested();

        var scores = HeadTrainer.PredictScores(ml, labelToKey, head.Transformer, heldOutRows, backbone.FeatureSize);
        var predictions = heldOut.Select((image, i) => new HeldOutPrediction(
            image.Image.Path, image.Image.Label, classNames[ArgMax(scores[i])], scores[i])).ToList();
        var summary = new TrainingSummary(
            backbone.Describe(), backbone.FeatureSize, train.Count, validation.Count, heldOut.Count, images.HeldOutSource,
            head.Name, head.L2Regularization, head.Candidates, featurization.FromCache, featurization.Computed,
            featurization.ImagesPerSecond, featurization.Elapsed.TotalSeconds, headClock.Elapsed.TotalSeconds, options.Seed);
        var report = HeldOutEvaluator.Evaluate(classNames, predictions, [.. images.Skipped, .. featurization.Skipped], summary) with
        {
            Ignored = images.Ignored,
            Duplicates = duplicates,
            FineTuning = fineTuning,
        };

        var modelPath = Path.Combine(options.OutputFolder, TrainingOptions.ModelFileName);
        ModelFile.Save(ml, backbone, head, classNames, report, options.Featurization.Alpha, workspace, modelPath, cancellation);
        var explained = RunExplainer.Explain(ml, backbone, head, labelToKey, classNames, [.. train, .. validation], heldOut, predictions, options, log, cancellation);
        report = report with { LabelErrors = explained.LabelErrors, NearDuplicates = explained.NearDuplicates };
        ReportWriter.WriteAll(report, predictions, options.OutputFolder);
        HtmlReportWriter.Write(report, predictions, options.OutputFolder, explained);

        // A Ctrl+C that came while the files were written still ends the run as interrupted; each file is whole.
        cancellation.ThrowIfCancellationRequested();
        return new TrainingResult(Path.GetFullPath(modelPath), report, predictions, featurization, backbone);
    }

    /// <summary>
    /// Featurizes only the images of one shard (training and test folders alike) into the shared cache, under a file of
    /// the shard's own. Once every shard has run, a training run on the same workspace finds every feature cached.
    /// </summary>
    public FeaturizationResult FeaturizeShard(ShardSpec shard, IProgress<FeaturizationProgress>? progress = null, Action<string>? log = null, CancellationToken cancellation = default)
    {
        log ??= _ => { };
        options.Validate();
        var images = TrainingImages.Collect(options);
        var backbone = ResolveBackbone(images, log);
        var mine = images.All.Where(i => shard.Contains(images.RelativePath(i.Path))).ToList();
        log(string.Create(CultureInfo.InvariantCulture, $"Shard {shard}: {mine.Count} of {images.All.Count} images"));
        var ml = new MLContext(options.Seed);
        using var store = FeatureStore.Open(ml, options.Workspace ?? TrainingOptions.DefaultWorkspace, backbone, options.Featurization with { WriterName = shard.WriterName });
        var mirrored = options.MirroredViews
            ? images.Train.Concat(images.Validation).Select(i => i.Path).ToHashSet(StringComparer.Ordinal)
            : null;
        return store.Featurize(mine, mirrored, progress, cancellation);
    }

    /// <summary>
    /// The usable images of each part, with byte-identical copies across parts found and left out where they would
    /// flatter the scores; throws <see cref="UserInputException"/> naming every class left with no usable training image.
    /// </summary>
    private (List<FeaturizedImage> Train, IReadOnlyList<FeaturizedImage> Validation, IReadOnlyList<FeaturizedImage> HeldOut, DuplicateImages Duplicates) Parts(
        TrainingImages images, FeaturizationResult featurization)
    {
        var all = featurization.Images;
        var (trainCount, validationCount) = (images.Train.Count, images.Validation.Count);
        var train = all.Take(trainCount).Where(i => i.IsUsable).ToList();
        var validation = all.Skip(trainCount).Take(validationCount).Where(i => i.IsUsable).ToList();
        var heldOut = all.Skip(trainCount + validationCount).Where(i => i.IsUsable).ToList();

        var usable = train.Select(i => i.Image.Label).ToHashSet(StringComparer.Ordinal);
        var empty = images.Data.Classes.Where(c => !usable.Contains(c)).ToList();
        if (empty.Count > 0)
        {
            var unusable = all.Take(trainCount).Where(i => !i.IsUsable && empty.Contains(i.Image.Label)).ToList();
            var example = unusable.FirstOrDefault() is { } first ? $", e.g. {first.Image.Path}: {first.SkipReason}" : "";
            var classes = string.Join(", ", empty.Select(c => $"'{c}'"));
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"{options.DataFolder}: class(es) {classes} have no usable training image ({unusable.Count} skipped{example}); fix or remove them, or remove the class folder"));
        }

        var (duplicates, keptValidation, keptHeldOut) = DuplicateImages.Find(train, validation, heldOut, options.ExcludeHeldOutDuplicates);
        return (train, keptValidation, keptHeldOut, duplicates);
    }

    private static string DescribeDuplicates(DuplicateImages d)
    {
        var heldOut = d.HeldOutExcluded ? "left out of the held-out score" : "kept: --keep-held-out-duplicates";
        var example = d.Examples.Count > 0 ? $"; e.g. {d.Examples[0].Path} = {d.Examples[0].SameAs}" : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"Byte-identical images: {d.HeldOutInTraining} held-out image(s) also in training or validation ({heldOut}), {d.ValidationInTraining} validation image(s) also in training (left out of validation), {d.ConflictingLabels} content(s) under more than one label{example}");
    }

    /// <summary>The backbone of the options, quantized to int8 when asked, calibrated on the training images.</summary>
    private IBackbone ResolveBackbone(TrainingImages images, Action<string> log)
    {
        var floatBackbone = ResolveFloatBackbone(images.Data, log);
        return options.Precision == Precision.Int8
            ? Int8Backbone.Calibrate(floatBackbone, images.Train, options.Quantization, options.Workspace ?? TrainingOptions.DefaultWorkspace, options.Featurization, log)
            : floatBackbone;
    }

    private IBackbone ResolveFloatBackbone(ImageFolder data, Action<string> log)
    {
        if (!options.BuiltInBackbone)
        {
            var own = OnnxFileBackbone.Load(options.Backbone!, options.Pixels, options.ImageSize, options.Features);
            log(string.Create(CultureInfo.InvariantCulture, $"Backbone {own.Path}: input {own.ImageSize} px, {own.FeatureSize} features from {own.Features}{(own.RunsInBatches ? "" : ", one image at a time (fixed batch of 1)")}"));
            return own;
        }

        BackboneOptions chosen;
        if (options.ImageSize is int size && options.Features is string features)
        {
            chosen = new BackboneOptions(size, features);
        }
        else
        {
            var profile = DataProfile.Measure(data);
            var fromData = BackboneOptions.ChooseFor(profile);
            chosen = new BackboneOptions(options.ImageSize ?? fromData.ImageSize, options.Features ?? fromData.Features);
            log(string.Create(CultureInfo.InvariantCulture, $"Data: {profile}; backbone input {chosen.ImageSize} px, features {chosen.Features}"));
        }

        return new ResNet18Backbone(chosen);
    }

    private static List<FeatureRow> Rows(IEnumerable<FeaturizedImage> images, bool withMirrored)
    {
        var rows = new List<FeatureRow>();
        foreach (var image in images)
        {
            rows.Add(new FeatureRow { Label = image.Image.Label, Features = image.Features! });
            if (withMirrored && image.MirroredFeatures is { } mirrored)
            {
                rows.Add(new FeatureRow { Label = image.Image.Label, Features = mirrored });
            }
        }

        return rows;
    }

    private static int ArgMax(float[] values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }
}
