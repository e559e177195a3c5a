using Microsoft.ML;
using MlNetFinetune.Backbones;
using static Microsoft.ML.Transforms.ValueToKeyMappingEstimator;

namespace MlNetFinetune.Tests.Quantization;

/// <summary>The ML.NET estimator with <see cref="ImageClassificationTrainer.Options.Precision"/> int8.</summary>
public sealed class Int8EstimatorTests
{
    [Fact]
    public void Int8ModelIsCalibratedOnTrainingRowsAndReloadsWithTheSameScores()
    {
        // Given 12 sample images of each class as encoded bytes, and a private workspace
        var root = Directory.CreateTempSubdirectory("mlnetfinetune-int8-estimator-").FullName;
        var ml = new MLContext(seed: 1);
        var images = Directory.GetDirectories(TestData.SampleFolder).Order(StringComparer.Ordinal)
            .SelectMany(folder => Directory.GetFiles(folder).Order(StringComparer.Ordinal).Take(12)
                .Select(file => new ImageData(Path.GetRelativePath(TestData.SampleFolder, file), Path.GetFileName(folder))))
            .ToList();
        var data = ml.Data.LoadFromEnumerable(images);
        var prepared = ml.Transforms.Conversion.MapValueToKey("LabelAsKey", "Label", keyOrdinality: KeyOrdinality.ByValue)
            .Append(ml.Transforms.LoadRawImageBytes("Image", TestData.SampleFolder, "ImagePath"))
            .Fit(data)
            .Transform(data);
        var log = new List<string>();

        // When the estimator fits them in int8, and the model is saved and loaded in a fresh context
        var model = ml.MulticlassClassification.Trainers.ImageClassification(new ImageClassificationTrainer.Options
        {
            FeatureColumnName = "Image",
            LabelColumnName = "LabelAsKey",
            WorkspacePath = Path.Combine(root, "workspace"),
            Precision = Precision.Int8,
            Log = log.Add,
        }).Fit(prepared);
        var path = Path.Combine(root, "model.zip");
        ml.Model.Save(model, prepared.Schema, path);
        var before = Scores(ml, model, prepared);
        var fresh = new MLContext(seed: 2);
        var loaded = fresh.Model.Load(path, out _);
        var after = Scores(fresh, loaded, prepared);
        (loaded as IDisposable)?.Dispose();
        model.Dispose();

        // Then the ranges came from the training rows (the validation share left out), and the reloaded int8 model
        // scores every image as the fitted one did
        Assert.Contains(log, line => line.StartsWith("Int8 calibration: percentile 99.999 on 110 training images", StringComparison.Ordinal));
        Assert.Equal(before, after);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public void Int8WithAGpuIsRefusedBeforeAnyWork()
    {
        var options = new ImageClassificationTrainer.Options { Precision = Precision.Int8, GpuDeviceId = 0 };

        var error = Assert.Throws<UserInputException>(options.Validate);

        Assert.StartsWith("Precision Int8 runs on the CPU only", error.Message, StringComparison.Ordinal);
    }

    private static List<float[]> Scores(MLContext ml, ITransformer model, IDataView data) =>
        [.. ml.Data.CreateEnumerable<ScoreRow>(model.Transform(data), reuseRowObject: false).Select(r => r.Score)];

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }
}
