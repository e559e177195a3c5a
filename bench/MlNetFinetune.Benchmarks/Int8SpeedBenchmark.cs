using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// Float against int8 backbone, side by side in one run, at each input size: the backbone alone on pre-made tensors,
/// featurization of real files (BulkFeaturizer's route, decode and resize included) next to the decode half alone,
/// the Predictor's route for one image (ML.NET chain with the batch-1 graph), and the saved graph's size. The two
/// precisions take turns (batch by batch, pass by pass, image by image) and every round is printed, because the
/// machine is shared: besides wall-clock rates, the best single turn of each precision and the CPU time per image
/// (all threads of this process) are given, both less sensitive to other processes than wall-clock averages.
/// </summary>
internal static class Int8SpeedBenchmark
{
    public static int Run(Int8BenchmarkOptions options, TextWriter output)
    {
        var folder = ImageFolder.Scan(options.DataFolder);
        var images = folder.Images.GroupBy(i => i.Label)
            .SelectMany(g => g.Select((image, index) => (image, index)))
            .OrderBy(p => p.index).ThenBy(p => p.image.Label, StringComparer.Ordinal)
            .Select(p => p.image.Path).ToList();
        var quantization = options.CalibrationsOrDefault[0];
        output.WriteLine(Invariant($"{options.DataFolder}; {Environment.ProcessorCount} cores; load average {LoadAverage()}"));
        output.WriteLine(Invariant($"int8: {quantization.Describe()}; {options.Rounds} rounds, float and int8 taking turns; ratios are int8 over float speed"));
        foreach (var size in options.SizesOrDefault)
        {
            // Larger inputs cost more per image: a quarter of the images keeps each size's turns about as long.
            var count = size <= 64 ? options.Images : Math.Max(16, options.Images / 4);
            MeasureSize(size, folder, images.Take(count).ToList(), quantization, options, output);
        }

        output.WriteLine(Invariant($"load average at the end {LoadAverage()}"));
        return 0;
    }

    private sealed record Sample(double Seconds, double CpuSeconds, int Images)
    {
        public double Rate => Images / Seconds;

        public static Sample Sum(IEnumerable<Sample> samples) =>
            samples.Aggregate(new Sample(0, 0, 0), (a, b) => new Sample(a.Seconds + b.Seconds, a.CpuSeconds + b.CpuSeconds, a.Images + b.Images));
    }

