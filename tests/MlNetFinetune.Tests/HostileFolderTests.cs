using System.Diagnostics;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

/// <summary>Folders as careless users and attackers leave them: links, hidden folders, odd names, broken and duplicated images.</summary>
[Collection(SampleModelCollection.Name)]
public sealed class HostileFolderTests(SampleModelFixture fixture)
{
    private string NewFolder() => Directory.CreateDirectory(Path.Combine(fixture.Root, "hostile-" + Guid.NewGuid().ToString("N")[..8])).FullName;

    private TrainingOptions Options(string data, string? test = null) =>
        new(data, test, OutputFolder: NewFolder(), Workspace: fixture.Workspace, Seed: 3) { ImageSize = 64, Features = "s3+s4" };

    [Fact]
    public void LinksToFoldersAreNotFollowedSoNoImageChangesClass()
    {
        // Given a class folder with links back to the root and to itself (before: 60 images became 2,460)
        var data = TestData.CopySubset(NewFolder(), 6, "Bag", "Coat", "Sandal");
        File.CreateSymbolicLink(Path.Combine(data, "Bag", "loop"), "..");
        File.CreateSymbolicLink(Path.Combine(data, "Bag", "self"), ".");

        // When
        var folder = ImageFolder.Scan(data);

        // Then every image keeps its own class and the links are listed as ignored
        Assert.Equal(18, folder.Images.Count);
        Assert.All(folder.Images, i => Assert.Equal(Path.GetFileName(Path.GetDirectoryName(i.Path)), i.Label));
        Assert.Equal(2, folder.Ignored.Count(i => i.Reason.Contains("symbolic link to a folder", StringComparison.Ordinal)));
    }

    [Fact]
    public void HiddenFoldersAreIgnoredNotTakenAsClasses()
    {
        var data = TestData.CopySubset(NewFolder(), 4, "Bag", "Coat");
        var checkpoints = Directory.CreateDirectory(Path.Combine(data, ".ipynb_checkpoints")).FullName;
        File.Copy(Directory.GetFiles(Path.Combine(data, "Bag"))[0], Path.Combine(checkpoints, "x.png"));
        var nested = Directory.CreateDirectory(Path.Combine(data, "Coat", ".thumbnails")).FullName;
        File.Copy(Directory.GetFiles(Path.Combine(data, "Bag"))[0], Path.Combine(nested, "y.png"));

        var folder = ImageFolder.Scan(data);

        Assert.Equal(["Bag", "Coat"], folder.Classes);
        Assert.Equal(8, folder.Images.Count);
        Assert.Equal(2, folder.Ignored.Count(i => i.Reason == "hidden"));
    }

    [Fact]
    public void DanglingLinksAndNamesThatAreNotUtf8AreSkippedWithTheirReason()
    {
        // Given (before: a file name that is not valid UTF-8 aborted training with exit 1)
        var data = TestData.CopySubset(NewFolder(), 4, "Bag", "Coat");
        File.CreateSymbolicLink(Path.Combine(data, "Bag", "gone.png"), "/nonexistent/gone.png");
        var source = Directory.GetFiles(Path.Combine(data, "Coat"))[0];
        Run("/bin/sh", "-c", $"cp '{source}' \"{Path.Combine(data, "Coat")}/$(printf 'caf\\351.png')\"");

        try
        {
            // When
            var folder = ImageFolder.Scan(data);

            // Then
            Assert.Equal(8, folder.Images.Count);
            Assert.Contains(folder.Skipped, s => s.Path.EndsWith("gone.png", StringComparison.Ordinal) && s.Reason.Contains("does not exist", StringComparison.Ordinal));
            Assert.Contains(folder.Skipped, s => s.Reason.Contains("not valid UTF-8", StringComparison.Ordinal));
        }
        finally
        {
            // .NET cannot delete a file by a name it cannot spell, so the fixture's cleanup would fail on it.
            Run("/bin/sh", "-c", $"rm -f \"{Path.Combine(data, "Coat")}\"/caf*.png");
        }
    }

