using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Tests;

/// <summary>The Trainer's model.zip used with ML.NET's own API: <c>Model.Load</c> and a prediction engine.</summary>
[Collection(SampleModelCollection.Name)]
public sealed class PlainMlNetLoadingTests(SampleModelFixture fixture)
{
    [Fact]
    public void ModelPredictsFromAnInputClassWithoutLabel()
    {
        // Given model.zip loaded by ML.NET alone, and an input class holding only the image
        var ml = new MLContext();
        var model = ml.Model.Load(fixture.Result.ModelPath, out _);
        using var engine = ml.Model.CreatePredictionEngine<ImageOnly, ImagePrediction>(model);
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);

        // When it predicts held-out images
        var files = fixture.Result.HeldOutPredictions.Select(p => p.Path).Take(10).ToList();
        var predictions = files.Select(file =>
        {
            using var image = MLImage.CreateFromFile(file);
            return engine.Predict(new ImageOnly { Image = image });
        }).ToList();
        (model as IDisposable)?.Dispose();

        // Then it answers as the library's classifier does, with a probability per class
        for (var i = 0; i < files.Count; i++)
        {
            var expected = classifier.Predict(files[i], top: 1);
            Assert.Equal(expected.Label, predictions[i].PredictedLabel);
            Assert.Equal(expected.Confidence, predictions[i].Score.Max(), 5);
            Assert.Equal(classifier.Classes.Count, predictions[i].Score.Length);
        }
    }

    [Fact]
    public void DisposingTheLoadedModelRemovesMlNetsTemporaryOnnxCopy()
    {
        // Given a context whose temporary files go to a folder of their own
        var temp = Directory.CreateTempSubdirectory("mlnetfinetune-mltemp-").FullName;
        try
        {
            var ml = new MLContext { TempFilePath = temp };

            // When it loads the model, and then the model is disposed
            var model = ml.Model.Load(fixture.Result.ModelPath, out _);
            var whileLoaded = Directory.GetFiles(temp, "*", SearchOption.AllDirectories).Select(f => new FileInfo(f).Length).ToList();
            ((IDisposable)model).Dispose();
            var afterDispose = Directory.GetFiles(temp, "*", SearchOption.AllDirectories);

            // Then the backbone graph was copied there while loaded (one file of tens of MB) and is gone after
            Assert.Single(whileLoaded);
            Assert.True(whileLoaded[0] > 10_000_000, $"{whileLoaded[0]} bytes");
            Assert.Empty(afterDispose);
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    public sealed class ImageOnly
    {
        [ColumnName(ColumnNames.Image)]
        [AnySizeImageType]
        public MLImage? Image { get; set; }
    }
}
