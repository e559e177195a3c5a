using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using static Microsoft.ML.Transforms.ValueToKeyMappingEstimator;

namespace MlNetFinetune.Tests;

/// <summary>
/// Fits the estimator once, in the flow of ML.NET's image-classification transfer-learning sample
/// (DeepLearning_ImageClassification_Training), on 240 real Fashion-MNIST images, with a private bottleneck cache.
/// </summary>
public sealed class EstimatorFixture : IDisposable
{
    public EstimatorFixture()
    {
        Root = Directory.CreateTempSubdirectory("mlnetfinetune-estimator-").FullName;
        Workspace = Path.Combine(Root, "workspace");
        var ml = new MLContext(seed: 1);
        var images = Directory.GetDirectories(TestData.SampleFolder).Order(StringComparer.Ordinal)
            .SelectMany(folder => Directory.GetFiles(folder).Order(StringComparer.Ordinal).Take(24)
                .Select(file => new ImageData(Path.GetRelativePath(TestData.SampleFolder, file), Path.GetFileName(folder))));
        var shuffled = ml.Data.ShuffleRows(ml.Data.LoadFromEnumerable(images));
        var prepared = ml.Transforms.Conversion.MapValueToKey("LabelAsKey", "Label", keyOrdinality: KeyOrdinality.ByValue)
            .Append(ml.Transforms.LoadRawImageBytes("Image", TestData.SampleFolder, "ImagePath"))
            .Fit(shuffled)
            .Transform(shuffled);
        var split = ml.Data.TrainTestSplit(prepared, testFraction: 0.2);
        (Train, Test) = (split.TrainSet, split.TestSet);
        var pipeline = ml.MulticlassClassification.Trainers.ImageClassification(new ImageClassificationTrainer.Options
            {
                FeatureColumnName = "Image",
                LabelColumnName = "LabelAsKey",
                ValidationSet = Test,
                WorkspacePath = Workspace,
                MetricsCallback = Metrics.Add,
                Log = Log.Add,
            })
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel", "PredictedLabel"));
        Model = pipeline.Fit(Train);
        Context = ml;
    }

    public string Root { get; }

    public string Workspace { get; }

    public MLContext Context { get; }

    public IDataView Train { get; }

    public IDataView Test { get; }

    public ITransformer Model { get; }

    public List<ImageClassificationTrainer.ImageClassificationMetrics> Metrics { get; } = [];

    public List<string> Log { get; } = [];

    public void Dispose()
    {
        (Model as IDisposable)?.Dispose();
        Directory.Delete(Root, recursive: true);
    }
}

/// <summary>The sample's data classes, as the sample declares them (read-only fields).</summary>
public sealed class ImageData(string imagePath, string label)
{
    public readonly string ImagePath = imagePath;

    public readonly string Label = label;
}

public sealed class InMemoryImageData(byte[] image, string label, string imageFileName)
{
    public readonly byte[] Image = image;

    public readonly string Label = label;

    public readonly string ImageFileName = imageFileName;
}

public sealed class SamplePrediction
{
    [ColumnName("Score")]
    public float[] Score = [];

    [ColumnName("PredictedLabel")]
    public string PredictedLabel = string.Empty;
}

public sealed class EstimatorTests(EstimatorFixture fixture) : IClassFixture<EstimatorFixture>
{
    [Fact]
    public void PortedSampleEvaluatesOnHeldOutRows()
    {
        // Given the model fitted in the sample's flow
        var ml = fixture.Context;

        // When it scores the test rows, as the sample's EvaluateModel does
        var metrics = ml.MulticlassClassification.Evaluate(fixture.Model.Transform(fixture.Test), labelColumnName: "LabelAsKey", predictedLabelColumnName: "PredictedLabel");

        // Then it classifies 10 Fashion-MNIST classes far above chance (0.1)
        Assert.True(metrics.MicroAccuracy > 0.6, $"accuracy {metrics.MicroAccuracy}");
    }

