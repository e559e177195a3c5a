using System.Globalization;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>How the range of each activation is chosen from the calibration images.</summary>
public enum CalibrationMethod
{
    /// <summary>The smallest and largest value seen: nothing is clipped, a rare outlier widens every step.</summary>
    MinMax,

    /// <summary>Clips the most extreme values at each end (a share set by <see cref="QuantizationOptions.Percentile"/>) for finer steps.</summary>
    Percentile,
}

/// <summary>How the backbone is quantized to int8.</summary>
/// <param name="Method">How activation ranges are calibrated. Default <see cref="CalibrationMethod.Percentile"/>.</param>
/// <param name="Percentile">For <see cref="CalibrationMethod.Percentile"/>: the share of calibration values, in percent,
/// kept inside the range at each end (99.999 clips the largest 0.001% and the smallest 0.001%). Default 99.999.</param>
/// <param name="CalibrationImages">Training images the activation ranges are measured on. Default 256.</param>
public sealed record QuantizationOptions(
    CalibrationMethod Method = CalibrationMethod.Percentile,
    double Percentile = 99.999,
    int CalibrationImages = 256)
{
    /// <summary>Throws <see cref="UserInputException"/> when the options cannot run.</summary>
    public void Validate()
    {
        if (Method == CalibrationMethod.Percentile && Percentile is <= 90 or > 100)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"quantization percentile {Percentile}: must be above 90 and at most 100 (e.g. 99.99)"));
        }

        if (CalibrationImages < 1)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"--calibration-images {CalibrationImages}: must be at least 1"));
        }
    }

    /// <summary>Canonical text of the options, for reports and the model manifest.</summary>
    public string Describe() => Method == CalibrationMethod.MinMax
        ? string.Create(CultureInfo.InvariantCulture, $"minmax;images={CalibrationImages}")
        : string.Create(CultureInfo.InvariantCulture, $"percentile={Percentile:R};images={CalibrationImages}");
}
