using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests.Quantization;

[Collection(QuantizedBackboneFixture.Collection)]
public sealed class QuantizedFeatureTests(QuantizedBackboneFixture fixture)
{
    [Fact]
    public void Int8FeaturesStayCloseToTheFloatFeatures()
    {
        // Given the float features of the 500 sample images
        var expected = fixture.FloatFeatures;

        // When the int8 graph featurizes the same pixels
        var actual = fixture.Featurize(fixture.Int8Graph, fixture.Pixels);

        // Then each image's feature vector moves by a small share of its length: measured 5.6% on average and 11.5%
        // at most (calibrated on 50 of the images). The bars leave room for other ONNX Runtime kernels, not for a
        // broken range: one activation's range cut to a quarter moved the features by 13% to 81% on average
        // (measured on four layers, from the input to stage 3)
        var errors = expected.Zip(actual, RelativeError).ToList();
        Assert.True(errors.Average() <= 0.08, $"mean relative feature error {errors.Average():F3}");
        Assert.True(errors.Max() <= 0.2, $"largest relative feature error {errors.Max():F3}");
    }

    [Fact]
    public void HeadPredictsTheSameClassFromInt8Features()
    {
        // Given a head trained on the float features of 400 sample images
        var ml = new MLContext(1);
        var held = Enumerable.Range(0, fixture.Images.Count).Where(i => i % 5 == 0).ToList();
        var train = Enumerable.Range(0, fixture.Images.Count).Where(i => i % 5 != 0).Select(i => Row(i, fixture.FloatFeatures)).ToList();
        var size = fixture.Options.FeatureSize;
        var labelToKey = ImageClassificationChain.LabelToKey(ml).Fit(FeatureRow.ToDataView(ml, train, size));
        var head = ImageClassificationChain.Head(ml, l2Regularization: 10, maximumIterations: 100)
            .Fit(labelToKey.Transform(FeatureRow.ToDataView(ml, train, size)));
        var int8Features = fixture.Featurize(fixture.Int8Graph, fixture.Pixels);

        // When it classifies the other 100 images from their float and from their int8 features
        int[] Classify(IReadOnlyList<float[]> features) => [.. HeadTrainer
            .PredictScores(ml, labelToKey, head, [.. held.Select(i => Row(i, features))], size)
            .Select(scores => Array.IndexOf(scores, scores.Max()))];
        var fromFloat = Classify(fixture.FloatFeatures);
        var fromInt8 = Classify(int8Features);

        // Then at least 97 of the 100 top-1 classes agree (100 measured). Each trained on its own features, the int8
        // and float models disagreed on 1.4% of 10,000 held-out Fashion-MNIST images (1.0% on the full set), so 3 in
        // 100 is about twice what a sound quantization does
        var agreeing = fromFloat.Zip(fromInt8, (a, b) => a == b).Count(same => same);
        Assert.True(agreeing >= 97, $"{agreeing} of {held.Count} top-1 classes agree");
    }

    [Fact]
    public void BatchOneGraphComputesTheBulkGraphsFeatures()
    {
        // Given the int8 features of the bulk (dynamic-batch) graph, which the bottleneck cache would hold
        var bulk = fixture.Featurize(fixture.Int8Graph, fixture.Pixels.Take(10).ToList());

        // When the batch-1 graph that the saved model chain runs featurizes the same images one by one
        using var session = new InferenceSession(fixture.Int8BatchOneGraph);
        using var runOptions = new RunOptions();
        var side = fixture.Options.ImageSize;
        var single = fixture.Pixels.Take(10).Select(pixels =>
        {
            using var input = OrtValue.CreateTensorValueFromMemory(pixels, [1, 3, side, side]);
            using var outputs = session.Run(runOptions, ["Pixels"], [input], ["Features"]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }).ToList();

        // Then both give the same features: a model trained on cached int8 features predicts with what it was trained on
        for (var i = 0; i < bulk.Count; i++)
        {
            Assert.Equal(bulk[i], single[i]);
        }
    }

    [Fact]
    public void SavedChainWithTheInt8GraphReloadsAndComputesTheCachedFeatures()
    {
        // Given the ML.NET featurizer chain on the int8 batch-1 graph, saved to a zip and the graph file deleted
        var ml = new MLContext(1);
        var folder = Directory.CreateTempSubdirectory("mlnetfinetune-int8-chain-").FullName;
        var graphPath = Path.Combine(folder, "int8.onnx");
        File.WriteAllBytes(graphPath, fixture.Int8BatchOneGraph);
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        var chain = ImageClassificationChain.Featurizer(ml, graphPath, fixture.Options.ImageSize).Fit(empty);
        var zip = Path.Combine(folder, "featurizer.zip");
        ml.Model.Save(chain, empty.Schema, zip);
        File.Delete(graphPath);

        // When the reloaded chain featurizes sample files, as the Predictor does
        var reloaded = ml.Model.Load(zip, out _);
        using var engine = ml.Model.CreatePredictionEngine<ImageInput, FeaturesRow>(reloaded);
        var features = fixture.Images.Take(5).Select(image =>
        {
            using var decoded = ImageDecoder.Decode(File.ReadAllBytes(image.Path), image.Path);
            return engine.Predict(new ImageInput { Image = decoded }).Features;
        }).ToList();

        // Then it computes exactly the features the bulk int8 graph computes for the bottleneck cache
        var bulk = fixture.Featurize(fixture.Int8Graph, fixture.Pixels.Take(5).ToList());
        for (var i = 0; i < bulk.Count; i++)
        {
            Assert.Equal(bulk[i], features[i]);
        }

        Directory.Delete(folder, recursive: true);
    }

    private FeatureRow Row(int index, IReadOnlyList<float[]> features) => new() { Label = fixture.Images[index].Label, Features = features[index] };

    private sealed class FeaturesRow
    {
        [Microsoft.ML.Data.ColumnName(ColumnNames.Features)]
        public float[] Features { get; set; } = [];
    }

    private static double RelativeError(float[] expected, float[] actual)
    {
        double difference = 0, length = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            difference += (double)(expected[i] - actual[i]) * (expected[i] - actual[i]);
            length += (double)expected[i] * expected[i];
        }

        return Math.Sqrt(difference / length);
    }
}
