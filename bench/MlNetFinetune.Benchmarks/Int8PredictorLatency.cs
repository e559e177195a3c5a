using System.Diagnostics;
using System.Globalization;
using MlNetFinetune.Data;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// The Predictor's latency with an fp32 and an int8 model.zip of the same data: both loaded as the Predictor loads
/// them (<see cref="ImageClassifier"/>, one engine), each image file predicted by one model and then the other, so
/// that other work on the shared machine weighs on both alike; p50, p90 and the int8 / fp32 ratio.
/// </summary>
internal static class Int8PredictorLatency
{
    private const int WarmUpCalls = 50;

    public static int Run(string[] args, TextWriter output)
    {
        string? fp32 = null, int8 = null, images = null;
        var calls = 200;
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new UserInputException($"{args[i]}: missing value");
            switch (args[i])
            {
                case "--fp32": fp32 = Value(); break;
                case "--int8": int8 = Value(); break;
                case "--images": images = Value(); break;
                case "--calls":
                    calls = int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
                        ? n
                        : throw new UserInputException($"--calls {args[i]}: expected a positive whole number");
                    break;
                default:
                    throw new UserInputException($"{args[i]}: unknown option (--fp32 <model.zip> --int8 <model.zip> --images <folder> [--calls 200])");
            }
        }

        if (fp32 is null || int8 is null || images is null)
        {
            throw new UserInputException("int8-latency: --fp32 <model.zip> --int8 <model.zip> --images <folder> are required");
        }

        var files = ImageFolder.Scan(images, minimumClasses: 1).Images.Select(i => i.Path).Order(StringComparer.Ordinal).ToList();
        using var floatModel = ImageClassifier.Load(fp32, maxConcurrency: 1);
        using var int8Model = ImageClassifier.Load(int8, maxConcurrency: 1);
        floatModel.WarmUp();
        int8Model.WarmUp();
        for (var i = 0; i < WarmUpCalls; i++)
        {
            floatModel.Predict(files[i % files.Count]);
            int8Model.Predict(files[i % files.Count]);
        }

        var floatTimes = new List<double>(calls);
        var int8Times = new List<double>(calls);
        for (var i = 0; i < calls; i++)
        {
            var file = files[(WarmUpCalls + i) % files.Count];
            floatTimes.Add(Time(() => floatModel.Predict(file)));
            int8Times.Add(Time(() => int8Model.Predict(file)));
        }

        output.WriteLine(Invariant($"{calls} files of {images}, taking turns; {Environment.ProcessorCount} cores; load average {File.ReadAllText("/proc/loadavg").Trim()}"));
        output.WriteLine(Invariant($"fp32 {fp32} ({new FileInfo(fp32).Length / 1e6:F1} MB), int8 {int8} ({new FileInfo(int8).Length / 1e6:F1} MB)"));
        output.WriteLine(Invariant(
            $"ImageClassifier.Predict(file), ms: p50 fp32 {Percentile(floatTimes, 0.5):F2}, int8 {Percentile(int8Times, 0.5):F2}, ratio {Percentile(int8Times, 0.5) / Percentile(floatTimes, 0.5):F2}; p90 fp32 {Percentile(floatTimes, 0.9):F2}, int8 {Percentile(int8Times, 0.9):F2}"));
        return 0;
    }

    private static double Time(Action action)
    {
        var start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private static double Percentile(List<double> values, double quantile)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(quantile * sorted.Count) - 1, 0, sorted.Count - 1)];
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
