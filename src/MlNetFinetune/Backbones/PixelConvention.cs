using System.Globalization;

namespace MlNetFinetune.Backbones;

/// <summary>
/// What an image network expects in its input tensor, as its exporter made it: the value range, the per-channel mean and
/// standard deviation subtracted and divided in that range, and the channel order. The defaults are the common
/// PyTorch / timm / Keras-applications export: RGB in 0..1, ImageNet mean and standard deviation.
/// </summary>
/// <param name="Range">"0-1" or "0-255": the range the mean and standard deviation are given in.</param>
/// <param name="Mean">Per-channel mean, in the network's channel order.</param>
/// <param name="Std">Per-channel standard deviation, in the network's channel order.</param>
/// <param name="ChannelOrder">"rgb" or "bgr".</param>
public sealed record PixelConvention(string Range, IReadOnlyList<float> Mean, IReadOnlyList<float> Std, string ChannelOrder)
{
    /// <summary>RGB in 0..1 normalised by the ImageNet mean and standard deviation.</summary>
    public static PixelConvention ImageNet { get; } = new("0-1", [0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f], "rgb");

    /// <summary>Multiplies 0..255 pixels into <see cref="Range"/>.</summary>
    public float Scale => Range == "0-1" ? 1f / 255 : 1f;

    /// <summary>Whether the network takes blue first.</summary>
    public bool Bgr => ChannelOrder == "bgr";

    /// <summary>Parses the command line's texts; null keeps the default of that part.</summary>
    public static PixelConvention Parse(string? range, string? mean, string? std, string? channelOrder)
    {
        var convention = new PixelConvention(
            range ?? ImageNet.Range,
            mean is null ? ImageNet.Mean : Triple("--pixel-mean", mean),
            std is null ? ImageNet.Std : Triple("--pixel-std", std),
            channelOrder?.ToLowerInvariant() ?? ImageNet.ChannelOrder);
        convention.Validate();
        return convention;
    }

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a part cannot work.</summary>
    public void Validate()
    {
        if (Range is not ("0-1" or "0-255"))
        {
            throw new UserInputException($"--pixel-range {Range}: use 0-1 or 0-255");
        }

        if (ChannelOrder is not ("rgb" or "bgr"))
        {
            throw new UserInputException($"--channel-order {ChannelOrder}: use rgb or bgr");
        }

        if (Mean.Count != 3 || Mean.Any(m => !float.IsFinite(m)))
        {
            throw new UserInputException("--pixel-mean: give three finite numbers, e.g. 0.485,0.456,0.406");
        }

        if (Std.Count != 3 || Std.Any(s => !(s > 0 && float.IsFinite(s))))
        {
            throw new UserInputException("--pixel-std: give three positive numbers, e.g. 0.229,0.224,0.225");
        }
    }

    /// <summary>Canonical text, part of the backbone's fingerprint.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"range={Range};mean={string.Join(',', Mean.Select(m => m.ToString("R", CultureInfo.InvariantCulture)))};std={string.Join(',', Std.Select(s => s.ToString("R", CultureInfo.InvariantCulture)))};order={ChannelOrder}");

    private static float[] Triple(string option, string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var values = new float[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!float.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]))
            {
                throw new UserInputException($"{option} {text}: '{parts[i]}' is not a number (use a dot for decimals, e.g. 0.485,0.456,0.406)");
            }
        }

        if (values.Length != 3)
        {
            throw new UserInputException($"{option} {text}: give one number per channel, three in all");
        }

        return values;
    }
}
