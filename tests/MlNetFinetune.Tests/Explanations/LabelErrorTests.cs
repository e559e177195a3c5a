using System.Xml.Linq;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Explanations;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests.Explanations;

[Collection(SampleModelCollection.Name)]
public sealed class LabelErrorTests(SampleModelFixture fixture) : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("mlnetfinetune-label-errors-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>The first 40 images of each sample class as training data, the last 10 as the test folder.</summary>
    private (string Train, string Test) SplitSample()
    {
        var (train, test) = (Path.Combine(_root, "train"), Path.Combine(_root, "test"));
        foreach (var classFolder in Directory.GetDirectories(TestData.SampleFolder))
        {
            var files = Directory.GetFiles(classFolder).Order(StringComparer.Ordinal).ToList();
            foreach (var (folder, part) in new[] { (train, files.Take(40)), (test, files.Skip(40)) })
            {
                var target = Directory.CreateDirectory(Path.Combine(folder, Path.GetFileName(classFolder))).FullName;
                foreach (var file in part)
                {
                    File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
                }
            }
        }

        return (train, test);
    }

    [Fact]
    public void MostFlippedLabelsAreAmongTheTopSuspectsAndOnThePage()
    {
        // Given 400 real training images with 5% of them (20) moved into a wrong class folder
        var (train, test) = SplitSample();
        var flipped = LabelFlips.Flip(train, 0.05, seed: 11);
        var options = new TrainingOptions(train, test, Path.Combine(_root, "out"), fixture.Workspace)
        {
            Explanations = new ExplanationOptions(ExplainMistakes: false, FindLabelErrors: true, FindNearDuplicates: false),
        };

        // When the model is trained (the sample's features are in the shared cache, so only heads are fitted)
        var result = new ImageClassifierTrainer(options).Train();

        // Then at least 60% of the flipped images are among the top k suspects (k = the number flipped)
        var suspects = result.Report.LabelErrors!.Suspects;
        var top = suspects.Take(flipped.Count).Select(s => s.Path).ToHashSet(StringComparer.Ordinal);
        var found = flipped.Where(f => top.Contains(f.Path)).ToList();
        Assert.Equal(20, flipped.Count);
        Assert.True(found.Count >= 0.6 * flipped.Count, $"{found.Count} of {flipped.Count} flipped images in the top {flipped.Count} suspects");

        // and the page shows each of them with its given label
        var page = XElement.Parse(File.ReadAllText(Path.Combine(options.OutputFolder, HtmlReportWriter.FileName)));
        var shown = page.Descendants().Where(e => e.Name.LocalName == "figure" && ((string?)e.Attribute("class"))?.Contains("suspect") == true)
            .ToDictionary(e => (string)e.Attribute("data-path")!, e => (string)e.Attribute("data-given")!);
        Assert.All(found, f => Assert.Equal(f.GivenLabel, shown[f.Path]));
    }

    [Fact]
    public void FoldsAreStratifiedAndSeeded()
    {
        var images = Enumerable.Range(0, 23).Select(i => new FeaturizedImage(new Data.ImageRecord($"{i}.png", i % 3 == 0 ? "a" : "b"), null, [0f], null, null)).ToList();

        var folds = LabelErrorSearch.Folds(images, 5, seed: 1);

        Assert.Equal(folds, LabelErrorSearch.Folds(images, 5, seed: 1));
        foreach (var label in new[] { "a", "b" })
        {
            var counts = Enumerable.Range(0, 5).Select(f => images.Where((image, i) => image.Image.Label == label && folds[i] == f).Count()).ToList();
            Assert.True(counts.Max() - counts.Min() <= 1, $"{label}: {string.Join(",", counts)}");
        }
    }

    [Fact]
    public void TheAutomaticRuleSearchesSmallSetsAndSkipsLargeOnes()
    {
        Assert.True(new ExplanationOptions().SearchesLabelErrors(8_000, 2048));
        Assert.False(new ExplanationOptions().SearchesLabelErrors(48_000, 2048));
        Assert.True(new ExplanationOptions(FindLabelErrors: true).SearchesLabelErrors(48_000, 2048));
        Assert.False(new ExplanationOptions(FindLabelErrors: false).SearchesLabelErrors(10, 2048));
    }

    [Fact]
    public void TrainerOptionTakesOnOffOrAutoOnly()
    {
        var outcome = CommandLineRunner.Trainer("--find-label-errors", "maybe");

        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("'maybe'", outcome.Error);
        Assert.Contains("'auto'", outcome.Error);
    }
}
