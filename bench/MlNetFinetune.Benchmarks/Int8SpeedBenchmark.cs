using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// Float against int8 backbone, side by side in one run, at each input size: the backbone alone on pre-made tensors,
/// featurization of real files (BulkFeaturizer's route, decode and resize included) next to the decode half alone,
/// the Predictor's route for one image (ML.NET chain with the batch-1 graph), and the saved graph's size. Every timing
/// is repeated with the two precisions alternating, and each round's ratio is printed, because the machine is shared.
/// </summary>
internal static class Int8SpeedBenchmark
{
    public static int Run(Int8BenchmarkOptions options, TextWriter output)
    {
        var folder = ImageFolder.Scan(options.DataFolder);
        var images = folder.Images.GroupBy(i => i.Label)
            .SelectMany(g => g.Select((image, index) => (image, index)))
            .OrderBy(p => p.index).ThenBy(p => p.image.Label, StringComparer.Ordinal)
            .Select(p => p.image.Path).Take(options.Images).ToList();
        var quantization = options.CalibrationsOrDefault[0];
        output.WriteLine(Invariant($"{images.Count} files from {options.DataFolder}; {Environment.ProcessorCount} cores; load average {File.ReadAllText("/proc/loadavg").Trim()}"));
        output.WriteLine(Invariant($"int8: {quantization.Describe()}; {options.Rounds} rounds, float and int8 alternating; ratios are int8 / float"));
        foreach (var size in options.SizesOrDefault)
        {
            MeasureSize(size, folder, images, quantization, options, output);
        }

        output.WriteLine(Invariant($"load average at the end {File.ReadAllText("/proc/loadavg").Trim()}"));
        return 0;
    }

    private static void MeasureSize(int size, ImageFolder folder, List<string> images, QuantizationOptions quantization, Int8BenchmarkOptions options, TextWriter output)
    {
        var backbone = new BackboneOptions(size, size <= 64 ? "s2g2+s3g2+s4" : "s4");
        var batch = Int8BenchmarkOptions.BatchSizeFor(size);
        var ml = new MLContext(1);
        var floatGraph = ResNet18Backbone.BuildGraph(backbone, batchSize: null);
        var floatOne = ResNet18Backbone.BuildGraph(backbone, batchSize: 1);
        var clock = Stopwatch.StartNew();
        var calibrationPaths = CalibrationSample.Choose(folder.Images, quantization.CalibrationImages).Select(i => i.Path);
        var pixels = CalibrationSample.Pixels(ml, calibrationPaths, size);
        var decodeSeconds = clock.Elapsed.TotalSeconds;
        var ranges = Int8Quantizer.Calibrate(floatGraph, size, pixels, quantization);
        var calibrateSeconds = clock.Elapsed.TotalSeconds - decodeSeconds;
        var int8Graph = Int8Quantizer.Quantize(floatGraph, ranges);
        var int8One = Int8Quantizer.Quantize(floatOne, ranges);
        var quantizeSeconds = clock.Elapsed.TotalSeconds - decodeSeconds - calibrateSeconds;

        output.WriteLine();
        output.WriteLine(Invariant($"== {backbone.Describe()}, batch {batch} =="));
        output.WriteLine(Invariant($"calibration on {pixels.Count} images: decode {decodeSeconds:F1} s, calibrate {calibrateSeconds:F1} s, quantize both graphs {quantizeSeconds:F1} s"));

        var alone = BackboneAlone(floatGraph, int8Graph, backbone, batch, images.Count, options.Rounds);
        Print(output, "backbone alone (batches alternating), images/s", alone, higherIsFaster: true);

        var featurizer = new FileFeaturizer(backbone, batch);
        var workers = FileFeaturizer.DefaultWorkers;
        var files = Alternate(options.Rounds, graph => images.Count / featurizer.Run(graph, images, workers).Elapsed.TotalSeconds, floatGraph, int8Graph);
        Print(output, Invariant($"real files ({workers} decode worker), images/s"), files, higherIsFaster: true);
        var decodeOne = featurizer.DecodeOnly(images, workers);
        var decodeAll = featurizer.DecodeOnly(images, Environment.ProcessorCount);
        output.WriteLine(Invariant($"  decode half alone (read, hash, decode, resize, pixels): {decodeOne:F0} images/s on {workers} thread(s), {decodeAll:F0} on {Environment.ProcessorCount}"));

        var (floatLatency, int8Latency) = ChainLatency(ml, backbone, floatOne, int8One, images, options.LatencyRuns);
        output.WriteLine(Invariant($"  Predictor route, one file to features (ML.NET chain, batch-1 graph), p50 ms: float {floatLatency.P50:F2}, int8 {int8Latency.P50:F2}, ratio {int8Latency.P50 / floatLatency.P50:F2}; p90 float {floatLatency.P90:F2}, int8 {int8Latency.P90:F2}"));

        output.WriteLine(Invariant($"  batch-1 graph (what model.zip holds): float {floatOne.Length / 1e6:F1} MB ({Deflated(floatOne) / 1e6:F1} MB deflated), int8 {int8One.Length / 1e6:F1} MB ({Deflated(int8One) / 1e6:F1} MB deflated)"));
    }

