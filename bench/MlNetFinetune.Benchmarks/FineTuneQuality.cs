using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;
using MlNetFinetune.Training.FineTuning;
using Onnx;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// Fine-tunes on a training folder (a stratified validation split held back for early stopping and the best epoch)
/// and scores the held-out folder two ways: with the fine-tuned head, and with the frozen pipeline's L-BFGS head
/// refitted on the fine-tuned network's features (what the Trainer would fit with that network).
/// </summary>
public static class FineTuneQuality
{
    private const int FeatureBatch = 64;

    public static int Run(FineTuneBenchOptions options, TextWriter output)
    {
        var clock = Stopwatch.StartNew();
        var folder = ImageFolder.Scan(options.DataFolder);
        var classes = folder.Classes.ToList();
        var images = options.Images > 0 ? [.. folder.Images.GroupBy(i => i.Label).SelectMany(g => g.Take(options.Images))] : folder.Images.ToList();
        var (train, validation) = StratifiedSplit.Split(images, options.ValidationFraction, options.FineTune.Seed);
        var test = options.TestFolder is null ? [] : ImageFolder.Scan(options.TestFolder).Images.ToList();
        var ml = new MLContext(options.FineTune.Seed);
        var backbone = new BackboneOptions(options.ImageSize, options.Features);
        List<(string, int)> Files(IEnumerable<ImageRecord> records) => [.. records.Select(r => (r.Path, classes.IndexOf(r.Label)))];
        output.WriteLine(Invariant($"{train.Count} training, {validation.Count} validation, {test.Count} held-out images; {options.Describe()}"));

        var result = new FineTuner(options.FineTune, backbone) { MirroredViews = options.MirroredViews }.Run(
            LabelledImages.FromFiles(ml, Files(train), options.ImageSize),
            LabelledImages.FromFiles(ml, Files(validation), options.ImageSize),
            classes.Count,
            epochs: new Printer(output));
        var trainedAt = clock.Elapsed.TotalSeconds;
        output.WriteLine(Invariant($"cache {result.CacheSeconds:F0} s ({result.CacheBytes / 1e6:F0} MB), best epoch {result.BestEpoch} ({result.StopReason}), fine-tuning done at {trainedAt:F0} s"));

        var summary = Invariant($"{options.Describe()} | train {train.Count} | best epoch {result.BestEpoch}/{result.History.Count} val loss {result.History.ElementAtOrDefault(result.BestEpoch - 1)?.ValidationLoss:F4} acc {result.History.ElementAtOrDefault(result.BestEpoch - 1)?.ValidationAccuracy:F4} | fine-tune {trainedAt:F0} s");
        if (test.Count > 0)
        {
            var testFiles = Files(test);
            var features = Featurize(backbone, result.Network, LabelledImages.FromFiles(ml, testFiles, options.ImageSize), test.Count);
            var probabilities = features.Select(f => result.Head.Probabilities(f)).ToList();
            var accuracy = Accuracy(probabilities, testFiles);
            var logLoss = -testFiles.Select((f, i) => Math.Log(Math.Max(probabilities[i][f.Item2], 1e-15))).Average();
            output.WriteLine(Invariant($"held-out with the fine-tuned head: accuracy {accuracy:F4}, log-loss {logLoss:F4} ({clock.Elapsed.TotalSeconds:F0} s)"));
            summary += Invariant($" | held-out acc {accuracy:F4} log-loss {logLoss:F4}");
            if (options.RefitFeatures is string taps)
            {
                var refit = Refit(ml, new BackboneOptions(options.ImageSize, taps), result.Network, classes,
                    [.. train.Concat(validation).Select(r => (r.Path, classes.IndexOf(r.Label)))], train.Count, testFiles, options.ImageSize);
                output.WriteLine(Invariant($"held-out with an L-BFGS head refitted on the fine-tuned {taps} features: accuracy {refit:F4} ({clock.Elapsed.TotalSeconds:F0} s)"));
                summary += Invariant($" | refit {taps} acc {refit:F4}");
            }
        }

        summary += Invariant($" | total {clock.Elapsed.TotalSeconds:F0} s, peak {FineTuneSpeed.PeakMemoryMegabytes():F0} MB");
        output.WriteLine(summary);
        if (options.LogFile is string log)
        {
            File.AppendAllText(log, summary + Environment.NewLine);
        }

        return 0;
    }

    private static double Refit(MLContext ml, BackboneOptions backbone, ModelProto network, List<string> classes,
        List<(string Path, int Label)> trainAndValidation, int trainCount, List<(string Path, int Label)> test, int size)
    {
        var all = Featurize(backbone, network, LabelledImages.FromFiles(ml, trainAndValidation, size), trainAndValidation.Count);
        var rows = all.Select((f, i) => new FeatureRow { Label = classes[trainAndValidation[i].Label], Features = f }).ToList();
        var trainRows = rows.Take(trainCount).ToList();
        var validationRows = rows.Skip(trainCount).ToList();
        var featureSize = backbone.FeatureSize;
        var labelToKey = ImageClassificationChain.LabelToKey(ml).Fit(FeatureRow.ToDataView(ml, trainRows, featureSize));
        var head = HeadTrainer.Fit(ml, labelToKey, trainRows, validationRows, featureSize, new HeadOptions());
        var testFeatures = Featurize(backbone, network, LabelledImages.FromFiles(ml, test, size), test.Count);
        var testRows = testFeatures.Select((f, i) => new FeatureRow { Label = classes[test[i].Label], Features = f }).ToList();
        return Accuracy(HeadTrainer.PredictScores(ml, labelToKey, head.Transformer, testRows, featureSize), test);
    }

    private static List<float[]> Featurize(BackboneOptions backbone, ModelProto network, IEnumerable<LabelledPixels> images, int count)
    {
        using var session = BackboneSession.Create(ResNet18Backbone.BuildGraph(backbone, batchSize: null, network), gpuDevice: null, out _);
        var features = new List<float[]>(count);
        var size = backbone.ImageSize;
        var featureSize = backbone.FeatureSize;
        foreach (var chunk in images.Chunk(FeatureBatch))
        {
            var input = chunk.SelectMany(i => i.Pixels).ToArray();
            using var tensor = OrtValue.CreateTensorValueFromMemory(input, [chunk.Length, 3, size, size]);
            using var runOptions = new RunOptions();
            using var outputs = session.Run(runOptions, [ColumnNames.Pixels], [tensor], [ColumnNames.Features]);
            var values = outputs[0].GetTensorDataAsSpan<float>();
            for (var i = 0; i < chunk.Length; i++)
            {
                features.Add(values.Slice(i * featureSize, featureSize).ToArray());
            }
        }

        return features;
    }

    private static double Accuracy(IReadOnlyList<float[]> scores, List<(string Path, int Label)> files) =>
        files.Where((f, i) => Array.IndexOf(scores[i], scores[i].Max()) == f.Label).Count() / (double)files.Count;

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed class Printer(TextWriter output) : IProgress<FineTuneEpoch>
    {
        public void Report(FineTuneEpoch e) => output.WriteLine(Invariant(
            $"epoch {e.Epoch,2}: train loss {e.TrainLoss:F4}  validation loss {e.ValidationLoss:F4} accuracy {e.ValidationAccuracy:F4}  lr {e.LearningRate:G3}  {e.ImagesPerSecond:F0} images/s  {e.Seconds:F0} s"));
    }
}
