using System.Globalization;

namespace MlNetFinetune.Backbones;

/// <summary>Which pooled activations of the backbone make up the bottleneck features.</summary>
/// <param name="Stage">ResNet stage, 1 to 4 (the end of each stage: 64, 128, 256, 512 channels).</param>
/// <param name="Grid">1 for global average pooling; 2 pools each quarter of the map separately (a 2x2 grid), and so on.</param>
public sealed record FeatureTap(int Stage, int Grid)
{
    /// <summary>The tap as the <c>--features</c> syntax writes it: <c>s3</c>, or <c>s3g2</c> with a grid.</summary>
    public override string ToString() => Grid == 1
        ? string.Create(CultureInfo.InvariantCulture, $"s{Stage}")
        : string.Create(CultureInfo.InvariantCulture, $"s{Stage}g{Grid}");
}

/// <summary>How the pretrained backbone is run.</summary>
/// <param name="ImageSize">Side of the square input in pixels, a multiple of 32 (the backbone's asymmetric "same"
/// padding only lines up then). Default 224, the size the network was trained at.</param>
/// <param name="Features">Taps joined by '+', e.g. "s4" (the classic last pooled layer), "s3+s4", "s3g2+s4".</param>
public sealed record BackboneOptions(int ImageSize = 224, string Features = "s4")
{
    /// <summary>The smallest input side accepted: stage 4's map is then 1x1.</summary>
    public const int MinimumImageSize = 32;

    /// <summary>The largest input side accepted: beyond it the cost grows without known benefit for this network.</summary>
    public const int MaximumImageSize = 512;

    /// <summary>Below this mean number of images per class, <see cref="ChooseFor"/> keeps to ungridded taps.</summary>
    public const int FewImagesPerClass = 20;

    /// <summary>Stage-end channel counts of the ResNet18 backbone.</summary>
    public static readonly IReadOnlyList<int> StageChannels = [64, 128, 256, 512];

    /// <summary>
    /// The defaults, from the data (README, "Defaults chosen from the data": OpenMoji in colour and Fashion-MNIST, each
    /// at three sizes). Small sources (up to 64 px, e.g. Fashion-MNIST's 28 px) gain nothing from being blown up to
    /// 224, so they run at 64 px, five times faster. At every size and on both sets, stage 2 and 3 pooled on a grid
    /// beside the last stage beat the last stage alone by 3.5 to 7 points: the last stage, tuned to ImageNet photos,
    /// misses the shapes and parts that drawn and small images are told apart by. At 64 px stage 2's map is only 8x8,
    /// and a 4x4 grid of it scored 1.5 points above 2x2 on Fashion-MNIST (a tie on OpenMoji). With few images per class
    /// the grids are dropped, as their extra dimensions would overfit.
    /// </summary>
    public static BackboneOptions ChooseFor(Data.DataProfile data)
    {
        var fewImages = data.ImagesPerClass < FewImagesPerClass;
        if (data.MedianSide <= 64)
        {
            return new BackboneOptions(64, fewImages ? "s3+s4" : "s2g4+s3g2+s4");
        }

        var size = Math.Min(224, Math.Max(96, (data.MedianSide + 31) / 32 * 32));
        return new BackboneOptions(size, fewImages ? "s4" : "s2g2+s3g2+s4");
    }

    /// <summary>Parses <see cref="Features"/>; throws <see cref="UserInputException"/> for a malformed or impossible tap.</summary>
    public IReadOnlyList<FeatureTap> ParseTaps()
    {
        var taps = new List<FeatureTap>();
        foreach (var part in Features.Split('+', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var text = part.ToLowerInvariant();
            var gridAt = text.IndexOf('g');
            if (!text.StartsWith('s')
                || !int.TryParse(gridAt < 0 ? text[1..] : text[1..gridAt], NumberStyles.None, CultureInfo.InvariantCulture, out var stage)
                || stage is < 1 or > 4)
            {
                throw new UserInputException($"--features: '{part}' is not a tap; use s1..s4, optionally with a grid like s3g2, joined by '+'");
            }

            var grid = 1;
            if (gridAt >= 0 && (!int.TryParse(text[(gridAt + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out grid) || grid < 1))
            {
                throw new UserInputException($"--features: '{part}' has a bad grid; use e.g. s3g2 for a 2x2 grid");
            }

            var side = StageSide(stage);
            if (side % grid != 0)
            {
                throw new UserInputException(
                    $"--features: '{part}' needs stage {stage}'s {side}x{side} map to split into a {grid}x{grid} grid; at image size {ImageSize} it does not");
            }

            taps.Add(new FeatureTap(stage, grid));
        }

        if (taps.Count == 0)
        {
            throw new UserInputException("--features: no taps given; use e.g. s4 or s3+s4");
        }

        if (taps.Distinct().Count() != taps.Count)
        {
            throw new UserInputException($"--features: '{Features}' names a tap twice");
        }

        return taps;
    }

    /// <summary>Throws <see cref="UserInputException"/> when the options cannot run.</summary>
    public void Validate()
    {
        if (ImageSize % 32 != 0 || ImageSize < MinimumImageSize || ImageSize > MaximumImageSize)
        {
            throw new UserInputException(
                $"--image-size {ImageSize}: must be a multiple of 32 between {MinimumImageSize} and {MaximumImageSize} " +
                "(e.g. 96, 128, 160, 192, 224); the backbone's asymmetric padding misaligns at other sizes");
        }

        _ = ParseTaps();
    }

    /// <summary>Side of the square activation map at the end of <paramref name="stage"/>.</summary>
    public int StageSide(int stage) => ImageSize / (4 << (stage - 1));

    /// <summary>Length of the bottleneck feature vector.</summary>
    public int FeatureSize => ParseTaps().Sum(t => StageChannels[t.Stage - 1] * t.Grid * t.Grid);

    /// <summary>Canonical text of the options, part of the bottleneck cache key and of the model manifest.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture, $"resnet18;size={ImageSize};features={string.Join('+', ParseTaps())}");
}
