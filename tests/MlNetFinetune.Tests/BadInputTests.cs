using System.IO.Compression;
using System.Text.Json;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class BadInputTests(SampleModelFixture fixture)
{
    private string NewFolder() => Directory.CreateDirectory(Path.Combine(fixture.Root, "bad-" + Guid.NewGuid().ToString("N")[..8])).FullName;

    private static void AssertUserError(CommandLineRunner.Outcome outcome, params string[] messageParts)
    {
        Assert.Equal(2, outcome.ExitCode);
        var line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.All(messageParts, part => Assert.Contains(part, line));
        Assert.DoesNotContain("   at ", outcome.Error);
    }

    [Fact]
    public void MissingDataFolder()
    {
        var missing = Path.Combine(fixture.Root, "does-not-exist");

        AssertUserError(CommandLineRunner.Trainer("--data", missing), missing, "not found");
    }

    [Fact]
    public void FolderWithoutImages()
    {
        var empty = NewFolder();

        AssertUserError(CommandLineRunner.Trainer("--data", empty), empty, "no images");
    }

    [Fact]
    public void FolderWithOneClass()
    {
        var oneClass = TestData.CopySubset(NewFolder(), 5, "Bag");

        AssertUserError(CommandLineRunner.Trainer("--data", oneClass), "1 class folder", "at least 2");
    }

    [Fact]
    public void EmptyClassFolder()
    {
        var data = TestData.CopySubset(NewFolder(), 5, "Bag", "Coat");
        Directory.CreateDirectory(Path.Combine(data, "Dress"));

        AssertUserError(CommandLineRunner.Trainer("--data", data), "Dress", "holds no images");
    }

    [Fact]
    public void UnknownOption()
    {
        AssertUserError(CommandLineRunner.Trainer("--frobnicate"), "--frobnicate");
    }

    [Fact]
    public void ImageSizeThatIsNotAMultipleOf32()
    {
        AssertUserError(CommandLineRunner.Trainer("--image-size", "112", "--data", fixture.Options.DataFolder), "--image-size 112", "multiple of 32");
    }

    [Fact]
    public void CorruptImagesAreSkippedCountedAndTheRestTrains()
    {
        var data = TestData.CopySubset(NewFolder(), 12, "Bag", "Trouser");
        var zeroBytes = Path.Combine(data, "Bag", "zero.png");
        File.WriteAllBytes(zeroBytes, []);
        var truncated = Path.Combine(data, "Bag", "truncated.png");
        File.WriteAllBytes(truncated, File.ReadAllBytes(Directory.GetFiles(Path.Combine(data, "Bag"))[0])[..40]);
        var cutOff = Path.Combine(data, "Bag", "cut-off.png");
        File.WriteAllBytes(cutOff, File.ReadAllBytes(Directory.GetFiles(Path.Combine(data, "Bag"))[1])[..150]);
        var notAnImage = Path.Combine(data, "Trouser", "notes.jpg");
        File.WriteAllText(notAnImage, "this is not a picture");
        var output = NewFolder();

        var outcome = CommandLineRunner.Trainer("--data", data, "--output", output, "--workspace", fixture.Workspace);

        Assert.Equal(0, outcome.ExitCode);
        var report = ReportWriter.FromJson(File.ReadAllText(Path.Combine(output, ReportWriter.JsonFileName)));
        Assert.Equal(
            new[] { notAnImage, truncated, cutOff, zeroBytes }.Order(StringComparer.Ordinal),
            report.SkippedFiles.Select(s => s.Path).Order(StringComparer.Ordinal));
        Assert.Equal(24, report.Training.TrainImages + report.Training.ValidationImages + report.Training.HeldOutImages);
        Assert.Contains("truncated.png", outcome.Output);
        Assert.Contains(report.SkippedFiles, s => s.Path == cutOff && s.Reason.Contains("truncated", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(output, "model.zip")));
    }

    [Fact]
    public void PredictorRejectsAMissingModel()
    {
        var missing = Path.Combine(fixture.Root, "nope.zip");

        AssertUserError(CommandLineRunner.Predictor("--model", missing, TestData.SampleFolder), missing, "not found");
    }

    [Fact]
    public void PredictorRejectsATruncatedModel()
    {
        var truncated = Path.Combine(NewFolder(), "model.zip");
        using (var source = File.OpenRead(fixture.Result.ModelPath))
        using (var target = File.Create(truncated))
        {
            var buffer = new byte[1 << 20];
            target.Write(buffer, 0, source.Read(buffer));
        }

        AssertUserError(CommandLineRunner.Predictor("--model", truncated, TestData.SampleFolder), truncated, "truncated or corrupted");
    }

    [Fact]
    public void PredictorRejectsAForeignZip()
    {
        var foreign = Path.Combine(NewFolder(), "foreign.zip");
        using (var archive = ZipFile.Open(foreign, ZipArchiveMode.Create))
        {
            using var writer = new StreamWriter(archive.CreateEntry("hello.txt").Open());
            writer.Write("hello");
        }

        AssertUserError(CommandLineRunner.Predictor("--model", foreign, TestData.SampleFolder), foreign, "not an MlNetFinetune model");
    }

    [Fact]
    public void PredictorRejectsANewerModelFormat()
    {
        var newer = Path.Combine(NewFolder(), "newer.zip");
        File.Copy(fixture.Result.ModelPath, newer);
        var manifest = ModelManifest.ReadFrom(newer) with { FormatVersion = ModelManifest.CurrentFormatVersion + 1 };
        manifest.WriteInto(newer);

        AssertUserError(CommandLineRunner.Predictor("--model", newer, TestData.SampleFolder), newer, "newer");
    }

    [Theory]
    [InlineData("swapped")]
    [InlineData("duplicated")]
    [InlineData("empty")]
    [InlineData("version 0")]
    [InlineData("version -7")]
    public void PredictorRejectsAnEditedManifest(string edit)
    {
        // Given a model whose manifest was edited (before: swapped names gave wrong labels silently; the rest was accepted)
        var edited = Path.Combine(NewFolder(), "edited.zip");
        File.Copy(fixture.Result.ModelPath, edited);
        var manifest = ModelManifest.ReadFrom(edited);
        var classes = manifest.Classes.ToList();
        manifest = edit switch
        {
            "swapped" => manifest with { Classes = [classes[1], classes[0], .. classes.Skip(2)] },
            "duplicated" => manifest with { Classes = [classes[0], classes[0], .. classes.Skip(2)] },
            "empty" => manifest with { Classes = ["", .. classes.Skip(1)] },
            "version 0" => manifest with { FormatVersion = 0 },
            _ => manifest with { FormatVersion = -7 },
        };
        manifest.WriteInto(edited);

        // When / Then
        AssertUserError(CommandLineRunner.Predictor("--model", edited, TestData.SampleFolder), edited);
    }

    [Fact]
    public void PredictorReportsABadImageAndPredictsTheRest()
    {
        var folder = TestData.CopySubset(NewFolder(), 2, "Bag", "Sandal");
        var broken = Path.Combine(folder, "Bag", "broken.png");
        File.WriteAllText(broken, "not a png");

        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--json", folder);

        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains(broken, outcome.Error);
        var lines = outcome.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        foreach (var line in lines)
        {
            using var json = JsonDocument.Parse(line);
            Assert.Equal(3, json.RootElement.GetProperty("top").GetArrayLength());
            Assert.Contains(json.RootElement.GetProperty("label").GetString(), fixture.Result.Report.ClassNames);
        }
    }
}
