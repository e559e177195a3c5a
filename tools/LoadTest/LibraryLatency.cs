using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
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
/// its decode, the ML.NET chain on a decoded image, and the backbone graph alone in an ONNX Runtime session.
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
        var pixels = new DenseTensor<float>(
            Enumerable.Range(0, 3 * manifest.ImageSize * manifest.ImageSize).Select(_ => random.NextSingle() * 255).ToArray(),
            [1, 3, manifest.ImageSize, manifest.ImageSize]);
        var inputs = new[] { NamedOnnxValue.CreateFromTensor(ColumnNames.Pixels, pixels) };

        output.WriteLine($"{options.ImagePath} ({bytes.Length} bytes, {decoded.Width}x{decoded.Height}), model {manifest.Backbone} at {manifest.ImageSize}px, features {manifest.Features}, {Environment.ProcessorCount} cores");
        output.WriteLine("| stage | calls | p50 ms | p99 ms | mean ms |");
        output.WriteLine("|---|--:|--:|--:|--:|");
        Row("ImageClassifier.Predict(bytes): decode + chain + ranking", () => classifier.Predict(bytes));
        Row("ImageDecoder.Decode only", () => ImageDecoder.Decode(bytes, options.ImagePath).Dispose());
        Row("ImageClassifier.Scores(decoded image): resize, pixels, backbone, head", () => classifier.Scores(decoded));
        Row("backbone graph alone, batch 1 (InferenceSession.Run on a ready tensor)", () => backbone.Run(inputs).Dispose());
        return 0;

        void Row(string stage, Action call)
        {
            var latencies = new Latencies(Time(options.Calls, call));
            output.WriteLine($"| {stage} | {latencies.Count} | {Latencies.Ms(latencies.Percentile(50))} | {Latencies.Ms(latencies.Percentile(99))} | {Latencies.Ms(latencies.Mean)} |");
        }
    }

    private static double[] Time(int calls, Action call)
    {
        for (var i = 0; i < LibraryLatencyOptions.WarmUpCalls; i++)
        {
            call();
        }

        var milliseconds = new double[calls];
        for (var i = 0; i < calls; i++)
        {
            var start = Stopwatch.GetTimestamp();
            call();
            milliseconds[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        return milliseconds;
    }
}
