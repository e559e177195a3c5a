using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Training;

/// <summary>What a training run produced.</summary>
public sealed record TrainingResult(
    string ModelPath,
    EvaluationReport Report,
    IReadOnlyList<HeldOutPrediction> HeldOutPredictions,
    FeaturizationResult Featurization,
    BackboneOptions Backbone);

/// <summary>
/// Trains an image classifier: scan, split, featurize every image once into the bottleneck cache, fit the head on
/// cached features, compose the fitted featurizer and head into one ML.NET model, save it with its manifest, and
/// evaluate on the held-out images.
/// </summary>
public sealed class ImageClassifierTrainer(TrainingOptions options)
{
    public TrainingResult Train(IProgress<FeaturizationProgress>? progress = null, Action<string>? log = null, CancellationToken cancellation = default)
    {
        log ??= _ => { };
        var ml = new MLContext(options.Seed);
        var images = ScanAndSplit(log);
        var backbone = ResolveBackbone(images.Data, log);
        var featureSize = backbone.FeatureSize;
        var workspace = options.Workspace ?? TrainingOptions.DefaultWorkspace;
        var fingerprint = ResNet18Backbone.Fingerprint(backbone);
        var skipped = new List<SkippedFile>(images.Skipped);
        using var cache = BottleneckCache.Open(workspace, fingerprint, featureSize);
        log(string.Create(CultureInfo.InvariantCulture, $"Bottleneck cache {cache.Directory}: {cache.LoadedCount} feature vectors on disk"));
        var mirrored = options.MirroredViews ? images.Train.Concat(images.Validation).Select(i => i.Path).ToHashSet(StringComparer.Ordinal) : null;
        var featurization = new BulkFeaturizer(ml, backbone, options.Featurization)
            .Featurize([.. images.All.Select(i => i.Path)], cache, progress, cancellation, mirrored);
        if (featurization.GpuFallbackMessage is not null)
        {
            log(featurization.GpuFallbackMessage);
        }

        foreach (var s in featurization.Skipped)
        {
            log($"skipped {s.Path}: {s.Reason}");
        }

        skipped.AddRange(featurization.Skipped);
        var trainRows = Rows(images.Train, featurization, cache, withMirrored: options.MirroredViews);
        var validationRows = Rows(images.Validation, featurization, cache, withMirrored: false);
        var heldOutUsed = images.HeldOut.Where(i => featurization.KeyByPath.ContainsKey(i.Path)).ToList();
        var heldOutRows = Rows(heldOutUsed, featurization, cache, withMirrored: false);
        if (trainRows.Select(r => r.Label).Distinct().Count() < 2)
        {
            throw new UserInputException($"{options.DataFolder}: fewer than two classes have readable training images");
        }

        var labelToKey = ImageClassificationChain.LabelToKey(ml).Fit(FeatureRow.ToDataView(ml, trainRows, featureSize));
        var classNames = ClassNames(labelToKey, ml, trainRows, featureSize);

        var headClock = Stopwatch.StartNew();
        var head = HeadTrainer.Fit(ml, labelToKey, trainRows, validationRows, featureSize, options.Head);
        headClock.Stop();
        log(string.Create(CultureInfo.InvariantCulture, $"Head fitted in {headClock.Elapsed.TotalSeconds:F1} s: {head.Name}, L2 = {head.L2Regularization}, {head.Epochs} epoch(s)"));

        var scores = HeadTrainer.PredictScores(ml, labelToKey, head.Transformer, heldOutRows, featureSize);
        var predictions = heldOutUsed.Select((image, i) => new HeldOutPrediction(
            image.Path, image.Label, classNames[ArgMax(scores[i])], scores[i])).ToList();

        var summary = new TrainingSummary(
            backbone.Describe(), featureSize, trainRows.Count, validationRows.Count, heldOutUsed.Count, images.HeldOutSource,
            head.Name, head.L2Regularization, head.Candidates, featurization.FromCache, featurization.Computed,
            featurization.ImagesPerSecond, featurization.Elapsed.TotalSeconds, headClock.Elapsed.TotalSeconds, options.Seed);
        var report = HeldOutEvaluator.Evaluate(classNames, predictions, skipped, summary);

        var modelPath = Path.Combine(options.OutputFolder, TrainingOptions.ModelFileName);
        SaveModel(ml, backbone, labelToKey, head, classNames, report, workspace, fingerprint, modelPath);
        ReportWriter.WriteAll(report, options.OutputFolder);
        HtmlReportWriter.Write(report, predictions, options.OutputFolder);
        AtomicFile.WriteAllText(Path.Combine(options.OutputFolder, TrainingOptions.PredictionsFileName), PredictionsCsv(predictions));
        return new TrainingResult(Path.GetFullPath(modelPath), report, predictions, featurization, backbone);
    }