    [Fact]
    public void AClassWhoseImagesAllFailToDecodeIsAnErrorNamingIt()
    {
        // Given (before: the class vanished from the model and the run ended with exit 0)
        var data = TestData.CopySubset(NewFolder(), 6, "Bag", "Coat");
        var broken = Directory.CreateDirectory(Path.Combine(data, "Broken")).FullName;
        for (var i = 0; i < 4; i++)
        {
            File.WriteAllText(Path.Combine(broken, $"{i}.png"), $"not an image {i}");
        }

        // When
        var error = Assert.Throws<UserInputException>(() => new ImageClassifierTrainer(Options(data)).Train());

        // Then
        Assert.Contains("'Broken'", error.Message, StringComparison.Ordinal);
        Assert.Contains("no usable training image", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void HeldOutCopiesOfTrainingImagesAreLeftOutOfTheScoreAndReported()
    {
        // Given a test folder where 4 images are byte-identical to training images (before: accuracy 1.0, no warning)
        var data = TestData.CopySubset(NewFolder(), 8, "Bag", "Coat");
        var test = NewFolder();
        foreach (var label in new[] { "Bag", "Coat" })
        {
            Directory.CreateDirectory(Path.Combine(test, label));
            foreach (var file in Directory.GetFiles(Path.Combine(data, label)).Order(StringComparer.Ordinal).Take(2))
            {
                File.Copy(file, Path.Combine(test, label, "copy-" + Path.GetFileName(file)));
            }

            foreach (var file in Directory.GetFiles(Path.Combine(TestData.SampleFolder, label)).Order(StringComparer.Ordinal).Skip(40).Take(3))
            {
                File.Copy(file, Path.Combine(test, label, Path.GetFileName(file)));
            }
        }

        // When
        var options = Options(data, test);
        var result = new ImageClassifierTrainer(options).Train();

        // Then
        var duplicates = result.Report.Duplicates!;
        Assert.Equal(4, duplicates.HeldOutInTraining);
        Assert.True(duplicates.HeldOutExcluded);
        Assert.Equal(6, result.Report.Training.HeldOutImages);
        Assert.DoesNotContain(result.HeldOutPredictions, p => Path.GetFileName(p.Path).StartsWith("copy-", StringComparison.Ordinal));
        Assert.Contains(duplicates.Examples, e => Path.GetFileName(e.Path).StartsWith("copy-", StringComparison.Ordinal));
        Assert.Contains("Byte-identical images", File.ReadAllText(Path.Combine(options.OutputFolder, "report.md")), StringComparison.Ordinal);
    }

    [Fact]
    public void ByteIdenticalFilesShareOneOutcomeEvenWhenTheyFailToDecode()
    {
        // Given two copies of an undecodable file and two copies of a good one, with four decode workers
        // (before: the second copy was counted "from cache" and had no features: ArgumentOutOfRangeException)
        var folder = NewFolder();
        var garbage = Path.Combine(folder, "a.png");
        File.WriteAllBytes(garbage, [0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3, 4, 5]);
        File.Copy(garbage, Path.Combine(folder, "b.png"));
        var good = Directory.GetFiles(Path.Combine(TestData.SampleFolder, "Bag")).Order(StringComparer.Ordinal).First();
        File.Copy(good, Path.Combine(folder, "c.png"));
        File.Copy(good, Path.Combine(folder, "d.png"));
        var images = new[] { "a", "b", "c", "d" }.Select(n => new ImageRecord(Path.Combine(folder, n + ".png"), "x")).ToList();
        var backbone = new ResNet18Backbone(new BackboneOptions(64, "s4"));

        for (var run = 0; run < 3; run++)
        {
            // When
            using var store = FeatureStore.Open(new MLContext(1), NewFolder(), backbone, new FeaturizationOptions(BatchSize: 2, DecodeWorkers: 4));
            var result = store.Featurize(images);

            // Then
            Assert.Equal(images.Select(i => i.Path), result.Images.Select(i => i.Image.Path));
            Assert.False(result.Images[0].IsUsable);
            Assert.Equal(result.Images[0].SkipReason, result.Images[1].SkipReason);
            Assert.True(result.Images[2].IsUsable && result.Images[3].IsUsable);
            Assert.Equal(result.Images[2].Features, result.Images[3].Features);
            Assert.Equal(1, result.Computed);
        }
    }

    [Fact]
    public void CancellingAfterFeaturizationWritesNoModel()
    {
        // Given a cancellation that arrives once featurization is done, i.e. during the head search
        // (before: Ctrl+C in the head search or the save was swallowed and the run exited 0)
        var data = TestData.CopySubset(NewFolder(), 6, "Bag", "Coat");
        var options = Options(data);
        using var interrupt = new CancellationTokenSource();
        var progress = new Callback(p =>
        {
            if (p.Done == p.Total)
            {
                interrupt.Cancel();
            }
        });

        // When / Then
        Assert.ThrowsAny<OperationCanceledException>(() => new ImageClassifierTrainer(options).Train(progress, cancellation: interrupt.Token));
        Assert.False(File.Exists(Path.Combine(options.OutputFolder, TrainingOptions.ModelFileName)));
    }

    [Fact]
    public void TemporariesOfKilledRunsAreRemovedWhenTheFileIsWrittenAgain()
    {
        var folder = NewFolder();
        var target = Path.Combine(folder, "model.zip");
        var stale = target + ".tmp-2147483600-0123456789abcdef";
        var live = $"{target}.tmp-{Environment.ProcessId}-fedcba9876543210";
        File.WriteAllText(stale, "half a model");
        File.WriteAllText(live, "another writer in this process");

        AtomicFile.WriteAllText(target, "whole");

        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(live));
        Assert.Equal("whole", File.ReadAllText(target));
    }

    private static void Run(string program, params string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(program, arguments) { RedirectStandardError = true })!;
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, process.StandardError.ReadToEnd());
    }

    private sealed class Callback(Action<FeaturizationProgress> report) : IProgress<FeaturizationProgress>
    {
        public void Report(FeaturizationProgress value) => report(value);
    }
}
