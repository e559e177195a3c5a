using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.LoadTest;

public sealed record LibraryLatencyOptions(string ModelPath, string ImagePath, int Calls)
{
    /// <summary>Untimed calls before each measurement: lazy initialisation and tiered JIT make the first hundred or so slower.</summary>
    public const int WarmUpCalls = 100;

    public static LibraryLatencyOptions From(Arguments args)
    {
        var options = new LibraryLatencyOptions(args.Required("--model"), args.Required("--image"), args.Int("--calls", 200));
        args.EnsureAllUsed();
        return options;
    }
}

/// <summary>
/// Where the time of one in-process prediction goes: the whole <see cref="ImageClassifier.Predict(byte[], int, string)"/>,
/// its decode, the scores of a decoded image, ML.NET's own row path over the whole saved chain, and the backbone graph
/// alone on a ready tensor. All rows are timed in turn, call by call, so that
/// other work on the machine weighs on every row alike; the ratio of the first two is the figure the README states.
/// </summary>
public static class LibraryLatency
{
    public static int Run(LibraryLatencyOptions options, TextWriter output)
    {
        var bytes = File.ReadAllBytes(options.ImagePath);
        using var classifier = ImageClassifier.Load(options.ModelPath, maxConcurrency: 1);
        classifier.WarmUp();
        using var decoded = ImageDecoder.Decode(bytes, options.ImagePath);
        var manifest = classifier.Manifest;
        using var backbone = BackboneSession.Create(
            ResNet18Backbone.BuildGraph(new BackboneOptions(manifest.ImageSize, manifest.Features), batchSize: 1), gpuDevice: null, out _);
        var random = new Random(1);
        var pixels = Enumerable.Range(0, 3 * manifest.ImageSize * manifest.ImageSize).Select(_ => random.NextSingle() * 255).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [1, 3, manifest.ImageSize, manifest.ImageSize]);
        var features = new float[manifest.FeatureSize];
        using var output1 = OrtValue.CreateTensorValueFromMemory(features, [manifest.FeatureSize]);
        using var runOptions = new RunOptions();
        var ml = new MLContext();
        using var chain = (IDisposable)ml.Model.Load(options.ModelPath, out _);
        using var chainEngine = ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>((ITransformer)chain);

        output.WriteLine($"{options.ImagePath} ({bytes.Length} bytes, {decoded.Width}x{decoded.Height}), model {manifest.Backbone} at {manifest.ImageSize}px, features {manifest.Features}, {Environment.ProcessorCount} cores");
        output.WriteLine("| stage | calls | p50 ms | p99 ms | mean ms |");
        output.WriteLine("|---|--:|--:|--:|--:|");
        var timings = RoundRobin(options.Calls,
            () => classifier.Predict(bytes),
            () => backbone.Run(runOptions, [ColumnNames.Pixels], [input], [ColumnNames.Features], [output1]),
            () => ImageDecoder.Decode(bytes, options.ImagePath).Dispose(),
            () => classifier.Scores(decoded),
            () => chainEngine.Predict(new ImageInput { Image = decoded }));
        var (predict, bare) = (timings[0], timings[1]);
        Row(output, "ImageClassifier.Predict(bytes): decode + preprocessing + backbone + head + ranking", predict);
        Row(output, "backbone graph alone, batch 1 (InferenceSession.Run on a ready tensor)", bare);
        Row(output, "ImageDecoder.Decode only", timings[2]);
        Row(output, "ImageClassifier.Scores(decoded image)", timings[3]);
        Row(output, "ML.NET PredictionEngine over the whole saved chain (the previous Predictor)", timings[4]);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Predict p50 / backbone p50 = {predict.Percentile(50) / bare.Percentile(50):F3} (target <= 1.1); mean ratio {predict.Mean / bare.Mean:F3}"));
        return 0;
    }

    private static void Row(TextWriter output, string stage, Latencies latencies) =>
        output.WriteLine($"| {stage} | {latencies.Count} | {Latencies.Ms(latencies.Percentile(50))} | {Latencies.Ms(latencies.Percentile(99))} | {Latencies.Ms(latencies.Mean)} |");

    /// <summary>
    /// Times each call <paramref name="calls"/> times, taking them in turn (one of each, then again), after warming
    /// them all up: other work on the machine then weighs on every row alike, and their ratios hold.
    /// </summary>
    private static Latencies[] RoundRobin(int calls, params Action[] actions)
    {
        for (var i = 0; i < LibraryLatencyOptions.WarmUpCalls; i++)
        {
            foreach (var action in actions)
            {
                action();
            }
        }

        var milliseconds = actions.Select(_ => new double[calls]).ToArray();
        for (var i = 0; i < calls; i++)
        {
            for (var a = 0; a < actions.Length; a++)
            {
                var start = Stopwatch.GetTimestamp();
                actions[a]();
                milliseconds[a][i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
        }

        return [.. milliseconds.Select(m => new Latencies(m))];
    }
}