    /// <summary>
    /// Featurizes only the images of one shard (training and test folders alike) into the shared cache, under a file of
    /// the shard's own. Once every shard has run, a training run on the same workspace finds every feature cached.
    /// </summary>
    public FeaturizationResult FeaturizeShard(ShardSpec shard, IProgress<FeaturizationProgress>? progress = null, Action<string>? log = null, CancellationToken cancellation = default)
    {
        log ??= _ => { };
        var images = ScanAndSplit(log);
        var backbone = ResolveBackbone(images.Data, log);
        var paths = images.All.Where(i => shard.Contains(images.RelativePath(i.Path))).Select(i => i.Path).ToList();
        log(string.Create(CultureInfo.InvariantCulture, $"Shard {shard}: {paths.Count} of {images.All.Count} images"));
        var workspace = options.Workspace ?? TrainingOptions.DefaultWorkspace;
        using var cache = BottleneckCache.Open(workspace, ResNet18Backbone.Fingerprint(backbone), backbone.FeatureSize);
        var mirrored = options.MirroredViews
            ? images.Train.Concat(images.Validation).Select(i => i.Path).Where(paths.Contains).ToHashSet(StringComparer.Ordinal)
            : null;
        return new BulkFeaturizer(new MLContext(options.Seed), backbone, options.Featurization with { WriterName = shard.WriterName })
            .Featurize(paths, cache, progress, cancellation, mirrored);
    }

    private sealed record SplitImages(
        ImageFolder Data,
        string? TestRoot,
        IReadOnlyList<ImageRecord> Train,
        IReadOnlyList<ImageRecord> Validation,
        IReadOnlyList<ImageRecord> HeldOut,
        string HeldOutSource,
        IReadOnlyList<SkippedFile> Skipped)
    {
        public IReadOnlyList<ImageRecord> All => [.. Train, .. Validation, .. HeldOut];

        /// <summary>Path relative to its folder, prefixed so that a training and a test image never collide.</summary>
        public string RelativePath(string path) => TestRoot is not null && path.StartsWith(TestRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal)
            ? "test/" + Path.GetRelativePath(TestRoot, path)
            : "data/" + Path.GetRelativePath(Data.Root, path);
    }

    private SplitImages ScanAndSplit(Action<string> log)
    {
        var data = ImageFolder.Scan(options.DataFolder);
        var skipped = new List<SkippedFile>(data.Skipped);
        IReadOnlyList<ImageRecord> trainAndValidation;
        IReadOnlyList<ImageRecord> heldOut;
        string heldOutSource;
        string? testRoot = null;
        if (options.TestFolder is not null)
        {
            var test = ImageFolder.Scan(options.TestFolder, minimumClasses: 1);
            var unknown = test.Classes.Except(data.Classes, StringComparer.Ordinal).ToList();
            if (unknown.Count > 0)
            {
                throw new UserInputException($"{options.TestFolder}: class folder(s) {string.Join(", ", unknown)} not in the training data {options.DataFolder}");
            }

            trainAndValidation = data.Images;
            heldOut = test.Images;
            heldOutSource = $"test folder {options.TestFolder}";
            testRoot = test.Root;
            skipped.AddRange(test.Skipped);
        }
        else
        {
            (trainAndValidation, heldOut) = StratifiedSplit.Split(data.Images, options.HeldOutFraction, options.Seed);
            heldOutSource = string.Create(CultureInfo.InvariantCulture, $"stratified {options.HeldOutFraction:P0} of {options.DataFolder}, seed {options.Seed}");
        }

        var (train, validation) = StratifiedSplit.Split(trainAndValidation, options.ValidationFraction, options.Seed + 1);
        log(string.Create(CultureInfo.InvariantCulture,
            $"{data.Images.Count} images in {data.Classes.Count} classes: {train.Count} train, {validation.Count} validation, {heldOut.Count} held-out"));
        return new SplitImages(data, testRoot, train, validation, heldOut, heldOutSource, skipped);
    }

