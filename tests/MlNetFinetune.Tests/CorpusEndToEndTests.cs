using System.Text.Json;
using MlNetFinetune.BadInputCorpus;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Tests.Images;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

/// <summary>
/// The whole bad-input corpus through the programs a user runs: nothing crashes, nothing throws past the programs,
/// and every file of the corpus is accounted for — used, skipped with its reason, ignored, or left out of the score
/// as a copy of a training image — exactly as its manifest says.
/// </summary>
public sealed class CorpusEndToEndTests(BadInputCorpusFixture corpus) : IClassFixture<BadInputCorpusFixture>, IDisposable
{
    private readonly string _scratch = Directory.CreateTempSubdirectory("mlnetfinetune-corpus-run-").FullName;

    public void Dispose() => Directory.Delete(_scratch, recursive: true);

    [Fact]
    public void TheTrainerAccountsForEveryFileOfTheCorpus()
    {
        // Given the corpus's training and held-out folders
        var options = new TrainingOptions(corpus.Full("train"), corpus.Full("test"), OutputFolder: Path.Combine(_scratch, "out"), Workspace: Path.Combine(_scratch, "ws"), Seed: 4);

        // When
        var result = new ImageClassifierTrainer(options).Train();

        // Then every class trains, the newline and emoji names included
        var trainSet = corpus.Manifest.DataSets.Single(d => d.Path == "train");
        Assert.Equal(trainSet.Classes.Order(StringComparer.Ordinal), result.Report.ClassNames);

        // and each file lands where the manifest says
        var used = result.Featurization.Images.Where(i => i.IsUsable).Select(i => Relative(i.Image.Path)).ToHashSet(StringComparer.Ordinal);
        var skipped = result.Report.SkippedFiles.Select(s => Relative(s.Path)).ToHashSet(StringComparer.Ordinal);
        var ignored = result.Report.Ignored.Select(i => Relative(i.Path)).ToHashSet(StringComparer.Ordinal);
        var scored = result.HeldOutPredictions.Select(p => Relative(p.Path)).ToHashSet(StringComparer.Ordinal);
        var entries = corpus.Manifest.Images.Select(i => (i.Path, i.Expect))
            .Concat(corpus.Manifest.Entries.Select(e => (e.Path, e.Expect)))
            .Where(e => e.Path.StartsWith("train/", StringComparison.Ordinal) || e.Path.StartsWith("test/", StringComparison.Ordinal))
            .ToList();
        var wrong = new List<string>();
        foreach (var (path, expect) in entries)
        {
            var inHiddenFolder = path.Split('/').SkipLast(1).Any(part => part.StartsWith('.'));
            var where = used.Contains(path) ? (scored.Contains(path) || path.StartsWith("train/", StringComparison.Ordinal) ? Expectation.Used : Expectation.Excluded)
                : skipped.Contains(path) ? Expectation.Skipped
                : ignored.Contains(path) || inHiddenFolder ? Expectation.Ignored
                : Expectation.Folder;
            if (where != expect)
            {
                wrong.Add($"{path}: expected {expect}, got {where}");
            }
        }

        Assert.Empty(wrong);
        Assert.Equal(1, result.Report.Duplicates!.HeldOutInTraining);

        // and the reports a person reads were written whole
        foreach (var file in new[] { "report.json", "report.md", "report.html", "heldout-predictions.csv", "model.zip" })
        {
            Assert.True(new FileInfo(Path.Combine(options.OutputFolder, file)).Length > 0, file);
        }

        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(options.OutputFolder, ReportWriter.JsonFileName)));
        Assert.Equal(result.Report.SkippedFiles.Count, json.RootElement.GetProperty("skippedFiles").GetArrayLength());
    }

    [Fact]
    public void AClassWithoutOneDecodableImageStopsTheTrainerWithItsName()
    {
        var outcome = CommandLineRunner.Trainer("--data", corpus.Full("broken-class"), "--output", Path.Combine(_scratch, "broken"), "--workspace", Path.Combine(_scratch, "ws-broken"));

        Assert.Equal(2, outcome.ExitCode);
        var line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Contains("'Unusable'", line);
        Assert.DoesNotContain("   at ", outcome.Error);
        Assert.False(File.Exists(Path.Combine(_scratch, "broken", "model.zip")));
    }

    private string Relative(string path) => Path.GetRelativePath(corpus.Root, path).Replace(Path.DirectorySeparatorChar, '/');
}
