using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class HeadTrainingTests(SampleModelFixture fixture)
{
    [Fact]
    public void EarlyStoppingKeepsTheBestEpochNotTheLast()
    {
        var (backbone, ml, train, validation, labelToKey) = FourTrainingAndTenValidationImagesPerClass();
        var trainView = labelToKey.Transform(FeatureRow.ToDataView(ml, train, backbone.FeatureSize));
        var validationView = labelToKey.Transform(FeatureRow.ToDataView(ml, validation, backbone.FeatureSize));

        // Nearly unregularised on 40 images, one iteration an epoch: the head overfits and validation loss turns up.
        var run = HeadTrainer.TrainWithEarlyStopping(ml, trainView, validationView, l2: 1e-4f, new HeadOptions(EpochIterations: 1, Patience: 3), maxEpochs: 40);

        var lowest = run.ValidationLogLoss.Min();
        Assert.Equal(run.ValidationLogLoss.ToList().IndexOf(lowest) + 1, run.BestEpoch);
        Assert.True(run.EpochsRun > run.BestEpoch, "training should have gone on past the best epoch");
        Assert.True(run.ValidationLogLoss[^1] > lowest);
        var kept = ml.MulticlassClassification.Evaluate(run.Best.Transform(validationView), labelColumnName: ColumnNames.LabelKey);
        Assert.Equal(lowest, kept.LogLoss, 6);
    }

    [Fact]
    public void ValidationRowsTheCallerBringsAreNeverTrainedOn()
    {
        // Given 4 training and 10 validation images per class, and a fixed L2 strength
        var (backbone, ml, train, validation, labelToKey) = FourTrainingAndTenValidationImagesPerClass();
        var validationView = labelToKey.Transform(FeatureRow.ToDataView(ml, validation, backbone.FeatureSize));
        var options = new HeadOptions(L2Regularization: 10, MaximumIterations: 60, EpochIterations: 5);
        float[][] Scores(ITransformer head) => [.. ml.Data.CreateEnumerable<ScoreRow>(head.Transform(validationView), reuseRowObject: false).Select(r => r.Score)];

        // When the head is fitted keeping the validation rows out, and again refitting on them (the Trainer's way)
        var epochs = new List<HeadEpoch>();
        var kept = HeadTrainer.Fit(ml, labelToKey, train, validation, backbone.FeatureSize, options, onEpoch: epochs.Add, refitOnValidation: false);
        var refitted = HeadTrainer.Fit(ml, labelToKey, train, validation, backbone.FeatureSize, options);
        var searchRun = HeadTrainer.TrainWithEarlyStopping(ml, labelToKey.Transform(FeatureRow.ToDataView(ml, train, backbone.FeatureSize)), validationView, 10, options, maxEpochs: 12);

        // Then the kept head is the search's best epoch, trained on the training rows only, and every epoch was reported
        Assert.Equal(Scores(searchRun.Best), Scores(kept.Transformer));
        Assert.NotEqual(Scores(refitted.Transformer), Scores(kept.Transformer));
        Assert.Equal(Enumerable.Range(1, searchRun.EpochsRun), epochs.Select(e => e.Epoch));
        Assert.Equal(searchRun.ValidationLogLoss, epochs.Select(e => e.Validation.LogLoss));
    }

    [Fact]
    public void HeadSearchNeverSeesTheHeldOutImages()
    {
        // Same training images, two different held-out folders: the search's validation scores and choice must not move.
        var root = Directory.CreateDirectory(Path.Combine(fixture.Root, "search-" + Guid.NewGuid().ToString("N")[..8])).FullName;
        var data = TestData.CopySubset(root, 15, "Bag", "Coat", "Shirt");
        var firstTest = Path.Combine(root, "test-a");
        var secondTest = Path.Combine(root, "test-b");
        foreach (var (folder, skip) in new[] { (firstTest, 15), (secondTest, 25) })
        {
            foreach (var name in new[] { "Bag", "Coat", "Shirt" })
            {
                var target = Directory.CreateDirectory(Path.Combine(folder, name)).FullName;
                foreach (var file in Directory.GetFiles(Path.Combine(TestData.SampleFolder, name)).Order(StringComparer.Ordinal).Skip(skip).Take(10))
                {
                    File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
                }
            }
        }

        TrainingResult Run(string test) => new ImageClassifierTrainer(
            new TrainingOptions(data, TestFolder: test, OutputFolder: Path.Combine(root, Path.GetFileName(test) + "-out"), Workspace: fixture.Workspace, Seed: 4)).Train();
        var first = Run(firstTest);
        var second = Run(secondTest);

        Assert.NotEqual(first.HeldOutPredictions.Select(p => p.Path), second.HeldOutPredictions.Select(p => p.Path));
        Assert.Equal(first.Report.Training.HeadCandidates, second.Report.Training.HeadCandidates);
        Assert.Equal(first.Report.Training.L2Regularization, second.Report.Training.L2Regularization);
    }

    [Fact]
    public void AutoSearchScoresEveryHeadTypeOnValidationAndKeepsTheBest()
    {
        var root = Directory.CreateDirectory(Path.Combine(fixture.Root, "auto-" + Guid.NewGuid().ToString("N")[..8])).FullName;
        var data = TestData.CopySubset(root, 20, "Bag", "Coat", "Sandal");
        var options = new TrainingOptions(data, OutputFolder: Path.Combine(root, "out"), Workspace: fixture.Workspace, Seed: 6)
        {
            Head = new HeadOptions(Search: HeadOptions.AutoSearch),
        };

        var result = new ImageClassifierTrainer(options).Train();

        var candidates = result.Report.Training.HeadCandidates;
        Assert.Contains(candidates, c => c.Head == HeadTrainer.SdcaHead);
        Assert.Contains(candidates, c => c.Head == HeadTrainer.LightGbmHead);
        Assert.Equal(4, candidates.Count(c => c.Head == HeadTrainer.SoftmaxHead));
        var best = candidates.Max(c => c.ValidationAccuracy);
        Assert.Contains(candidates, c => c.Head == result.Report.Training.Head && c.ValidationAccuracy == best);
        using var classifier = Prediction.ImageClassifier.Load(result.ModelPath);
        Assert.Equal(result.Report.Training.Head, classifier.Manifest.Head);
        Assert.Equal(result.HeldOutPredictions[0].PredictedLabel, classifier.Predict(result.HeldOutPredictions[0].Path).Label);
    }

    public sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }

    /// <summary>The sample's cached features: 4 training and 10 validation images per class, and the label-to-key map.</summary>
    private (IBackbone Backbone, MLContext Ml, List<FeatureRow> Train, List<FeatureRow> Validation, ITransformer LabelToKey) FourTrainingAndTenValidationImagesPerClass()
    {
        var backbone = fixture.Result.Backbone;
        using var store = FeatureStore.Open(new MLContext(), fixture.Workspace, backbone, new FeaturizationOptions());
        var images = ImageFolder.Scan(TestData.SampleFolder).Images;
        var features = store.Featurize(images).Images.ToDictionary(i => i.Image.Path, i => i.Features!);
        List<FeatureRow> Rows(IEnumerable<ImageRecord> part) =>
            [.. part.Select(i => new FeatureRow { Label = i.Label, Features = features[i.Path] })];
        var byClass = images.GroupBy(i => i.Label).ToList();
        var train = Rows(byClass.SelectMany(g => g.Take(4)));
        var validation = Rows(byClass.SelectMany(g => g.Skip(10).Take(10)));
        var ml = new MLContext(3);
        var labelToKey = ImageClassificationChain.LabelToKey(ml).Fit(FeatureRow.ToDataView(ml, train, backbone.FeatureSize));
        return (backbone, ml, train, validation, labelToKey);
    }
}
