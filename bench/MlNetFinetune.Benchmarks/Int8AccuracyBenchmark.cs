using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// Held-out accuracy with float and with int8 features: the same images, the same train / validation split as the
/// Trainer (seed 1), the same head training (<see cref="HeadTrainer.Fit"/>); per quantization setting the accuracy, the
/// top-1 agreement with the float model, and how far the features moved.
/// </summary>
internal static class Int8AccuracyBenchmark
{
    public static int Run(Int8BenchmarkOptions options, TextWriter output)
    {
        if (options.TestFolder is null)
        {
            throw new UserInputException("int8-accuracy: --test <folder> with held-out images is required");
        }

        var data = ImageFolder.Scan(options.DataFolder);
        var test = ImageFolder.Scan(options.TestFolder, minimumClasses: 1).Images;
        var fromData = BackboneOptions.ChooseFor(DataProfile.Measure(data));
        var backbone = new BackboneOptions(options.ImageSize ?? fromData.ImageSize, options.Features ?? fromData.Features);
        backbone.Validate();
        var (train, validation) = StratifiedSplit.Split(data.Images, new TrainingOptions(options.DataFolder).ValidationFraction, seed: 2);
        List<ImageRecord> all = [.. train, .. validation, .. test];
        var paths = all.Select(i => i.Path).ToList();
        var batch = Int8BenchmarkOptions.BatchSizeFor(backbone.ImageSize);
        output.WriteLine(Invariant($"{train.Count} train, {validation.Count} validation, {test.Count} held-out; {backbone.Describe()}, batch {batch}; {Environment.ProcessorCount} cores; load average {File.ReadAllText("/proc/loadavg").Trim()}"));

        var featurizer = new FileFeaturizer(backbone, batch);
        var floatGraph = ResNet18Backbone.BuildGraph(backbone, batchSize: null);
        var (floatFeatures, floatElapsed) = featurizer.Run(floatGraph, paths, FileFeaturizer.DefaultWorkers);
        var reference = Evaluate(backbone, all, train.Count, validation.Count, floatFeatures);
        output.WriteLine(Invariant($"float: featurized {paths.Count / floatElapsed.TotalSeconds:F0} images/s; head {reference.HeadSeconds:F0} s (L2 {reference.L2}); held-out accuracy {reference.Accuracy:P2}"));

        foreach (var quantization in options.CalibrationsOrDefault)
        {
            var clock = Stopwatch.StartNew();
            var sample = CalibrationSample.Choose(train, quantization.CalibrationImages);
            var pixels = CalibrationSample.Pixels(new MLContext(1), sample, backbone.ImageSize);
            var ranges = Int8Quantizer.Calibrate(floatGraph, backbone.ImageSize, pixels, quantization);
            var int8Graph = Int8Quantizer.Quantize(floatGraph, ranges);
            var calibrationSeconds = clock.Elapsed.TotalSeconds;
            var (int8Features, int8Elapsed) = featurizer.Run(int8Graph, paths, FileFeaturizer.DefaultWorkers);
            var result = Evaluate(backbone, all, train.Count, validation.Count, int8Features);
            var agreement = result.Predicted.Zip(reference.Predicted, (a, b) => a == b).Count(same => same) / (double)test.Count;
            var (largest, scale, cosine) = Difference(floatFeatures, int8Features);
            output.WriteLine(Invariant(
                $"int8 {quantization.Describe()}: calibrated and quantized in {calibrationSeconds:F1} s; featurized {paths.Count / int8Elapsed.TotalSeconds:F0} images/s ({floatElapsed / int8Elapsed:F2}x); head {result.HeadSeconds:F0} s (L2 {result.L2})"));
            output.WriteLine(Invariant(
                $"  held-out accuracy {result.Accuracy:P2} ({(result.Accuracy - reference.Accuracy) * 100:+0.00;-0.00} points); top-1 agreement with float {agreement:P2}; largest |feature difference| {largest:G3} (largest float feature {scale:G3}); mean cosine {cosine:F5}"));
        }

        return 0;
    }

    private sealed record Outcome(double Accuracy, int[] Predicted, double HeadSeconds, float L2);

    private static Outcome Evaluate(BackboneOptions backbone, List<ImageRecord> all, int trainCount, int validationCount, float[]?[] features)
    {
        var ml = new MLContext(1);
        var rows = all.Select((image, i) => new FeatureRow { Label = image.Label, Features = features[i] ?? throw new InvalidDataException($"{image.Path}: did not decode") }).ToList();
        var trainRows = rows.Take(trainCount).ToList();
        var validationRows = rows.Skip(trainCount).Take(validationCount).ToList();
        var testRows = rows.Skip(trainCount + validationCount).ToList();
        var featureSize = backbone.FeatureSize;
        var labelToKey = ImageClassificationChain.LabelToKey(ml).Fit(FeatureRow.ToDataView(ml, trainRows, featureSize));
        var clock = Stopwatch.StartNew();
        var head = HeadTrainer.Fit(ml, labelToKey, trainRows, validationRows, featureSize, new HeadOptions());
        var seconds = clock.Elapsed.TotalSeconds;
        var scores = HeadTrainer.PredictScores(ml, labelToKey, head.Transformer, testRows, featureSize);
        var names = ClassNames(ml, labelToKey, trainRows, featureSize);
        var predicted = scores.Select(s => Array.IndexOf(s, s.Max())).ToArray();
        var correct = testRows.Where((row, i) => names[predicted[i]] == row.Label).Count();
        return new Outcome((double)correct / testRows.Count, predicted, seconds, head.L2Regularization);
    }

    private static (float Largest, float Scale, double MeanCosine) Difference(float[]?[] a, float[]?[] b)
    {
        float largest = 0, scale = 0;
        double cosine = 0;
        for (var i = 0; i < a.Length; i++)
        {
            var x = a[i]!;
            var y = b[i]!;
            double dot = 0, xx = 0, yy = 0;
            for (var j = 0; j < x.Length; j++)
            {
                largest = Math.Max(largest, Math.Abs(x[j] - y[j]));
                scale = Math.Max(scale, Math.Abs(x[j]));
                dot += (double)x[j] * y[j];
                xx += (double)x[j] * x[j];
                yy += (double)y[j] * y[j];
            }

            cosine += dot / Math.Sqrt(xx * yy);
        }

        return (largest, scale, cosine / a.Length);
    }

    private static List<string> ClassNames(MLContext ml, ITransformer labelToKey, List<FeatureRow> rows, int featureSize)
    {
        var schema = labelToKey.GetOutputSchema(FeatureRow.ToDataView(ml, rows.Take(1), featureSize).Schema);
        VBuffer<ReadOnlyMemory<char>> names = default;
        schema[ColumnNames.LabelKey].GetKeyValues(ref names);
        return [.. names.DenseValues().Select(n => n.ToString())];
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
