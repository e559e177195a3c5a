using MlNetFinetune.Explanations;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests.Explanations;

[Collection(SampleModelCollection.Name)]
public sealed class NearDuplicateTests(SampleModelFixture fixture) : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("mlnetfinetune-near-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void EditedCopiesOfTrainingImagesAmongTheHeldOutOnesAreFoundAndByteCopiesAreLeftToTheDuplicates()
    {
        // Given 40 training images per class, the other 10 per class as the test folder, and in it also an edited copy of
        // one training image per class (stored at twice the size, brightened or saved again as JPEG, in turn) and a
        // byte-identical copy of one. (Shifted or zoomed copies of these 28 px images are not near enough to be found;
        // the README has the measurement.)
        var (train, test) = (Path.Combine(_root, "train"), Path.Combine(_root, "test"));
        var copies = new Dictionary<string, (string Source, NearCopyEdit Edit)>(StringComparer.Ordinal);
        string? byteCopy = null;
        NearCopyEdit[] edits = [NearCopyEdit.Resized, NearCopyEdit.Brighter, NearCopyEdit.Jpeg];
        foreach (var (classFolder, index) in Directory.GetDirectories(TestData.SampleFolder).Order(StringComparer.Ordinal).Select((f, i) => (f, i)))
        {
            var label = Path.GetFileName(classFolder);
            var files = Directory.GetFiles(classFolder).Order(StringComparer.Ordinal).ToList();
            Directory.CreateDirectory(Path.Combine(train, label));
            Directory.CreateDirectory(Path.Combine(test, label));
            files.Take(40).ToList().ForEach(f => File.Copy(f, Path.Combine(train, label, Path.GetFileName(f))));
            files.Skip(40).ToList().ForEach(f => File.Copy(f, Path.Combine(test, label, Path.GetFileName(f))));
            var source = Path.Combine(train, label, Path.GetFileName(files[7]));
            var edit = edits[index % edits.Length];
            var copy = Path.Combine(test, label, edit == NearCopyEdit.Jpeg ? "edited-copy.jpg" : "edited-copy.png");
            File.WriteAllBytes(copy, NearCopies.Make(File.ReadAllBytes(source), edit));
            copies[copy] = (source, edit);
            if (byteCopy is null)
            {
                byteCopy = Path.Combine(test, label, "byte-copy.png");
                File.Copy(Path.Combine(train, label, Path.GetFileName(files[3])), byteCopy);
            }
        }

        var options = new TrainingOptions(train, test, Path.Combine(_root, "out"), fixture.Workspace)
        {
            Explanations = new ExplanationOptions(ExplainMistakes: false, FindLabelErrors: false),
            ExcludeHeldOutDuplicates = false,
        };

        // When the model is trained
        var result = new ImageClassifierTrainer(options).Train();

        // Then every resized or brightened copy is paired with its source, and so are JPEG copies but for one at most
        // (the threshold catches 94% of them, README "Near duplicates"); the byte copy is a duplicate and not a near
        // duplicate, and few genuine held-out images are flagged
        var search = result.Report.NearDuplicates!;
        var pairs = search.Pairs.ToDictionary(p => p.HeldOutPath, p => p.TrainingPath, StringComparer.Ordinal);
        Assert.All(copies.Where(c => c.Value.Edit != NearCopyEdit.Jpeg), c => Assert.Equal(c.Value.Source, pairs.GetValueOrDefault(c.Key)));
        var jpegCopies = copies.Where(c => c.Value.Edit == NearCopyEdit.Jpeg).ToList();
        Assert.True(jpegCopies.Count(c => pairs.GetValueOrDefault(c.Key) == c.Value.Source) >= jpegCopies.Count - 1, "more than one JPEG copy was not paired with its source");
        Assert.DoesNotContain(byteCopy, pairs.Keys);
        Assert.Equal(1, result.Report.Duplicates!.HeldOutInTraining);
        var others = pairs.Keys.Count(p => !copies.ContainsKey(p));
        Assert.True(others <= 5, $"{others} of 100 genuine held-out images flagged as near duplicates");
        Assert.NotNull(search.AccuracyWithout);
    }
}
