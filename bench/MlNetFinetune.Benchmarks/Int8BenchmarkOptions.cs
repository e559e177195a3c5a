using System.Globalization;
using MlNetFinetune.Backbones.Quantization;

namespace MlNetFinetune.Benchmarks;

/// <summary>What the int8 benchmarks (<c>int8</c>: speed and size; <c>int8-accuracy</c>: held-out accuracy) run on.</summary>
/// <param name="DataFolder">Image folder with class subfolders: the files featurized and calibrated on (speed), the training images (accuracy).</param>
/// <param name="TestFolder">Held-out images with the same classes (accuracy only).</param>
/// <param name="Images">Images per turn at up to 64 px (speed); a quarter of them at larger sizes.</param>
/// <param name="Rounds">Times each speed measurement is repeated, float and int8 alternating, to show the spread on a shared machine.</param>
/// <param name="Sizes">Input sides measured (speed); batch 64 at up to 64 px, 16 above.</param>
/// <param name="Calibrations">Quantization settings compared (accuracy) or the first one used (speed).</param>
/// <param name="LatencyRuns">Single-image predictions per precision for the latency percentiles (speed).</param>
/// <param name="ImageSize">Backbone input side (accuracy); null chooses it from the data as the Trainer does.</param>
/// <param name="Features">Backbone taps (accuracy); null chooses them from the data as the Trainer does.</param>
internal sealed record Int8BenchmarkOptions(
    string DataFolder,
    string? TestFolder = null,
    int Images = 512,
    int Rounds = 3,
    IReadOnlyList<int>? Sizes = null,
    IReadOnlyList<QuantizationOptions>? Calibrations = null,
    int LatencyRuns = 100,
    int? ImageSize = null,
    string? Features = null)
{
    public IReadOnlyList<int> SizesOrDefault => Sizes ?? [64, 224];

    public IReadOnlyList<QuantizationOptions> CalibrationsOrDefault => Calibrations ?? [new QuantizationOptions()];

    /// <summary>Batch size of the bulk graph at <paramref name="size"/>: the configurations, 64 at 64 px and 16 at 224 px.</summary>
    public static int BatchSizeFor(int size) => size <= 64 ? 64 : 16;

    public static Int8BenchmarkOptions Parse(string[] args)
    {
        var options = new Int8BenchmarkOptions("data/fashion-mnist-sample");
        var calibrationImages = 256;
        List<string>? methods = null;
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new UserInputException($"{args[i]}: missing value");
            int Number() => int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
                ? n
                : throw new UserInputException($"{args[i - 1]} {args[i]}: expected a positive whole number");
            switch (args[i])
            {
                case "--data": options = options with { DataFolder = Value() }; break;
                case "--test": options = options with { TestFolder = Value() }; break;
                case "--images": options = options with { Images = Number() }; break;
                case "--rounds": options = options with { Rounds = Number() }; break;
                case "--latency-runs": options = options with { LatencyRuns = Number() }; break;
                case "--image-size": options = options with { ImageSize = Number() }; break;
                case "--features": options = options with { Features = Value() }; break;
                case "--calibration-images": calibrationImages = Number(); break;
                case "--sizes":
                    options = options with { Sizes = [.. Value().Split(',').Select(s => int.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture))] };
                    break;
                case "--calibration": methods = [.. Value().Split(',')]; break;
                default:
                    throw new UserInputException($"{args[i]}: unknown option (--data, --test, --images, --rounds, --sizes, --calibration minmax|percentile:P[@N][,...], --calibration-images, --latency-runs, --image-size, --features)");
            }
        }

        var calibrations = (methods ?? ["percentile:99.999"]).Select(m => ParseCalibration(m, calibrationImages)).ToList();
        calibrations.ForEach(c => c.Validate());
        return options with { Calibrations = calibrations };
    }

    /// <summary>"minmax" or "percentile:P", optionally "@N" for N calibration images instead of <paramref name="images"/>.</summary>
    private static QuantizationOptions ParseCalibration(string text, int images)
    {
        var at = text.IndexOf('@');
        if (at >= 0)
        {
            images = int.TryParse(text[(at + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
                ? n
                : throw new UserInputException($"--calibration {text}: expected a positive image count after '@'");
            text = text[..at];
        }

        return text.Split(':') switch
        {
            ["minmax"] => new QuantizationOptions(CalibrationMethod.MinMax, CalibrationImages: images),
            ["percentile", var p] when double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out var percentile) =>
                new QuantizationOptions(CalibrationMethod.Percentile, percentile, images),
            _ => throw new UserInputException($"--calibration {text}: use minmax or percentile:P (e.g. percentile:99.99), optionally @N images"),
        };
    }
}
