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
public sealed record TrainingResult(string ModelPath, EvaluationReport Report, IReadOnlyList<HeldOutPrediction> HeldOutPredictions, FeaturizationResult Featurization);

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
        options.Backbone.Validate();
        var ml = new MLContext(options.Seed);

        var data = ImageFolder.Scan(options.DataFolder);
        IReadOnlyList<ImageRecord> trainAndValidation;
        IReadOnlyList<ImageRecord> heldOut;
        string heldOutSource;
        var skipped = new List<SkippedFile>(data.Skipped);
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

        var workspace = options.Workspace ?? TrainingOptions.DefaultWorkspace;
        var fingerprint = ResNet18Backbone.Fingerprint(options.Backbone);
        var featureSize = options.Backbone.FeatureSize;
        FeaturizationResult featurization;
        var allImages = train.Concat(validation).Concat(heldOut).ToList();
        using (var cache = BottleneckCache.Open(workspace, fingerprint, featureSize))
        {
            log(string.Create(CultureInfo.InvariantCulture, $"Bottleneck cache {cache.Directory}: {cache.LoadedCount} feature vectors on disk"));
            featurization = new BulkFeaturizer(ml, options.Backbone, options.Featurization)
                .Featurize([.. allImages.Select(i => i.Path)], cache, progress, cancellation);
            if (featurization.GpuFallbackMessage is not null)
            {
                log(featurization.GpuFallbackMessage);
            }

            foreach (var s in featurization.Skipped)
            {
                log($"skipped {s.Path}: {s.Reason}");
            }

            skipped.AddRange(featurization.Skipped);
            var trainRows = Rows(train, featurization, cache);
            var validationRows = Rows(validation, featurization, cache);
            var heldOutUsed = heldOut.Where(i => featurization.KeyByPath.ContainsKey(i.Path)).ToList();
            var heldOutRows = Rows(heldOutUsed, featurization, cache);
            if (trainRows.Select(r => r.Label).Distinct().Count() < 2)
            {
                throw new UserInputException($"{options.DataFolder}: fewer than two classes have readable training images");
            }

            var labelToKey = ImageClassificationChain.LabelToKey(ml).Fit(FeatureRow.ToDataView(ml, trainRows, featureSize));
            var classNames = ClassNames(labelToKey, ml, trainRows, featureSize);

            var headClock = Stopwatch.StartNew();
            var head = HeadTrainer.Fit(ml, labelToKey, trainRows, validationRows, featureSize, options.Head);
            headClock.Stop();
            log(string.Create(CultureInfo.InvariantCulture, $"Head fitted in {headClock.Elapsed.TotalSeconds:F1} s (L2 = {head.L2Regularization})"));

            var scores = HeadTrainer.PredictScores(ml, labelToKey, head.Transformer, heldOutRows, featureSize);
            var predictions = heldOutUsed.Select((image, i) => new HeldOutPrediction(
                image.Path, image.Label, classNames[ArgMax(scores[i])], scores[i])).ToList();

            var summary = new TrainingSummary(
                options.Backbone.Describe(), featureSize, trainRows.Count, validationRows.Count, heldOutUsed.Count, heldOutSource,
                head.L2Regularization, head.Candidates, featurization.FromCache, featurization.Computed,
                featurization.ImagesPerSecond, featurization.Elapsed.TotalSeconds, headClock.Elapsed.TotalSeconds, options.Seed);
            var report = HeldOutEvaluator.Evaluate(classNames, predictions, skipped, summary);

            var modelPath = Path.Combine(options.OutputFolder, TrainingOptions.ModelFileName);
            SaveModel(ml, labelToKey, head, classNames, report, workspace, fingerprint, modelPath);
            ReportWriter.WriteAll(report, options.OutputFolder);
            AtomicFile.WriteAllText(Path.Combine(options.OutputFolder, TrainingOptions.PredictionsFileName), PredictionsCsv(predictions));
            return new TrainingResult(Path.GetFullPath(modelPath), report, predictions, featurization);
        }
    }

    private void SaveModel(MLContext ml, ITransformer labelToKey, TrainedHead head, IReadOnlyList<string> classNames,
        EvaluationReport report, string workspace, string fingerprint, string modelPath)
    {
        // The chain's backbone graph is a file ML.NET reads once at Fit and then embeds in the saved zip.
        var graphPath = Path.Combine(workspace, "graphs", $"{fingerprint}-chain.onnx");
        if (!File.Exists(graphPath))
        {
            AtomicFile.Write(graphPath, temporary => File.WriteAllBytes(temporary, ResNet18Backbone.BuildGraph(options.Backbone, batchSize: 1)));
        }

        var inputs = ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        var keyed = labelToKey.Transform(inputs);
        var featurizer = ImageClassificationChain.Featurizer(ml, graphPath, options.Backbone.ImageSize).Fit(keyed);
        var featurized = featurizer.Transform(keyed);
        var keyToLabel = ImageClassificationChain.KeyToLabel(ml).Fit(head.Transformer.Transform(featurized));
        var model = new TransformerChain<ITransformer>(labelToKey, featurizer, head.Transformer, keyToLabel);

        var manifest = new ModelManifest(
            ModelManifest.CurrentFormatVersion,
            $"MlNetFinetune {typeof(ImageClassifierTrainer).Assembly.GetName().Version}",
            classNames,
            "resnet18",
            options.Backbone.ImageSize,
            string.Join('+', options.Backbone.ParseTaps()),
            options.Backbone.FeatureSize,
            HeadTrainer.SoftmaxHead,
            head.L2Regularization,
            new ManifestMetrics(report.MicroAccuracy, report.MacroAccuracy, report.LogLoss, report.Training.HeldOutImages));
        AtomicFile.Write(modelPath, temporary =>
        {
            ml.Model.Save(model, inputs.Schema, temporary);
            manifest.WriteInto(temporary);
        });
    }

    private static List<FeatureRow> Rows(IEnumerable<ImageRecord> images, FeaturizationResult featurization, BottleneckCache cache)
    {
        var rows = new List<FeatureRow>();
        foreach (var image in images)
        {
            if (featurization.KeyByPath.TryGetValue(image.Path, out var key) && cache.TryGet(key, out var features))
            {
                rows.Add(new FeatureRow { Label = image.Label, Features = features });
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
