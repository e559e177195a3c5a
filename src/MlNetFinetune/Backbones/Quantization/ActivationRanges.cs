using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

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
    /// Hash of every range: with the float backbone's fingerprint it identifies the int8 features
    /// (<see cref="Int8Quantizer.Fingerprint"/>), because equal ranges build identical graphs.
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

    /// <summary>
    /// The ranges as JSON, tensor name to [min, max], floats in their shortest exact form: a calibration stored in the
    /// workspace and read back by a later run or by another shard rebuilds byte-identical graphs and the same fingerprint.
    /// </summary>
    public string ToJson() => JsonSerializer.Serialize(
        Ranges.OrderBy(r => r.Key, StringComparer.Ordinal).ToDictionary(r => r.Key, r => new[] { r.Value.Min, r.Value.Max }, StringComparer.Ordinal));

    /// <summary>Reads what <see cref="ToJson"/> wrote; throws <see cref="InvalidDataException"/> when it is not that.</summary>
    public static ActivationRanges FromJson(string json)
    {
        try
        {
            var ranges = JsonSerializer.Deserialize<Dictionary<string, float[]>>(json)
                ?? throw new InvalidDataException("activation ranges: empty JSON");
            return new ActivationRanges(ranges.ToDictionary(
                r => r.Key,
                r => r.Value is [var min, var max] ? (min, max) : throw new InvalidDataException($"activation ranges: '{r.Key}' needs [min, max]"),
                StringComparer.Ordinal));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"activation ranges: not valid JSON ({e.Message})", e);
        }
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