    [Fact]
    public void SavedModelLoadsInAFreshContextAndPredictsAsBefore()
    {
        // Given the fitted model saved as the sample saves it
        var path = Path.Combine(fixture.Root, "imageClassifier.zip");
        fixture.Context.Model.Save(fixture.Model, fixture.Train.Schema, path);
        var files = TestFiles(5);
        using var engine = fixture.Context.Model.CreatePredictionEngine<InMemoryImageData, SamplePrediction>(fixture.Model);
        var before = files.Select(f => engine.Predict(f)).ToList();

        // When a new context (whose component catalog knows nothing of this assembly) loads it and predicts
        var fresh = new MLContext(seed: 2);
        var loaded = fresh.Model.Load(path, out _);
        using var loadedEngine = fresh.Model.CreatePredictionEngine<InMemoryImageData, SamplePrediction>(loaded);
        var after = files.Select(f => loadedEngine.Predict(f)).ToList();
        (loaded as IDisposable)?.Dispose();

        // Then the answers are the same, class names included
        for (var i = 0; i < files.Count; i++)
        {
            Assert.Equal(before[i].PredictedLabel, after[i].PredictedLabel);
            Assert.Equal(before[i].Score, after[i].Score);
            Assert.Equal(10, after[i].Score.Length);
        }
    }

