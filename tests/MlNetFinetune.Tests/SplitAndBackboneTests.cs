using MlNetFinetune.Backbones;
using MlNetFinetune.Data;

namespace MlNetFinetune.Tests;

public sealed class SplitAndBackboneTests
{
    [Fact]
    public void StratifiedSplitKeepsEveryClassShareAndIsSeeded()
    {
        var images = ImageFolder.Scan(TestData.SampleFolder).Images;

        var (rest, part) = StratifiedSplit.Split(images, 0.2, seed: 3);
        var (_, again) = StratifiedSplit.Split(images, 0.2, seed: 3);
        var (_, other) = StratifiedSplit.Split(images, 0.2, seed: 4);

        Assert.Equal(images.Count, rest.Count + part.Count);
        Assert.Empty(rest.Intersect(part));
        Assert.All(part.GroupBy(i => i.Label), g => Assert.Equal(10, g.Count()));
        Assert.Equal(part, again);
        Assert.NotEqual(part.Select(p => p.Path).Order(), other.Select(p => p.Path).Order());
    }

    [Theory]
    [InlineData(112)]
    [InlineData(100)]
    [InlineData(0)]
    [InlineData(1024)]
    public void ImageSizesOffTheBackbonesGridAreRejected(int size)
    {
        var error = Assert.Throws<UserInputException>(() => new BackboneOptions(size).Validate());

        Assert.Contains($"--image-size {size}", error.Message);
    }

    [Theory]
    [InlineData("s4", 512)]
    [InlineData("s3+s4", 768)]
    [InlineData("s3g2+s4", 1536)]
    [InlineData("s2g2+s3g2", 1536)]
    public void FeatureTapsGiveTheirSize(string features, int size)
    {
        Assert.Equal(size, new BackboneOptions(224, features).FeatureSize);
    }

    [Theory]
    [InlineData("s5")]
    [InlineData("x4")]
    [InlineData("s4g0")]
    [InlineData("s4+s4")]
    [InlineData("s4g3")]
    public void MalformedFeatureTapsAreRejected(string features)
    {
        Assert.Throws<UserInputException>(() => new BackboneOptions(224, features).Validate());
    }

    [Theory]
    [InlineData(28, true, 6000, 64, "s2g4+s3g2+s4")]
    [InlineData(64, false, 32, 64, "s2g4+s3g2+s4")]
    [InlineData(128, false, 32, 128, "s2g2+s3g2+s4")]
    [InlineData(128, true, 6000, 128, "s2g2+s3g2+s4")]
    [InlineData(500, false, 32, 224, "s2g2+s3g2+s4")]
    [InlineData(150, false, 20, 160, "s2g2+s3g2+s4")]
    [InlineData(28, true, 19, 64, "s3+s4")]
    [InlineData(500, false, 19, 224, "s4")]
    public void DefaultsFollowTheMeasuredRule(int medianSide, bool grayscale, double imagesPerClass, int size, string features)
    {
        // Given a data set of this shape (colour or not: the taps won on both)
        var data = new DataProfile(medianSide, grayscale, imagesPerClass, Sampled: 64);

        // When the defaults are chosen
        var chosen = BackboneOptions.ChooseFor(data);

        // Then small sources run at 64 px with stage 2 on a 4x4 grid, larger ones near their own size capped at 224,
        // and every choice is a valid backbone
        Assert.Equal(new BackboneOptions(size, features), chosen);
        chosen.Validate();
    }
}
