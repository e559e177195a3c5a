using MlNetFinetune.Prediction;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class PredictorTests(SampleModelFixture fixture)
{
    [Fact]
    public void ConcurrentPredictionsEqualSequentialOnes()
    {
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath, maxConcurrency: 3);
        var files = fixture.Result.HeldOutPredictions.Select(p => p.Path).Take(40).ToArray();
        var sequential = files.Select(f => classifier.Predict(f, top: 10)).ToArray();

        var concurrent = new ClassificationResult[files.Length * 3];
        Parallel.For(0, concurrent.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 },
            i => concurrent[i] = classifier.Predict(files[i % files.Length], top: 10));

        for (var i = 0; i < concurrent.Length; i++)
        {
            Assert.Equal(sequential[i % files.Length].Top, concurrent[i].Top);
        }
    }

    [Fact]
    public void PathStreamAndBytesGiveTheSameAnswer()
    {
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);
        classifier.WarmUp();
        var file = fixture.Result.HeldOutPredictions[0].Path;

        var fromPath = classifier.Predict(file);
        using var stream = File.OpenRead(file);
        var fromStream = classifier.Predict(stream);
        var fromBytes = classifier.Predict(File.ReadAllBytes(file));

        Assert.Equal(fromPath.Top, fromStream.Top);
        Assert.Equal(fromPath.Top, fromBytes.Top);
        Assert.Equal(3, fromPath.Top.Count);
        Assert.Equal(fromPath.Label, fromPath.Top[0].Label);
    }

    [Fact]
    public void TextOutputNamesLabelsWithTheirScores()
    {
        var file = fixture.Result.HeldOutPredictions[0].Path;

        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--top", "2", file);

        Assert.Equal(0, outcome.ExitCode);
        var fields = outcome.Output.Trim().Split('\t');
        Assert.Equal(file, fields[0]);
        Assert.Equal(fixture.Result.HeldOutPredictions[0].PredictedLabel, fields[1]);
        Assert.Equal(2, fields[3].Split("  ").Length);
        Assert.StartsWith(fields[1] + "=", fields[3]);
    }
}