    private static void MeasureSize(int size, ImageFolder folder, List<string> images, QuantizationOptions quantization, Int8BenchmarkOptions options, TextWriter output)
    {
        var backbone = new BackboneOptions(size, size <= 64 ? "s2g2+s3g2+s4" : "s4");
        var batch = Int8BenchmarkOptions.BatchSizeFor(size);
        var ml = new MLContext(1);
        var floatGraph = ResNet18Backbone.BuildGraph(backbone, batchSize: null);
        var floatOne = ResNet18Backbone.BuildGraph(backbone, batchSize: 1);
        var clock = Stopwatch.StartNew();
        var pixels = CalibrationSample.Pixels(ml, CalibrationSample.Choose(folder.Images, quantization.CalibrationImages), size);
        var decodeSeconds = clock.Elapsed.TotalSeconds;
        var ranges = Int8Quantizer.Calibrate(floatGraph, size, pixels, quantization);
        var calibrateSeconds = clock.Elapsed.TotalSeconds - decodeSeconds;
        var int8Graph = Int8Quantizer.Quantize(floatGraph, ranges);
        var int8One = Int8Quantizer.Quantize(floatOne, ranges);
        var quantizeSeconds = clock.Elapsed.TotalSeconds - decodeSeconds - calibrateSeconds;

        output.WriteLine();
        output.WriteLine(Invariant($"== {backbone.Describe()}, batch {batch}, {images.Count} images per turn; load average {LoadAverage()} =="));
        output.WriteLine(Invariant($"calibration on {pixels.Count} images: decode {decodeSeconds:F1} s, calibrate {calibrateSeconds:F1} s, quantize both graphs {quantizeSeconds:F1} s"));

        var (aloneRounds, aloneBest) = BackboneAlone(floatGraph, int8Graph, backbone, batch, images.Count, options.Rounds, threads: null);
        Print(output, "backbone alone (sessions take turns batch by batch)", aloneRounds, aloneBest);
        var (singleRounds, singleBest) = BackboneAlone(floatGraph, int8Graph, backbone, batch, images.Count / 2, options.Rounds, threads: 1);
        Print(output, "backbone alone on 1 thread (no waiting on a preempted partner thread)", singleRounds, singleBest);

        var featurizer = new FileFeaturizer(backbone, batch);
        var workers = FileFeaturizer.DefaultWorkers;
        // One session on all cores with ONNX Runtime's spinning threads (the Trainer's fp32 layout) and with sleeping
        // ones (its int8 layout: the cores are left to the decode workers), then one 1-thread session per core.
        FileFeaturizer.Layout[] layouts = [new(), new(Spinning: false), new(Sessions: Environment.ProcessorCount, ThreadsPerSession: 1)];
        foreach (var layout in layouts)
        {
            var files = new List<(Sample Float, Sample Int8)>();
            for (var round = 0; round < options.Rounds; round++)
            {
                Sample Pass(byte[] graph) => Time(() => featurizer.Run(graph, images, workers, layout).Features.Length);
                files.Add(round % 2 == 0 ? (Pass(floatGraph), Pass(int8Graph)) : Swap(Pass(int8Graph), Pass(floatGraph)));
            }

            Print(output, Invariant($"real files, {workers} decode worker, {layout} (turns pass by pass)"), files, (files.MaxBy(f => f.Float.Rate).Float, files.MaxBy(f => f.Int8.Rate).Int8));
        }

        var decodeOne = Time(() => { featurizer.DecodeOnly(images, workers); return images.Count; });
        var decodeAll = Time(() => { featurizer.DecodeOnly(images, Environment.ProcessorCount); return images.Count; });
        output.WriteLine(Invariant(
            $"  decode half alone (read, hash, decode, resize, pixels): {decodeOne.Rate:F0} images/s on {workers} thread(s) ({1000 * decodeOne.CpuSeconds / decodeOne.Images:F2} CPU ms/image), {decodeAll.Rate:F0} on {Environment.ProcessorCount}"));

        var (floatLatency, int8Latency) = ChainLatency(ml, backbone, floatOne, int8One, images, options.LatencyRuns);
        output.WriteLine(
            Invariant($"  Predictor route, file to features (ML.NET chain, batch-1 graph), ms: p50 float {Percentile(floatLatency, 0.5):F2}, int8 {Percentile(int8Latency, 0.5):F2}, ratio {Percentile(int8Latency, 0.5) / Percentile(floatLatency, 0.5):F2}; ") +
            Invariant($"fastest float {floatLatency.Min():F2}, int8 {int8Latency.Min():F2}, ratio {int8Latency.Min() / floatLatency.Min():F2}; p90 float {Percentile(floatLatency, 0.9):F2}, int8 {Percentile(int8Latency, 0.9):F2}"));

        output.WriteLine(Invariant(
            $"  batch-1 graph (what model.zip holds): float {floatOne.Length / 1e6:F1} MB ({Deflated(floatOne) / 1e6:F1} MB deflated), int8 {int8One.Length / 1e6:F1} MB ({Deflated(int8One) / 1e6:F1} MB deflated)"));
    }

    private static (Sample Float, Sample Int8) Swap(Sample int8, Sample @float) => (@float, int8);

    private static void Print(TextWriter output, string what, List<(Sample Float, Sample Int8)> rounds, (Sample Float, Sample Int8) best)
    {
        var ratios = rounds.Select(r => r.Int8.Rate / r.Float.Rate).Order().ToList();
        var floatTotal = Sample.Sum(rounds.Select(r => r.Float));
        var int8Total = Sample.Sum(rounds.Select(r => r.Int8));
        output.WriteLine(Invariant($"  {what}, images/s per round: float {Join(rounds.Select(r => r.Float.Rate))}; int8 {Join(rounds.Select(r => r.Int8.Rate))}"));
        output.WriteLine(
            Invariant($"    speed-up per round {Join(rounds.Select(r => r.Int8.Rate / r.Float.Rate), "F2")} (median {ratios[ratios.Count / 2]:F2}, range {ratios[0]:F2} to {ratios[^1]:F2}); ") +
            Invariant($"best turn {best.Float.Rate:F1} vs {best.Int8.Rate:F1} images/s = {best.Int8.Rate / best.Float.Rate:F2}; ") +
            Invariant($"CPU ms/image float {1000 * floatTotal.CpuSeconds / floatTotal.Images:F2}, int8 {1000 * int8Total.CpuSeconds / int8Total.Images:F2} = {floatTotal.CpuSeconds / floatTotal.Images / (int8Total.CpuSeconds / int8Total.Images):F2}"));
    }

