using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>
/// The calibrated float range of every quantized activation, by tensor name: the whole outcome of calibration. The
/// dynamic-batch graph and the batch-1 graph are quantized with the same ranges, so bulk featurization and the saved
/// model compute the same features.
/// </summary>
/// <param name="ranges">Smallest and largest value kept, by tensor name of the prepared float graph.</param>
public sealed class ActivationRanges(IReadOnlyDictionary<string, (float Min, float Max)> ranges)
{
    /// <summary>Smallest and largest value kept, by tensor name of the prepared float graph.</summary>
    public IReadOnlyDictionary<string, (float Min, float Max)> Ranges { get; } = ranges;

    /// <summary>
    /// Hash of every range: with the fp32 backbone's fingerprint and <see cref="QuantizationOptions.Describe"/> it
    /// identifies the int8 features, because two calibrations with equal ranges build identical graphs.
    /// </summary>
    public string Fingerprint()
    {
        var text = new StringBuilder();
        foreach (var (name, (min, max)) in Ranges.OrderBy(r => r.Key, StringComparer.Ordinal))
        {
            text.Append(CultureInfo.InvariantCulture, $"{name}={min:R},{max:R};");
        }

        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }

    /// <summary>The uint8 scale and zero point of <paramref name="tensor"/>: its range widened to hold 0, in 255 steps.</summary>
    public (float Scale, byte ZeroPoint) Uint8Parameters(string tensor)
    {
        if (!Ranges.TryGetValue(tensor, out var range))
        {
            throw new InvalidOperationException($"no calibrated range for activation '{tensor}': the graph differs from the one calibrated");
        }

        var min = Math.Min(0f, range.Min);
        var max = Math.Max(0f, range.Max);
        if (max - min < 1e-12f)
        {
            return (1f, 0);
        }

        var scale = (max - min) / 255f;
        return (scale, (byte)Math.Clamp(MathF.Round(-min / scale), 0, 255));
    }
}
