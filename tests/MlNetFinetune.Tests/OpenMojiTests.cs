using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Tests;

/// <summary>export-openmoji on the committed real subset of the openmoji package (data/openmoji-sample).</summary>
public sealed class OpenMojiTests : IDisposable
{
    private readonly string _output = Directory.CreateTempSubdirectory("mlnetfinetune-openmoji-").FullName;

    public void Dispose() => Directory.Delete(_output, recursive: true);

    private static string SampleSource => Path.Combine(Path.GetDirectoryName(TestData.SampleFolder)!, "openmoji-sample");

    [Fact]
    public void ExportRendersSubgroupsWithEnoughEmojiAsClassFoldersWithEveryFifthHeldOut()
    {
        // Given the sample: 10 emoji in each of three subgroups, 5 in hand-fingers-open plus 5 skin-tone variants
        AssertRendererInstalled();

        // When
        var outcome = CommandLineRunner.Trainer("export-openmoji", "--output", _output, "--size", "48", "--source", SampleSource, "--min-per-class", "10");

        // Then: skin-tone variants do not count, so hand-fingers-open is too small to be a class
        Assert.Equal(0, outcome.ExitCode);
        var train = ImageFolder.Scan(Path.Combine(_output, "train"));
        var test = ImageFolder.Scan(Path.Combine(_output, "test"));
        string[] classes = ["animal-mammal", "food-fruit", "sky-weather"];
        Assert.Equal(classes, train.Classes);
        Assert.Equal(classes, test.Classes);
        Assert.All(classes, c => Assert.Equal(8, train.Images.Count(i => i.Label == c)));
        Assert.All(classes, c => Assert.Equal(2, test.Images.Count(i => i.Label == c)));

        // the 5th and 10th emoji of each class in the package's order are held out (moon phases 1F315 and 1F31A)
        Assert.Equal(["1F315.png", "1F31A.png"], test.Images.Where(i => i.Label == "sky-weather").Select(i => Path.GetFileName(i.Path)).Order(StringComparer.Ordinal));
        Assert.DoesNotContain(train.Images.Concat(test.Images), i => Path.GetFileName(i.Path).Contains("1F3FB", StringComparison.Ordinal));

        var provenance = File.ReadAllText(Path.Combine(_output, "PROVENANCE.md"));
        Assert.Contains("openmoji` 17.0.0", provenance, StringComparison.Ordinal);
        Assert.Contains("CC BY-SA 4.0", provenance, StringComparison.Ordinal);
        Assert.Equal(31, File.ReadAllLines(Path.Combine(_output, "index.csv")).Length);
    }

    [Fact]
    public void TransparentBackgroundKeepsAlphaAndWhiteBackgroundIsOpaqueWhite()
    {
        // Given
        AssertRendererInstalled();
        var transparent = Path.Combine(_output, "transparent");
        var white = Path.Combine(_output, "white");

        // When
        var first = CommandLineRunner.Trainer("export-openmoji", "--output", transparent, "--size", "64", "--source", SampleSource, "--min-per-class", "10");
        var second = CommandLineRunner.Trainer("export-openmoji", "--output", white, "--size", "64", "--source", SampleSource, "--min-per-class", "10", "--background", "white");

        // Then: the dog's corner is transparent in one, white in the other, and the drawing itself is coloured
        Assert.Equal((0, 0), (first.ExitCode, second.ExitCode));
        using var withAlpha = SkiaSharp.SKBitmap.Decode(Path.Combine(transparent, "train", "animal-mammal", "1F415.png"));
        using var onWhite = SkiaSharp.SKBitmap.Decode(Path.Combine(white, "train", "animal-mammal", "1F415.png"));
        Assert.Equal((64, 64), (withAlpha.Width, withAlpha.Height));
        Assert.Equal(0, withAlpha.GetPixel(0, 0).Alpha);
        Assert.Equal(SkiaSharp.SKColors.White, onWhite.GetPixel(0, 0));
        Assert.Contains(Enumerable.Range(0, 64 * 64).Select(p => onWhite.GetPixel(p % 64, p / 64)), c => c.Red != c.Blue);
    }

    [Fact]
    public void MissingPackageIsOneLineNamingTheFetchScript()
    {
        // Given a folder that is not an unpacked openmoji package
        var notAPackage = Directory.CreateDirectory(Path.Combine(_output, "empty")).FullName;

        // When
        var outcome = CommandLineRunner.Trainer("export-openmoji", "--output", Path.Combine(_output, "out"), "--size", "64", "--source", notAPackage);

        // Then
        Assert.Equal(2, outcome.ExitCode);
        Assert.Equal($"error: {notAPackage}: not an unpacked openmoji package (no data/openmoji.json); fetch it with scripts/fetch-openmoji.sh", outcome.Error.Trim());
    }

    [Fact]
    public void ClassesAreTheSubgroupsWithEnoughEmojiWithoutSkinToneVariants()
    {
        // Given / When
        var classes = OpenMoji.Classes(SampleSource, minimumPerClass: 5);

        // Then
        Assert.Equal(["animal-mammal", "food-fruit", "hand-fingers-open", "sky-weather"], classes.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(5, classes["hand-fingers-open"].Count);
        Assert.Equal("1F435", classes["animal-mammal"][0].Hexcode);
    }

    private static void AssertRendererInstalled() =>
        Assert.True(
            Environment.GetEnvironmentVariable("PATH")!.Split(':').Any(p => File.Exists(Path.Combine(p, OpenMoji.Renderer))),
            "install the SVG renderer first: apt-get install -y librsvg2-bin");
}