    /// <summary>Runs <paramref name="measure"/> on both graphs each round, alternating which goes first.</summary>
    private static List<(double Float, double Int8)> Alternate(int rounds, Func<byte[], double> measure, byte[] floatGraph, byte[] int8Graph)
    {
        var results = new List<(double, double)>();
        for (var round = 0; round < rounds; round++)
        {
            if (round % 2 == 0)
            {
                var f = measure(floatGraph);
                results.Add((f, measure(int8Graph)));
            }
            else
            {
                var q = measure(int8Graph);
                results.Add((measure(floatGraph), q));
            }
        }

        return results;
    }

    private static void Print(TextWriter output, string what, List<(double Float, double Int8)> rounds, bool higherIsFaster)
    {
        var ratios = rounds.Select(r => higherIsFaster ? r.Int8 / r.Float : r.Float / r.Int8).ToList();
        output.WriteLine(Invariant($"  {what}: float {string.Join(" / ", rounds.Select(r => r.Float.ToString("F1", CultureInfo.InvariantCulture)))}; int8 {string.Join(" / ", rounds.Select(r => r.Int8.ToString("F1", CultureInfo.InvariantCulture)))}"));
        output.WriteLine(Invariant($"  speed-up per round {string.Join(" / ", ratios.Select(r => r.ToString("F2", CultureInfo.InvariantCulture)))} (range {ratios.Min():F2} to {ratios.Max():F2})"));
    }

    /// <summary>
    /// Both sessions stay open and take turns batch by batch, so that both precisions see the same share of a shared
    /// machine; each round is <paramref name="images"/> images per precision.
    /// </summary>
    private static List<(double Float, double Int8)> BackboneAlone(byte[] floatGraph, byte[] int8Graph, BackboneOptions backbone, int batch, int images, int rounds)
    {
        using var floatSession = BackboneSession.Create(floatGraph, null, out _);
        using var int8Session = BackboneSession.Create(int8Graph, null, out _);
        var side = backbone.ImageSize;
        var random = new Random(1);
        var values = new float[batch * 3 * side * side];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = random.Next(256);
        }

        using var tensor = OrtValue.CreateTensorValueFromMemory(values, [batch, 3, side, side]);
        using var runOptions = new RunOptions();
        var clock = new Stopwatch();
        double Time(InferenceSession session)
        {
            clock.Restart();
            using var _ = session.Run(runOptions, [ColumnNames.Pixels], [tensor], [ColumnNames.Features]);
            return clock.Elapsed.TotalSeconds;
        }

        for (var warmUp = 0; warmUp < 2; warmUp++)
        {
            Time(floatSession);
            Time(int8Session);
        }

        var batches = Math.Max(1, images / batch);
        var results = new List<(double, double)>();
        for (var round = 0; round < rounds; round++)
        {
            double floatSeconds = 0, int8Seconds = 0;
            for (var b = 0; b < batches; b++)
            {
                floatSeconds += Time(floatSession);
                int8Seconds += Time(int8Session);
            }

            results.Add((batches * batch / floatSeconds, batches * batch / int8Seconds));
        }

        return results;
    }

    /// <summary>
    /// What the Predictor does per image, short of the head (a few thousand multiply-adds): read the file, decode, and run
    /// the saved chain's featurizer (resize, pixels, ApplyOnnxModel on the batch-1 graph). The two precisions take turns image by image.
    /// </summary>
    private static ((double P50, double P90) Float, (double P50, double P90) Int8) ChainLatency(
        MLContext ml, BackboneOptions backbone, byte[] floatOne, byte[] int8One, List<string> images, int runs)
    {
        var scratch = Directory.CreateTempSubdirectory("mlnetfinetune-int8-bench-").FullName;
        try
        {
            PredictionEngine<ImageInput, FeaturesRow> Engine(byte[] graph, string name)
            {
                var path = Path.Combine(scratch, name);
                File.WriteAllBytes(path, graph);
                var chain = ImageClassificationChain.Featurizer(ml, path, backbone.ImageSize).Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
                return ml.Model.CreatePredictionEngine<ImageInput, FeaturesRow>(chain);
            }

            using var floatEngine = Engine(floatOne, "float.onnx");
            using var int8Engine = Engine(int8One, "int8.onnx");
            double Time(PredictionEngine<ImageInput, FeaturesRow> engine, string path)
            {
                var clock = Stopwatch.StartNew();
                using var image = ImageDecoder.Decode(File.ReadAllBytes(path), path);
                engine.Predict(new ImageInput { Image = image });
                return clock.Elapsed.TotalMilliseconds;
            }

            Time(floatEngine, images[0]);
            Time(int8Engine, images[0]);
            var floatTimes = new List<double>();
            var int8Times = new List<double>();
            for (var r = 0; r < runs; r++)
            {
                var path = images[r % images.Count];
                if (r % 2 == 0)
                {
                    floatTimes.Add(Time(floatEngine, path));
                    int8Times.Add(Time(int8Engine, path));
                }
                else
                {
                    int8Times.Add(Time(int8Engine, path));
                    floatTimes.Add(Time(floatEngine, path));
                }
            }

            return ((Percentile(floatTimes, 0.5), Percentile(floatTimes, 0.9)), (Percentile(int8Times, 0.5), Percentile(int8Times, 0.9)));
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static long Deflated(byte[] bytes)
    {
        using var buffer = new MemoryStream();
        using (var deflate = new DeflateStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
        {
            deflate.Write(bytes);
        }

        return buffer.Length;
    }

    private static double Percentile(List<double> values, double quantile)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(quantile * sorted.Count) - 1)];
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed class FeaturesRow
    {
        [Microsoft.ML.Data.ColumnName(ColumnNames.Features)]
        public float[] Features { get; set; } = [];
    }
}