    private BackboneOptions ResolveBackbone(ImageFolder data, Action<string> log)
    {
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

        chosen.Validate();
        return chosen;
    }

    private static void SaveModel(MLContext ml, BackboneOptions backbone, ITransformer labelToKey, TrainedHead head, IReadOnlyList<string> classNames,
        EvaluationReport report, string workspace, string fingerprint, string modelPath)
    {
        // The chain's backbone graph is a file ML.NET reads once at Fit and then embeds in the saved zip.
        var graphPath = Path.Combine(workspace, "graphs", $"{fingerprint}-chain.onnx");
        if (!File.Exists(graphPath))
        {
            AtomicFile.Write(graphPath, temporary => File.WriteAllBytes(temporary, ResNet18Backbone.BuildGraph(backbone, batchSize: 1)));
        }

        var inputs = ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        var keyed = labelToKey.Transform(inputs);
        var featurizer = ImageClassificationChain.Featurizer(ml, graphPath, backbone.ImageSize).Fit(keyed);
        var featurized = featurizer.Transform(keyed);
        var keyToLabel = ImageClassificationChain.KeyToLabel(ml).Fit(head.Transformer.Transform(featurized));
        var model = new TransformerChain<ITransformer>(labelToKey, featurizer, head.Transformer, keyToLabel);

        var manifest = new ModelManifest(
            ModelManifest.CurrentFormatVersion,
            $"MlNetFinetune {typeof(ImageClassifierTrainer).Assembly.GetName().Version}",
            classNames,
            "resnet18",
            backbone.ImageSize,
            string.Join('+', backbone.ParseTaps()),
            backbone.FeatureSize,
            head.Name,
            head.L2Regularization,
            new ManifestMetrics(report.MicroAccuracy, report.MacroAccuracy, report.LogLoss, report.Training.HeldOutImages));
        AtomicFile.Write(modelPath, temporary =>
        {
            ml.Model.Save(model, inputs.Schema, temporary);
            manifest.WriteInto(temporary);
        });
    }

    private static List<FeatureRow> Rows(IEnumerable<ImageRecord> images, FeaturizationResult featurization, BottleneckCache cache, bool withMirrored)
    {
        var rows = new List<FeatureRow>();
        foreach (var image in images)
        {
            if (!featurization.KeyByPath.TryGetValue(image.Path, out var key))
            {
                continue;
            }

            if (cache.TryGet(key, out var features))
            {
                rows.Add(new FeatureRow { Label = image.Label, Features = features });
            }

            if (withMirrored && cache.TryGet(key + BulkFeaturizer.MirroredSuffix, out var mirrored))
            {
                rows.Add(new FeatureRow { Label = image.Label, Features = mirrored });
            }
        }

        return rows;
    }

    private static List<string> ClassNames(ITransformer labelToKey, MLContext ml, IReadOnlyList<FeatureRow> rows, int featureSize)
    {
        var schema = labelToKey.GetOutputSchema(FeatureRow.ToDataView(ml, rows.Take(1), featureSize).Schema);
        VBuffer<ReadOnlyMemory<char>> names = default;
        schema[ColumnNames.LabelKey].GetKeyValues(ref names);
        return [.. names.DenseValues().Select(n => n.ToString())];
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

    private static string PredictionsCsv(IEnumerable<HeldOutPrediction> predictions)
    {
        var csv = new StringBuilder("path,true_label,predicted_label,confidence\n");
        foreach (var p in predictions)
        {
            csv.Append(Csv(p.Path)).Append(',').Append(Csv(p.TrueLabel)).Append(',').Append(Csv(p.PredictedLabel)).Append(',')
                .Append(p.Scores.Max().ToString("F6", CultureInfo.InvariantCulture)).Append('\n');
        }

        return csv.ToString();
    }

    private static string Csv(string field) => field.Contains(',') || field.Contains('"') ? $"\"{field.Replace("\"", "\"\"")}\"" : field;
}
