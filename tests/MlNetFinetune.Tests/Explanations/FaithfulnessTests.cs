using MlNetFinetune.Explanations;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests.Explanations;

/// <summary>Heat maps checked against ground truth: an item pasted into one quadrant of a blank canvas is all there is to see.</summary>
public sealed class FaithfulnessTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("mlnetfinetune-faithfulness-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void TheHottestCellLiesInTheItemsQuadrantForNineInTenCorrectlyClassifiedImages()
    {
        // Given a model trained on the sample's items (40 per class) pasted into a random quadrant of a black canvas twice
        // their size, and the other 10 per class made the same way as the test folder
        var train = Path.Combine(_root, "train");
        var test = Path.Combine(_root, "test");
        QuadrantImages.Write(TestData.SampleFolder, train, perClass: 40, seed: 1, QuadrantBackground.Black);
        var held = QuadrantImages.Write(TestData.SampleFolder, test, perClass: 10, seed: 2, QuadrantBackground.Black, skip: 40);
        var options = new TrainingOptions(train, test, Path.Combine(_root, "out"), Path.Combine(_root, "workspace")) { Explanations = ExplanationOptions.None };
        var result = new ImageClassifierTrainer(options).Train();
        using var explainer = ModelExplainer.Load(result.ModelPath);

        // When every held-out image is explained with the default occlusion settings
        var correct = new List<(QuadrantImage Image, int Hottest)>();
        foreach (var image in held)
        {
            var explanation = explainer.Explain(File.ReadAllBytes(image.Path), image.Path);
            if (explanation.Label == image.Label)
            {
                var (row, column) = explanation.Map.Hottest(explanation.Map.PredictedIndex);
                correct.Add((image, QuadrantImages.QuadrantOf(row, column, explanation.Map.Grid)));
            }
        }

        // Then the predicted class's hottest cell is in the item's quadrant for at least 90% of the correct ones
        var hits = correct.Count(c => c.Hottest == c.Image.Quadrant);
        Assert.True(correct.Count >= 50, $"only {correct.Count} of {held.Count} held-out images classified correctly");
        Assert.True(hits >= 0.9 * correct.Count, $"hottest cell in the item's quadrant for {hits} of {correct.Count} correctly classified images");
    }
}
