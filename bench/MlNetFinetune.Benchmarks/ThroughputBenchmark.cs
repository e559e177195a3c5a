using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// One run, the same images throughout: the backbone alone on pre-made tensors, the Trainer's featurization of real
/// files, their ratio, the Predictor's single-image latency next to the backbone's own batch-1 time, the Predictor
/// program's cold start and this process's peak memory.
/// </summary>
public static class ThroughputBenchmark
{
    public static int Run(BenchmarkOptions options, TextWriter output)
    {
        var backbone = new BackboneOptions(options.ImageSize, options.Features);
        backbone.Validate();
        var folder = ImageFolder.Scan(options.DataFolder);
        var images = folder.Images.GroupBy(i => i.Label)
            .SelectMany(g => g.Select((image, index) => (image, index)))
            .OrderBy(p => p.index).ThenBy(p => p.image.Label, StringComparer.Ordinal)
            .Select(p => p.image).Take(options.Images).ToList();
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-bench-").FullName;
        try
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{images.Count} images from {options.DataFolder}; backbone {backbone.Describe()}, batch {options.BatchSize}, {Environment.ProcessorCount} cores, {(options.GpuDevice is int g ? $"GPU {g}" : "CPU")}"));
            var graph = ResNet18Backbone.BuildGraph(backbone, batchSize: null);
            var (rawBefore, batchOneBefore, fallback) = MeasureBackbone(graph, backbone, images.Count, options);
            if (fallback is not null)
            {
                output.WriteLine(fallback);
            }

            var ml = new MLContext(1);
            using var store = FeatureStore.Open(ml, scratch, new ResNet18Backbone(backbone), new FeaturizationOptions(options.BatchSize, GpuDevice: options.GpuDevice));
            var featurization = store.Featurize(images);
            var featurizationRate = featurization.ImagesPerSecond;
            var chainRate = MeasureChainFeaturization(ml, backbone, images, scratch);

            // The backbone is measured before and after the featurization and the better figures are kept, so the
            // ratios below are not flattered by a slow first measurement.
            var (rawAfter, batchOneAfter, _) = MeasureBackbone(graph, backbone, images.Count, options);
            var rawRate = Math.Max(rawBefore, rawAfter);
            var batchOneMs = Math.Min(batchOneBefore, batchOneAfter);

            var model = TrainModel(images, backbone, scratch);
            var (p50, p99) = MeasureLatency(model, images, options.LatencyRuns);
            var coldStart = MeasureColdStart(model, images[0].Path);

            var rows = new List<(string, string)>
            {
                ("backbone alone (ONNX Runtime, pre-made tensors)", Invariant($"{rawRate:F1} images/s")),
                ("featurization of real files (decode, resize, pixels, backbone, cache write)", Invariant($"{featurizationRate:F1} images/s")),
                ("featurization / backbone", Invariant($"{featurizationRate / rawRate:F2}")),
                ("before: ML.NET chain row by row (decode, resize, pixels, backbone batch 1)", Invariant($"{chainRate:F1} images/s ({chainRate / rawRate:F2} of the backbone)")),
                ("backbone batch-1 latency p50", Invariant($"{batchOneMs:F1} ms")),
                ("Predictor library latency p50 / p99 (file to top-3)", Invariant($"{p50:F1} / {p99:F1} ms")),
                ("Predictor p50 / backbone batch-1 p50", Invariant($"{p50 / batchOneMs:F2}")),
                ("Predictor cold start (process start to first prediction)", coldStart is double c ? Invariant($"{c:F2} s") : "not measured (Predictor program not found)"),
                ("peak memory of this process (VmHWM)", Invariant($"{PeakMemoryMegabytes():F0} MB")),
            };
            var width = rows.Max(r => r.Item1.Length);
            foreach (var (name, value) in rows)
            {
                output.WriteLine($"{name.PadRight(width)}  {value}");
            }

            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static (double Rate, double BatchOneMilliseconds, string? Fallback) MeasureBackbone(byte[] graph, BackboneOptions backbone, int images, BenchmarkOptions options)
    {
        using var session = BackboneSession.Create(graph, options.GpuDevice, out var fallback);
        var side = backbone.ImageSize;
        var random = new Random(1);
        OrtValue Tensor(int batch)
        {
            var values = new float[batch * 3 * side * side];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = random.Next(256);
            }

            return OrtValue.CreateTensorValueFromMemory(values, [batch, 3, side, side]);
        }

        using var runOptions = new RunOptions();
        using var batchTensor = Tensor(options.BatchSize);
        using var oneTensor = Tensor(1);
        void RunOnce(OrtValue input)
        {
            using var outputs = session.Run(runOptions, [ColumnNames.Pixels], [input], [ColumnNames.Features]);
        }

        for (var warmUp = 0; warmUp < 3; warmUp++)
        {
            RunOnce(batchTensor);
            RunOnce(oneTensor);
        }

        var batches = Math.Max(1, images / options.BatchSize);
        var clock = Stopwatch.StartNew();
        for (var b = 0; b < batches; b++)
        {
            RunOnce(batchTensor);
        }

        var rate = batches * options.BatchSize / clock.Elapsed.TotalSeconds;
        var single = new List<double>();
        for (var r = 0; r < Math.Min(100, options.LatencyRuns); r++)
        {
            clock.Restart();
            RunOnce(oneTensor);
            single.Add(clock.Elapsed.TotalMilliseconds);
        }

        return (rate, Percentile(single, 0.5), fallback);
    }

