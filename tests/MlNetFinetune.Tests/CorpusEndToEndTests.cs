using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using MlNetFinetune.BadInputCorpus;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Predictor.Serving;
using MlNetFinetune.Tests.Images;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

/// <summary>The bad-input corpus and a model trained on its training and held-out folders.</summary>
public sealed class CorpusRunFixture : IDisposable
{
    public CorpusRunFixture()
    {
        Scratch = Directory.CreateTempSubdirectory("mlnetfinetune-corpus-run-").FullName;
        Options = new TrainingOptions(Corpus.Full("train"), Corpus.Full("test"), OutputFolder: Path.Combine(Scratch, "out"), Workspace: Path.Combine(Scratch, "ws"), Seed: 4);
        Result = new ImageClassifierTrainer(Options).Train();
    }

    public BadInputCorpusFixture Corpus { get; } = new();

    public string Scratch { get; }

    public TrainingOptions Options { get; }

    public TrainingResult Result { get; }

    public void Dispose()
    {
        Corpus.Dispose();
        Directory.Delete(Scratch, recursive: true);
    }
}

/// <summary>
/// The whole bad-input corpus through the programs a user runs: nothing crashes, nothing throws past the programs,
/// and every file of the corpus is accounted for — used, skipped with its reason, ignored, or left out of the score
/// as a copy of a training image — exactly as its manifest says.
/// </summary>
public sealed class CorpusEndToEndTests(CorpusRunFixture run) : IClassFixture<CorpusRunFixture>
{
    private readonly BadInputCorpusFixture _corpus = run.Corpus;
    private readonly string _scratch = run.Scratch;

    [Fact]
    public void TheTrainerAccountsForEveryFileOfTheCorpus()
    {
        // Given the corpus's training and held-out folders, trained on by the fixture
        var options = run.Options;
        var result = run.Result;

        // Then every class trains, the newline and emoji names included
        var trainSet = _corpus.Manifest.DataSets.Single(d => d.Path == "train");
        Assert.Equal(trainSet.Classes.Order(StringComparer.Ordinal), result.Report.ClassNames);

        // and each file lands where the manifest says
        var used = result.Featurization.Images.Where(i => i.IsUsable).Select(i => Relative(i.Image.Path)).ToHashSet(StringComparer.Ordinal);
        var skipped = result.Report.SkippedFiles.Select(s => Relative(s.Path)).ToHashSet(StringComparer.Ordinal);
        var ignored = result.Report.Ignored.Select(i => Relative(i.Path)).ToHashSet(StringComparer.Ordinal);
        var scored = result.HeldOutPredictions.Select(p => Relative(p.Path)).ToHashSet(StringComparer.Ordinal);
        var entries = _corpus.Manifest.Images.Select(i => (i.Path, i.Expect))
            .Concat(_corpus.Manifest.Entries.Select(e => (e.Path, e.Expect)))
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
        var outcome = CommandLineRunner.Trainer("--data", _corpus.Full("broken-class"), "--output", Path.Combine(_scratch, "broken"), "--workspace", Path.Combine(_scratch, "ws-broken"));

        Assert.Equal(2, outcome.ExitCode);
        var line = Assert.Single(outcome.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Contains("'Unusable'", line);
        Assert.DoesNotContain("   at ", outcome.Error);
        Assert.False(File.Exists(Path.Combine(_scratch, "broken", "model.zip")));
    }

    [Fact]
    public void ThePredictorAnswersOrNamesTheProblemOfEveryImageAndKeepsGoing()
    {
        // Given every image file of the training folder, hostile ones and file-system oddities included
        var results = Path.Combine(_scratch, "predictions.jsonl");

        // When the Predictor classifies the folder into a file
        var outcome = CommandLineRunner.Predictor("--model", run.Result.ModelPath, "--output", results, _corpus.Full("train"));

        // Then it finishes, with exit code 2 for the unreadable ones, and has one row per image file of the manifest
        Assert.Equal(2, outcome.ExitCode);
        Assert.DoesNotContain("   at ", outcome.Error);
        var rows = File.ReadAllLines(results).Select(line => JsonDocument.Parse(line).RootElement).ToDictionary(r => Relative(r.GetProperty("path").GetString()!));
        var expected = _corpus.Manifest.Images.Select(i => (i.Path, i.Expect))
            .Concat(_corpus.Manifest.Entries.Where(e => e.Kind is not ("hidden-folder" or "image-in-hidden-folder" or "link-to-parent" or "link-to-self" or "folder-named-like-image")).Select(e => (e.Path, e.Expect)))
            .Where(e => e.Path.StartsWith("train/", StringComparison.Ordinal))
            .ToList();
        Assert.Equal(expected.Select(e => e.Path).Order(StringComparer.Ordinal), rows.Keys.Order(StringComparer.Ordinal));
        Assert.All(expected, e => Assert.Equal(e.Expect == Expectation.Skipped, rows[e.Path].TryGetProperty("error", out _)));
    }

    [Fact]
    public async Task ServeAnswersEveryHostileImageWithTheStatusItsProblemCalls()
    {
        // Given the server over the corpus model
        var app = PredictionServer.Build(new ServeOptions(run.Result.ModelPath, "http://127.0.0.1:0"));
        await app.StartAsync();
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
            var wrong = new List<string>();

            // When each hostile image is posted as the body
            foreach (var image in _corpus.Manifest.Images)
            {
                using var body = new ByteArrayContent(File.ReadAllBytes(_corpus.Full(image.Path))) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } };
                using var response = await client.PostAsync("/predict", body);
                var expected = image.Expect == Expectation.Used ? HttpStatusCode.OK : image.Problem switch
                {
                    "TooLarge" => HttpStatusCode.UnprocessableEntity,
                    "UnknownFormat" => HttpStatusCode.UnsupportedMediaType,
                    _ => HttpStatusCode.BadRequest,
                };
                if (response.StatusCode != expected)
                {
                    wrong.Add($"{image.Path}: expected {(int)expected}, got {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                }
            }

            // Then each got its answer, and the server is still well
            Assert.Empty(wrong);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health")).StatusCode);
        }
        finally
        {
            await app.DisposeAsync();
        }
    }

    private string Relative(string path) => Path.GetRelativePath(_corpus.Root, path).Replace(Path.DirectorySeparatorChar, '/');
}
