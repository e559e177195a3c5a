using System.Globalization;

namespace MlNetFinetune.Benchmarks;

/// <summary>What to measure on.</summary>
/// <param name="DataFolder">Image folder with class subfolders; its first images (round-robin over classes) are used.</param>
/// <param name="Images">How many images to featurize.</param>
/// <param name="ImageSize">Backbone input side.</param>
/// <param name="Features">Backbone taps.</param>
/// <param name="BatchSize">Images per backbone call.</param>
/// <param name="LatencyRuns">Single-image predictions timed for the latency percentiles.</param>
/// <param name="GpuDevice">CUDA device for the backbone, or null for the CPU.</param>
public sealed record BenchmarkOptions(string DataFolder, int Images = 512, int ImageSize = 224, string Features = "s4", int BatchSize = 16, int LatencyRuns = 200, int? GpuDevice = null)
{
    public static BenchmarkOptions Parse(string[] args)
    {
        var options = new BenchmarkOptions("data/fashion-mnist-sample");
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new UserInputException($"{args[i]}: missing value");
            bool NextIsNumber() => i + 1 < args.Length && int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out _);
            int Number() => int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 0
                ? n
                : throw new UserInputException($"{args[i - 1]} {args[i]}: expected a positive whole number");
            options = args[i] switch
            {
                "--data" => options with { DataFolder = Value() },
                "--images" => options with { Images = Number() },
                "--image-size" => options with { ImageSize = Number() },
                "--features" => options with { Features = Value() },
                "--batch-size" => options with { BatchSize = Number() },
                "--latency-runs" => options with { LatencyRuns = Number() },
                "--gpu" => options with { GpuDevice = NextIsNumber() ? Number() : 0 },
                _ => throw new UserInputException($"{args[i]}: unknown option (--data, --images, --image-size, --features, --batch-size, --latency-runs, --gpu)"),
            };
        }

        return options;
    }
}