    /// <summary>The path the bulk featurizer replaced: the saved chain's own transforms, one PredictionEngine call per image.</summary>
    private static double MeasureChainFeaturization(MLContext ml, BackboneOptions backbone, IReadOnlyList<ImageRecord> images, string scratch)
    {
        var graph = Path.Combine(scratch, "chain.onnx");
        File.WriteAllBytes(graph, ResNet18Backbone.BuildGraph(backbone, batchSize: 1));
        var chain = ImageClassificationChain.Featurizer(ml, graph, backbone.ImageSize).Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
        using var engine = ml.Model.CreatePredictionEngine<ImageInput, FeaturesRow>(chain);
        using (var first = ImageDecoder.Decode(File.ReadAllBytes(images[0].Path), images[0].Path))
        {
            engine.Predict(new ImageInput { Image = first });
        }

        var clock = Stopwatch.StartNew();
        foreach (var image in images)
        {
            using var decoded = ImageDecoder.Decode(File.ReadAllBytes(image.Path), image.Path);
            engine.Predict(new ImageInput { Image = decoded });
        }

        return images.Count / clock.Elapsed.TotalSeconds;
    }

    private static string TrainModel(IReadOnlyList<ImageRecord> images, BackboneOptions backbone, string scratch)
    {
        // A folder of links to the benchmark's images, so the model trains on exactly them (their features are cached).
        var data = Path.Combine(scratch, "data");
        foreach (var image in images)
        {
            var folder = Directory.CreateDirectory(Path.Combine(data, image.Label)).FullName;
            File.CreateSymbolicLink(Path.Combine(folder, Path.GetFileName(image.Path)), image.Path);
        }

        var options = new TrainingOptions(data, OutputFolder: Path.Combine(scratch, "model"), Workspace: scratch)
        {
            ImageSize = backbone.ImageSize,
            Features = backbone.Features,
        };
        return new ImageClassifierTrainer(options).Train().ModelPath;
    }

    private static (double P50, double P99) MeasureLatency(string model, IReadOnlyList<ImageRecord> images, int runs)
    {
        using var classifier = ImageClassifier.Load(model);
        classifier.WarmUp();
        var times = new List<double>();
        var clock = new Stopwatch();
        for (var r = 0; r < runs; r++)
        {
            clock.Restart();
            classifier.Predict(images[r % images.Count].Path);
            times.Add(clock.Elapsed.TotalMilliseconds);
        }

        return (Percentile(times, 0.5), Percentile(times, 0.99));
    }

    private static double? MeasureColdStart(string model, string image)
    {
        var predictor = Path.Combine(AppContext.BaseDirectory, "mlnet-finetune-predict.dll");
        if (!File.Exists(predictor))
        {
            return null;
        }

        var times = new List<double>();
        for (var run = 0; run < 3; run++)
        {
            var clock = Stopwatch.StartNew();
            using var process = Process.Start(new ProcessStartInfo("dotnet", [predictor, "--model", model, image])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"Predictor exited with {process.ExitCode}: {process.StandardError.ReadToEnd()}");
            }

            times.Add(clock.Elapsed.TotalSeconds);
        }

        return Percentile(times, 0.5);
    }

    private static double Percentile(List<double> values, double quantile)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(quantile * sorted.Count) - 1)];
    }

    private static double PeakMemoryMegabytes()
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null
            ? Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0
            : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed class FeaturesRow
    {
        [Microsoft.ML.Data.ColumnName(ColumnNames.Features)]
        public float[] Features { get; set; } = [];
    }
}