    /// <summary>
    /// Both sessions stay open and take turns batch by batch, so that both precisions see the same share of a shared
    /// machine; each round is <paramref name="images"/> images per precision. Also returns each precision's fastest batch.
    /// <paramref name="threads"/> null runs the Trainer's sessions (all cores); 1 gives the compute cost without
    /// threads waiting for each other.
    /// </summary>
    private static (List<(Sample Float, Sample Int8)> Rounds, (Sample Float, Sample Int8) Best) BackboneAlone(
        byte[] floatGraph, byte[] int8Graph, BackboneOptions backbone, int batch, int images, int rounds, int? threads)
    {
        InferenceSession Create(byte[] graph)
        {
            if (threads is not int count)
            {
                return BackboneSession.Create(graph, null, out _);
            }

            using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = count, InterOpNumThreads = 1 };
            return new InferenceSession(graph, options);
        }

        using var floatSession = Create(floatGraph);
        using var int8Session = Create(int8Graph);
        var side = backbone.ImageSize;
        var random = new Random(1);
        var values = new float[batch * 3 * side * side];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = random.Next(256);
        }

        using var tensor = OrtValue.CreateTensorValueFromMemory(values, [batch, 3, side, side]);
        using var runOptions = new RunOptions();
        Sample Run(InferenceSession session) => Time(() =>
        {
            using var outputs = session.Run(runOptions, [ColumnNames.Pixels], [tensor], [ColumnNames.Features]);
            return batch;
        });

        for (var warmUp = 0; warmUp < 2; warmUp++)
        {
            Run(floatSession);
            Run(int8Session);
        }

        var batches = Math.Max(1, images / batch);
        var results = new List<(Sample, Sample)>();
        var floatBest = new Sample(double.MaxValue, 0, batch);
        var int8Best = floatBest;
        for (var round = 0; round < rounds; round++)
        {
            var floatSamples = new List<Sample>();
            var int8Samples = new List<Sample>();
            for (var b = 0; b < batches; b++)
            {
                floatSamples.Add(Run(floatSession));
                int8Samples.Add(Run(int8Session));
            }

            floatBest = floatSamples.Append(floatBest).MinBy(s => s.Seconds)!;
            int8Best = int8Samples.Append(int8Best).MinBy(s => s.Seconds)!;
            results.Add((Sample.Sum(floatSamples), Sample.Sum(int8Samples)));
        }

        return (results, (floatBest, int8Best));
    }

    /// <summary>
    /// What the Predictor does per image, short of the head (a few thousand multiply-adds): read the file, decode, and run
    /// the saved chain's featurizer (resize, pixels, ApplyOnnxModel on the batch-1 graph). The two precisions take turns image by image.
    /// </summary>
    private static (List<double> Float, List<double> Int8) ChainLatency(
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
            double Latency(PredictionEngine<ImageInput, FeaturesRow> engine, string path) => 1000 * Time(() =>
            {
                using var image = ImageDecoder.Decode(File.ReadAllBytes(path), path);
                engine.Predict(new ImageInput { Image = image });
                return 1;
            }).Seconds;

            Latency(floatEngine, images[0]);
            Latency(int8Engine, images[0]);
            var floatTimes = new List<double>();
            var int8Times = new List<double>();
            for (var r = 0; r < runs; r++)
            {
                var path = images[r % images.Count];
                if (r % 2 == 0)
                {
                    floatTimes.Add(Latency(floatEngine, path));
                    int8Times.Add(Latency(int8Engine, path));
                }
                else
                {
                    int8Times.Add(Latency(int8Engine, path));
                    floatTimes.Add(Latency(floatEngine, path));
                }
            }

            return (floatTimes, int8Times);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static Sample Time(Func<int> work)
    {
        using var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var images = work();
        var seconds = clock.Elapsed.TotalSeconds;
        process.Refresh();
        return new Sample(seconds, (process.TotalProcessorTime - cpu).TotalSeconds, images);
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

    private static string Join(IEnumerable<double> values, string format = "F1") =>
        string.Join(" / ", values.Select(v => v.ToString(format, CultureInfo.InvariantCulture)));

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed class FeaturesRow
    {
        [Microsoft.ML.Data.ColumnName(ColumnNames.Features)]
        public float[] Features { get; set; } = [];
    }
}