    [Fact]
    public void OutputAddsOnlyScoreAndPredictedLabel()
    {
        // Given the input columns of the test rows
        var input = fixture.Test.Schema.Select(c => c.Name).ToList();

        // When the fitted model transforms them
        var output = fixture.Model.Transform(fixture.Test).Schema;

        // Then, as with ML.NET's trainers, the output is the input plus PredictedLabel (a key, hidden behind the class
        // name the sample's MapKeyToValue puts next to it) and Score, with no working column left behind, hidden or not
        Assert.Equal([.. input, "PredictedLabel", "PredictedLabel", "Score"], output.Select(c => c.Name));
        Assert.IsType<KeyDataViewType>(output[input.Count].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 10), output["Score"].Type);
        Assert.Equal(TextDataViewType.Instance, output["PredictedLabel"].Type);
    }

    [Fact]
    public void MetricsCallbackHearsFeaturizationAndEveryHeadEpoch()
    {
        // Given the metrics the fit reported
        var metrics = fixture.Metrics;

        // Then featurization progress came for both sets, up to their sizes
        var bottleneck = metrics.Where(m => m.Bottleneck is not null).Select(m => m.Bottleneck!).ToList();
        var trainRows = fixture.Context.Data.CreateEnumerable<PathRow>(fixture.Train, reuseRowObject: false).Count();
        Assert.Equal(trainRows, bottleneck.Where(b => b.DatasetUsed == ImageClassificationTrainer.ImageClassificationMetrics.Dataset.Train).Max(b => b.Index));
        Assert.Contains(bottleneck, b => b.DatasetUsed == ImageClassificationTrainer.ImageClassificationMetrics.Dataset.Validation);

        // And every head epoch of every L2 strength reported validation scores, each preceded by the training rows' scores
        var epochs = metrics.Where(m => m.Train is not null).Select(m => m.Train!).ToList();
        var validation = epochs.Where(e => e.DatasetUsed == ImageClassificationTrainer.ImageClassificationMetrics.Dataset.Validation).ToList();
        Assert.Equal([1f, 10f, 100f, 1000f], validation.Select(e => e.L2Regularization).Distinct());
        Assert.All(validation.GroupBy(e => e.L2Regularization), g => Assert.Equal(Enumerable.Range(1, g.Count()), g.Select(e => e.Epoch)));
        Assert.Equal(validation.Count, epochs.Count(e => e.DatasetUsed == ImageClassificationTrainer.ImageClassificationMetrics.Dataset.Train));
        Assert.All(epochs, e => Assert.InRange(e.Accuracy, 0f, 1f));
        Assert.Contains(fixture.Log, line => line.StartsWith("Head fitted", StringComparison.Ordinal));
    }

    [Fact]
    public void DecodedImagesInADefaultNamedColumnPassThroughUnchanged()
    {
        // Given decoded images (LoadImages) in the default feature column "Features", labels in "Label", 3 classes
        var ml = new MLContext(seed: 1);
        var images = new[] { "Bag", "Sandal", "Trouser" }
            .SelectMany(c => Directory.GetFiles(Path.Combine(TestData.SampleFolder, c)).Order(StringComparer.Ordinal).Take(12)
                .Select(f => new ImageData(Path.GetRelativePath(TestData.SampleFolder, f), c)));
        var data = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.LoadImages("Features", TestData.SampleFolder, "ImagePath"))
            .Fit(ml.Data.LoadFromEnumerable(images))
            .Transform(ml.Data.LoadFromEnumerable(images));

        // When the trainer fits with its defaults (a 10% validation split) and other output names
        var model = ml.MulticlassClassification.Trainers.ImageClassification(new ImageClassificationTrainer.Options
        {
            WorkspacePath = fixture.Workspace,
            ScoreColumnName = "Probabilities",
            PredictedLabelColumnName = "Class",
        }).Fit(data);
        var output = model.Transform(data);
        var predicted = ml.Data.CreateEnumerable<ClassRow>(ml.Transforms.Conversion.MapKeyToValue("Class").Fit(output).Transform(output), reuseRowObject: false).ToList();

        // Then "Features" is still the image column, and the training images are classified (nearly) all right
        Assert.IsType<ImageDataViewType>(output.Schema["Features"].Type);
        Assert.Null(output.Schema.GetColumnOrNull("Score"));
        Assert.Equal(3, ((VectorDataViewType)output.Schema["Probabilities"].Type).Size);
        Assert.True(predicted.Count(p => p.Class == p.ImagePath.Split('/')[0]) >= 33, string.Join(", ", predicted.Select(p => p.Class)));
        model.Dispose();
    }

    [Fact]
    public void UndecodableImagesAreSkippedInTrainingAndRefusedInPrediction()
    {
        // Given 3 classes of real images held in memory, one of them cut off before its end
        var ml = new MLContext(seed: 1);
        var rows = new[] { "Bag", "Sandal", "Trouser" }
            .SelectMany(c => Directory.GetFiles(Path.Combine(TestData.SampleFolder, c)).Order(StringComparer.Ordinal).Take(8)
                .Select(f => new InMemoryImageData(File.ReadAllBytes(f), c, Path.GetFileName(f))))
            .ToList();
        var truncated = rows[5].Image[..(rows[5].Image.Length / 2)];
        rows[5] = new InMemoryImageData(truncated, rows[5].Label, "truncated.png");
        var raw = ml.Data.LoadFromEnumerable(rows);
        var data = ml.Transforms.Conversion.MapValueToKey("LabelAsKey", "Label").Fit(raw).Transform(raw);
        var log = new List<string>();

        // When the trainer fits them and the model then meets the cut-off image
        var model = ml.MulticlassClassification.Trainers.ImageClassification(new ImageClassificationTrainer.Options
        {
            LabelColumnName = "LabelAsKey",
            FeatureColumnName = "Image",
            WorkspacePath = fixture.Workspace,
            ImageSize = 64,
            Features = "s3+s4",
            Log = log.Add,
        }).Fit(data);
        using var engine = ml.Model.CreatePredictionEngine<InMemoryImageData, KeyPrediction>(model);
        var refused = Assert.Throws<MlNetFinetune.Images.InvalidImageException>(() => engine.Predict(rows[5]));
        var answered = engine.Predict(rows[0]);
        model.Dispose();

        // Then training skipped it by row, naming why, and prediction refuses it in one line
        Assert.Contains(log, line => line.StartsWith("skipped row 5: truncated PNG", StringComparison.Ordinal));
        Assert.Equal(MlNetFinetune.Images.ImageProblem.Truncated, refused.Problem);
        Assert.StartsWith("image: truncated PNG", refused.Message, StringComparison.Ordinal);
        Assert.Equal(3, answered.Score.Length);
    }

    [Fact]
    public void WrongColumnsAndOptionsAreNamedBeforeAnyWork()
    {
        // Given data whose label is text, data with a column named like a working column, and an impossible option
        var ml = new MLContext(seed: 1);
        var raw = ml.Data.LoadFromEnumerable(new[] { "Bag", "Coat" }.Select(c => new ImageData(Path.GetRelativePath(TestData.SampleFolder, Directory.GetFiles(Path.Combine(TestData.SampleFolder, c)).Order(StringComparer.Ordinal).First()), c)));
        var bytes = ml.Transforms.LoadRawImageBytes("Image", TestData.SampleFolder, "ImagePath").Fit(raw).Transform(raw);
        var keyed = ml.Transforms.Conversion.MapValueToKey("LabelAsKey", "Label").Fit(bytes).Transform(bytes);
        var withPixels = ml.Transforms.CopyColumns("Pixels", "ImagePath").Fit(keyed).Transform(keyed);

        // When the trainer fits them
        var textLabel = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.ImageClassification("Label", "Image").Fit(bytes));
        var reserved = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.ImageClassification("LabelAsKey", "Image").Fit(withPixels));
        var epoch = Assert.Throws<UserInputException>(() =>
            ml.MulticlassClassification.Trainers.ImageClassification(new ImageClassificationTrainer.Options { LabelColumnName = "LabelAsKey", FeatureColumnName = "Image", Epoch = 0 }).Fit(keyed));
        var missing = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.ImageClassification("LabelAsKey", "Photo").Fit(keyed));

        // Then each message names the column or option and what is wrong
        Assert.Contains("label column 'Label': expected a key", textLabel.Message, StringComparison.Ordinal);
        Assert.Contains("column 'Pixels'", reserved.Message, StringComparison.Ordinal);
        Assert.StartsWith("Epoch 0: must be at least 1", epoch.Message, StringComparison.Ordinal);
        Assert.Contains("image column 'Photo'", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OutputSchemaShapeNamesScoreAndPredictedKey()
    {
        // Given the shape of the training rows (ML.NET makes shapes only internally)
        var create = typeof(SchemaShape).GetMethod("Create", BindingFlags.NonPublic | BindingFlags.Static)!;
        var shape = (SchemaShape)create.Invoke(null, [fixture.Train.Schema])!;
        var trainer = fixture.Context.MulticlassClassification.Trainers.ImageClassification("LabelAsKey", "Image", "Probabilities", "Class");

        // When the trainer is asked for its output shape
        var output = trainer.GetOutputSchema(shape);

        // Then it adds a float vector of probabilities and a key
        var probabilities = output.Single(c => c.Name == "Probabilities");
        Assert.Equal(NumberDataViewType.Single, probabilities.ItemType);
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, probabilities.Kind);
        Assert.True(output.Single(c => c.Name == "Class").IsKey);
        Assert.Throws<ArgumentOutOfRangeException>(() => fixture.Context.MulticlassClassification.Trainers.ImageClassification("Label", "Image").GetOutputSchema(shape));
    }

    private static List<InMemoryImageData> TestFiles(int count) =>
    [
        .. Directory.GetDirectories(TestData.SampleFolder).Order(StringComparer.Ordinal)
            .Select(folder => Directory.GetFiles(folder).Order(StringComparer.Ordinal).Last())
            .Take(count)
            .Select(file => new InMemoryImageData(File.ReadAllBytes(file), Path.GetFileName(Path.GetDirectoryName(file))!, Path.GetFileName(file))),
    ];
}

public sealed class ClassRow
{
    public string ImagePath { get; set; } = string.Empty;

    public string Class { get; set; } = string.Empty;
}

public sealed class PathRow
{
    public string ImagePath { get; set; } = string.Empty;
}

public sealed class KeyPrediction
{
    public float[] Score { get; set; } = [];
}
