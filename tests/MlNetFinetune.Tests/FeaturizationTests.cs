using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests;

[Collection(SampleModelCollection.Name)]
public sealed class FeaturizationTests(SampleModelFixture fixture)
{
    private static readonly BackboneOptions s_small = new(64, "s3+s4");

    private string NewFolder() => Directory.CreateDirectory(Path.Combine(fixture.Root, "feat-" + Guid.NewGuid().ToString("N")[..8])).FullName;

    private static List<ImageRecord> SampleImages(int perClass) =>
        [.. ImageFolder.Scan(TestData.SampleFolder).Images.GroupBy(i => i.Label).SelectMany(g => g.Take(perClass))];

    [Fact]
    public void BulkFeaturesEqualTheSavedChainsFeatures()
    {
        var backbone = fixture.Result.Backbone;
        var fingerprint = backbone.Fingerprint;
        var graph = Path.Combine(fixture.Workspace, "graphs", $"{fingerprint}-chain.onnx");
        var ml = new MLContext();
        var chain = ImageClassificationChain.Featurizer(ml, graph, backbone.ImageSize).Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
        using var engine = ml.Model.CreatePredictionEngine<ImageInput, FeaturesRow>(chain);
        using var cache = BottleneckCache.Open(fixture.Workspace, FeatureStore.CacheName(backbone, FeaturizationOptions.DefaultAlpha), backbone.FeatureSize);

        foreach (var path in SampleImages(1).Select(i => i.Path))
        {
            var bytes = File.ReadAllBytes(path);
            using var image = ImageDecoder.Decode(bytes, path, alpha: FeaturizationOptions.DefaultAlpha);
            var fromChain = engine.Predict(new ImageInput { Image = image }).Features;
            Assert.True(cache.TryGet(BulkFeaturizer.ImageKey(bytes), out var fromBulk));
            Assert.Equal(backbone.FeatureSize, fromChain.Length);
            var largest = fromChain.Zip(fromBulk, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(largest <= 1e-4, $"{path}: bulk and chain features differ by {largest}");
        }
    }

    [Fact]
    public void InterruptedFeaturizationResumesWithoutRecomputingFinishedImages()
    {
        var workspace = NewFolder();
        var paths = SampleImages(4);
        var ml = new MLContext();
        var featurizer = new BulkFeaturizer(ml, new ResNet18Backbone(s_small), new FeaturizationOptions(BatchSize: 8));
        using var interrupt = new CancellationTokenSource();
        var progress = new CallbackProgress(p =>
        {
            if (p.Computed >= 8)
            {
                interrupt.Cancel();
            }
        });

        using (var cache = BottleneckCache.Open(workspace, "resume", s_small.FeatureSize))
        {
            Assert.ThrowsAny<OperationCanceledException>(() => featurizer.Featurize(paths, cache, progress, interrupt.Token));
        }

        // A killed process can leave half a record at the end of the file; it must be ignored and cut off.
        var file = Directory.GetFiles(Path.Combine(workspace, "bottlenecks", "resume"), "*.bottlenecks").Single();
        File.AppendAllText(file, "torn");

        using var reopened = BottleneckCache.Open(workspace, "resume", s_small.FeatureSize);
        var finished = reopened.LoadedCount;
        Assert.InRange(finished, 8, paths.Count - 1);
        var resumed = featurizer.Featurize(paths, reopened);
        Assert.Equal(paths.Count - finished, resumed.Computed);
        Assert.Equal(finished, resumed.FromCache);
        Assert.Equal(paths.Count, reopened.Count);
        reopened.Dispose();
        Assert.Equal(paths.Count, BottleneckCache.Open(workspace, "resume", s_small.FeatureSize).LoadedCount);
    }

    [Fact]
    public void ShardsCoverEveryImageOnceAndMergeIntoTheSameModelAsOneRun()
    {
        var data = TestData.CopySubset(NewFolder(), 10, "Bag", "Sneaker", "Trouser");
        var sharded = NewFolder();
        var options = new TrainingOptions(data, OutputFolder: NewFolder(), Workspace: sharded, Seed: 5) { ImageSize = 64, Features = "s3+s4" };

        var shards = Enumerable.Range(1, 3).Select(k => new ImageClassifierTrainer(options).FeaturizeShard(new ShardSpec(k, 3))).ToList();
        var mergedRun = new ImageClassifierTrainer(options).Train();
        var singleRun = new ImageClassifierTrainer(options with { OutputFolder = NewFolder(), Workspace = NewFolder() }).Train();

        var perShard = shards.SelectMany(s => s.Images.Select(i => i.Image.Path)).ToList();
        Assert.Equal(30, perShard.Count);
        Assert.Equal(30, perShard.Distinct().Count());
        Assert.All(shards, s => Assert.InRange(s.Computed, 1, 29));
        Assert.Equal(0, mergedRun.Featurization.Computed);
        Assert.Equal(
            singleRun.HeldOutPredictions.Select(p => (p.Path, p.Scores)),
            mergedRun.HeldOutPredictions.Select(p => (p.Path, p.Scores)));
    }

    [Fact]
    public void ShardSpecRejectsNonsense()
    {
        foreach (var text in new[] { "0/3", "4/3", "3", "a/b", "1/0" })
        {
            var error = Assert.Throws<UserInputException>(() => ShardSpec.Parse(text));
            Assert.Contains(text, error.Message);
        }
    }

    [Fact]
    public void ExplicitResolutionAndTapsRoundTripThroughThePredictor()
    {
        var data = TestData.CopySubset(NewFolder(), 10, "Bag", "Sneaker");
        var options = new TrainingOptions(data, OutputFolder: NewFolder(), Workspace: fixture.Workspace, Seed: 2) { ImageSize = 96, Features = "s3g2+s4" };

        var result = new ImageClassifierTrainer(options).Train();

        Assert.Equal(256 * 4 + 512, result.Report.Training.FeatureSize);
        Assert.Contains("size=96", result.Report.Training.Backbone);
        using var classifier = Prediction.ImageClassifier.Load(result.ModelPath);
        Assert.Equal(96, classifier.Manifest.ImageSize);
        foreach (var expected in result.HeldOutPredictions)
        {
            using var image = ImageDecoder.Decode(File.ReadAllBytes(expected.Path), expected.Path);
            var scores = classifier.Scores(image);
            Assert.Equal(expected.Scores.Length, scores.Length);
            Assert.All(scores.Zip(expected.Scores), pair => Assert.True(Math.Abs(pair.First - pair.Second) <= 1e-5));
        }
    }

    [Fact]
    public void GpuRequestWithoutCudaFallsBackToTheCpuWithAMessage()
    {
        var graph = ResNet18Backbone.BuildGraph(s_small, batchSize: null);

        using var session = BackboneSession.Create(graph, gpuDevice: 0, out var message);

        Assert.NotNull(session);
        Assert.NotNull(message);
        Assert.Contains("GPU 0 not usable", message);
        Assert.Contains("CPU", message);
    }

    private sealed class FeaturesRow
    {
        [ColumnName(ColumnNames.Features)]
        public float[] Features { get; set; } = [];
    }

    private sealed class CallbackProgress(Action<FeaturizationProgress> report) : IProgress<FeaturizationProgress>
    {
        public void Report(FeaturizationProgress value) => report(value);
    }
}
