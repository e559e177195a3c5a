using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Explanations;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;
using MlNetFinetune.Predictor;
using SkiaSharp;

namespace MlNetFinetune.Tests.Explanations;

[Collection(SampleModelCollection.Name)]
public sealed class ModelExplainerTests(SampleModelFixture fixture) : IDisposable
{
    private readonly string _scratch = Directory.CreateTempSubdirectory("mlnetfinetune-explain-").FullName;

    public void Dispose() => Directory.Delete(_scratch, recursive: true);

    [Fact]
    public void TheBackboneTakenFromTheModelFileComputesTheTrainingFeaturesForAWholeBatch()
    {
        // Given the backbone graph saved inside model.zip, widened to a dynamic batch, and the training run's own bulk graph
        var backbone = fixture.Result.Backbone;
        var fromZip = ExplanationModel.DynamicBatch(ExplanationModel.ReadBackboneGraph(fixture.Result.ModelPath), backbone.FeatureSize);
        using var saved = BackboneSession.Create(fromZip, null, out _);
        using var bulk = BackboneSession.Create(backbone.BuildGraph(batchSize: null), null, out _);
        var size = backbone.ImageSize;
        var pixels = new float[3 * 3 * size * size];
        for (var i = 0; i < pixels.Length; i++)
        {
            pixels[i] = i * 7 % 256;
        }

        // When both run a batch of three images
        float[] Run(InferenceSession session)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(pixels, [3, 3, size, size]);
            using var outputs = session.Run(new RunOptions(), [ColumnNames.Pixels], [input], [ColumnNames.Features]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }

        var a = Run(saved);
        var b = Run(bulk);

        // Then they agree on every feature of every image
        Assert.Equal(3 * backbone.FeatureSize, a.Length);
        Assert.Equal(b.Length, a.Length);
        Assert.True(a.Zip(b, (x, y) => Math.Abs(x - y)).Max() < 1e-4f);
    }

    [Fact]
    public void AnExplanationStartsFromTheClassifiersOwnPrediction()
    {
        // Given the saved model as the Predictor loads it
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);

        foreach (var prediction in fixture.Result.HeldOutPredictions.Take(4))
        {
            // When a held-out image is explained
            var expected = classifier.Predict(prediction.Path, top: 3);
            var explanation = classifier.Explain(File.ReadAllBytes(prediction.Path), prediction.Path, top: 3);

            // Then its prediction is the classifier's and the map has heat for every class
            Assert.Equal(expected.Label, explanation.Label);
            Assert.Equal(expected.Top.Select(t => t.Label), explanation.Top.Select(t => t.Label));
            Assert.All(expected.Top.Zip(explanation.Top), p => Assert.Equal(p.First.Score, p.Second.Score, 4));
            Assert.Equal(classifier.Classes.Count, explanation.Map.Heat.Length);
            Assert.All(explanation.Map.Heat, h => Assert.Equal(64, h.Length));
        }
    }

    [Fact]
    public void PredictorExplainWritesOnePicturePerImageKeepingTheClassFolders()
    {
        // Given two images of different classes with the same file name
        var inputs = Path.Combine(_scratch, "inputs");
        var sources = fixture.Result.HeldOutPredictions.GroupBy(p => p.TrueLabel).Take(2).Select(g => g.First()).ToList();
        foreach (var source in sources)
        {
            Directory.CreateDirectory(Path.Combine(inputs, source.TrueLabel));
            File.Copy(source.Path, Path.Combine(inputs, source.TrueLabel, "same.png"));
        }

        var folder = Path.Combine(_scratch, "explained");

        // When the Predictor explains the folder
        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--explain", folder, inputs);

        // Then it prints a result per image and writes one decodable picture per image, under its class folder
        Assert.Equal(0, outcome.ExitCode);
        Assert.Equal(2, outcome.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        foreach (var source in sources)
        {
            var picture = Path.Combine(folder, source.TrueLabel, "same.png" + ExplainedImages.Suffix);
            using var bitmap = SKBitmap.Decode(picture);
            Assert.NotNull(bitmap);
        }
    }

    [Fact]
    public void ExplainWithAnOutputFileIsRefused()
    {
        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, "--explain", _scratch, "--output", "x.csv", TestData.SampleFolder);

        Assert.Equal(2, outcome.ExitCode);
        Assert.Contains("--explain", outcome.Error);
    }

    [Fact]
    public void PictureTextIsDrawnWithTheEmbeddedFontWhateverFontsTheMachineHas()
    {
        // Given the picture of an explanation whose top class names are known
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);
        var file = fixture.Result.HeldOutPredictions[0].Path;
        var explanation = classifier.Explain(File.ReadAllBytes(file), file);

        // When it is drawn
        using var picture = SKBitmap.Decode(ExplanationPicture.Png(File.ReadAllBytes(file), explanation, "title"));

        // Then the text comes from the embedded DejaVu Sans (the NoDependencies SkiaSharp draws nothing without a font),
        // and the label rows hold dark text pixels left of the bars
        Assert.Equal("DejaVu Sans", PictureText.Typeface.FamilyName);
        Assert.True(PictureText.Measure(explanation.Label, 14) > 10);
        var dark = 0;
        for (var y = picture.Height - 80; y < picture.Height - 8; y++)
        {
            for (var x = 16; x < 200; x++)
            {
                dark += picture.GetPixel(x, y).Red < 100 ? 1 : 0;
            }
        }

        Assert.True(dark > 100, $"{dark} dark pixels where the class names are written");
    }
}
