using System.IO.Compression;
using System.Text.Json.Nodes;
using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Explanations;
using MlNetFinetune.Export;
using MlNetFinetune.Prediction;
using MlNetFinetune.Training;

namespace MlNetFinetune.Tests.Quantization;

/// <summary>A model trained with <c>--precision int8</c>: its cache, its manifest, its features and its predictions.</summary>
[Collection(Int8ModelFixture.Collection)]
public sealed class Int8TrainingTests(Int8ModelFixture fixture)
{
    [Fact]
    public void Int8RunComputesEveryFeatureItselfNextToTheFloatCache()
    {
        // Given a workspace holding the float features of all 500 sample images
        Assert.Equal(500, fixture.FloatFeatures.Computed);

        // When the int8 run featurized the same images (in the fixture)
        var int8 = fixture.Result.Featurization;

        // Then it took none of the float features, and the two precisions sit in cache folders of their own
        Assert.Equal(500, int8.Computed);
        Assert.Equal(0, int8.FromCache);
        var backbone = Assert.IsType<Int8Backbone>(fixture.Result.Backbone);
        var alpha = fixture.Int8Options.Featurization.Alpha;
        Assert.NotEqual(FeatureStore.CacheName(backbone.Float, alpha), FeatureStore.CacheName(backbone, alpha));
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(fixture.Workspace, "bottlenecks")).Length);
    }

    [Fact]
    public void EachPrecisionFindsOnlyItsOwnFeaturesAgain()
    {
        // Given the float and the int8 features of the sample in one workspace

        // When both precisions run again on the same workspace
        var floatAgain = new ImageClassifierTrainer(fixture.FloatOptions).FeaturizeShard(ShardSpec.Parse("1/1"));
        var log = new List<string>();
        var int8Again = new ImageClassifierTrainer(fixture.Int8Options with { OutputFolder = Path.Combine(fixture.Root, "int8-again") }).Train(log: log.Add);

        // Then each takes every feature from its own cache: the int8 run reads the stored calibration back, so its
        // fingerprint is the first run's, and it computes the same scores; the float features are the float ones
        Assert.Equal((0, 500), (floatAgain.Computed, floatAgain.FromCache));
        Assert.Equal((0, 500), (int8Again.Featurization.Computed, int8Again.Featurization.FromCache));
        Assert.Contains(log, line => line.StartsWith("Int8 calibration", StringComparison.Ordinal) && line.Contains("reused", StringComparison.Ordinal));
        Assert.Equal(fixture.Result.Backbone.Fingerprint, int8Again.Backbone.Fingerprint);
        Assert.Equal(fixture.Result.HeldOutPredictions.Select(p => p.Scores), int8Again.HeldOutPredictions.Select(p => p.Scores));
        Assert.Equal(fixture.FloatFeatures.Images.Select(i => i.Features), floatAgain.Images.Select(i => i.Features));
    }

    [Fact]
    public void Int8FeaturesStayWithinTheToleranceOfTheFloatFeatures()
    {
        // Given the float and the int8 features of the 500 sample images, as the Trainer computed and cached them
        var floatFeatures = fixture.FloatFeatures.Images.ToDictionary(i => i.Image.Path, i => i.Features!);

        // When each image's int8 vector is compared with its float vector
        var errors = fixture.Result.Featurization.Images.Select(i => RelativeError(floatFeatures[i.Image.Path], i.Features!)).ToList();

        // Then they differ, and by little: the Euclidean distance is at most 20% of the float vector's length for
        // every image and 8% on average (5.6% average and 11.5% largest measured with 50 calibration images)
        Assert.All(errors, e => Assert.True(e is > 0 and <= 0.2, $"relative feature error {e:F3}"));
        Assert.True(errors.Average() <= 0.08, $"mean relative feature error {errors.Average():F3}");
    }

    [Fact]
    public void ManifestRecordsTheInt8PrecisionAndItsCalibration()
    {
        var manifest = ModelManifest.ReadFrom(fixture.Result.ModelPath);

        Assert.Equal(ModelManifest.Int8, manifest.Precision);
        Assert.Equal("percentile 99.999 on 260 training images", manifest.Calibration);
        Assert.EndsWith(";precision=int8", fixture.Result.Report.Training.Backbone);
    }

    [Fact]
    public void ManifestWithoutAPrecisionReadsAsFp32()
    {
        // Given an int8 model whose manifest is rewritten as a build from before int8 wrote it
        var copy = Path.Combine(fixture.Root, "older-manifest.zip");
        File.Copy(fixture.Result.ModelPath, copy, overwrite: true);
        using (var archive = ZipFile.Open(copy, ZipArchiveMode.Update))
        {
            var entry = archive.GetEntry(ModelManifest.EntryName)!;
            JsonObject json;
            using (var stream = entry.Open())
            {
                json = JsonNode.Parse(stream)!.AsObject();
            }

            json.Remove("precision");
            json.Remove("calibration");
            entry.Delete();
            using var writer = new StreamWriter(archive.CreateEntry(ModelManifest.EntryName).Open());
            writer.Write(json.ToJsonString());
        }

        // When it is read
        var manifest = ModelManifest.ReadFrom(copy);

        // Then it is an fp32 model with no calibration
        Assert.Equal(ModelManifest.Fp32, manifest.Precision);
        Assert.Null(manifest.Calibration);
    }

    [Fact]
    public void ImageClassifierReproducesTheTrainersHeldOutScores()
    {
        // Given the int8 model.zip, loaded as the Predictor and the server load it
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath);

        // When it classifies every held-out image from its file
        // Then it computes the scores the Trainer computed from the cached int8 features
        Assert.True(classifier.RunsBackboneDirectly);
        HeldOutScores.AssertReproduced(classifier, fixture.Result.HeldOutPredictions);
    }

    [Fact]
    public void Int8ModelAskedToRunOnAGpuRunsOnTheCpuAndSaysSo()
    {
        // Given the int8 model loaded with a GPU asked for
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath, gpuDevice: 0);
        var expected = fixture.Result.HeldOutPredictions[0];

        // When it classifies a held-out image
        var actual = classifier.Predict(expected.Path, top: 10);

        // Then its backbone ran on the CPU, with the CPU's scores, and the classifier says why
        Assert.Equal($"{fixture.Result.ModelPath}: an int8 model; its backbone runs on the CPU", classifier.GpuFallbackMessage);
        var index = classifier.Classes.ToList().IndexOf(actual.Label);
        Assert.True(Math.Abs(expected.Scores[index] - actual.Top[0].Score) <= 1e-5f);
    }

    [Fact]
    public void ExplainerRunsTheInt8GraphOfTheModelFile()
    {
        // Given the int8 model and a held-out image
        var expected = fixture.Result.HeldOutPredictions[0];
        using var explainer = ModelExplainer.Load(fixture.Result.ModelPath);

        // When it is explained
        var explanation = explainer.Explain(File.ReadAllBytes(expected.Path), expected.Path, top: 10);

        // Then the explanation starts from the model's own prediction: the int8 graph, batched, scores as the Trainer did
        Assert.Equal(expected.PredictedLabel, explanation.Label);
        Assert.True(Math.Abs(expected.Scores.Max() - explanation.Confidence) <= 1e-5f, $"{explanation.Confidence} vs {expected.Scores.Max()}");
    }

    [Fact]
    public void ExportedOnnxRunsTheInt8GraphWithTheTrainersScores()
    {
        // Given the int8 model and ten held-out images as the model's own transforms turn them into pixels
        var onnxPath = Path.Combine(fixture.Root, "int8.onnx");
        var expected = fixture.Result.HeldOutPredictions.Take(10).ToList();
        var size = fixture.Result.Backbone.ImageSize;
        var pixels = CalibrationSample.Pixels(new MLContext(1), [.. expected.Select(p => new ImageRecord(p.Path, p.TrueLabel))], size);

        // When it is exported and ONNX Runtime runs the file on the ten images as one batch
        var outcome = CommandLineRunner.Predictor("export-onnx", "--model", fixture.Result.ModelPath, "--output", onnxPath);
        using var session = new InferenceSession(onnxPath);
        using var runOptions = new RunOptions();
        using var input = OrtValue.CreateTensorValueFromMemory(pixels.SelectMany(p => p).ToArray(), [pixels.Count, 3, size, size]);
        using var outputs = session.Run(runOptions, [OnnxExporter.InputName], [input], [OnnxExporter.OutputName]);
        var probabilities = outputs[0].GetTensorDataAsSpan<float>().ToArray();

        // Then the file says int8 and gives the Trainer's probabilities
        Assert.Equal(0, outcome.ExitCode);
        Assert.Equal(ModelManifest.Int8, session.ModelMetadata.CustomMetadataMap["precision"]);
        var classes = fixture.Result.Report.ClassNames.Count;
        for (var i = 0; i < expected.Count; i++)
        {
            var largest = probabilities.AsSpan(i * classes, classes).ToArray().Zip(expected[i].Scores, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(largest <= 1e-4f, $"{expected[i].Path}: largest probability difference {largest}");
        }
    }

    [Fact]
    public void PredictorPrintsTheTrainersLabel()
    {
        var expected = fixture.Result.HeldOutPredictions[0];

        var outcome = CommandLineRunner.Predictor("--model", fixture.Result.ModelPath, expected.Path);

        Assert.Equal(0, outcome.ExitCode);
        Assert.Equal(expected.PredictedLabel, outcome.Output.Trim().Split('\t')[1]);
    }

    [Fact]
    public void Int8ModelFileIsSmallerThanAQuarterOfTheFloatGraph()
    {
        // Given the float backbone's batch-1 graph, which an fp32 model.zip holds
        var backbone = Assert.IsType<Int8Backbone>(fixture.Result.Backbone);
        var floatGraphBytes = backbone.Float.BuildGraph(batchSize: 1).Length;

        // When the int8 model is saved
        var modelBytes = new FileInfo(fixture.Result.ModelPath).Length;

        // Then its int8 weights take a quarter of the float weights' bytes, and the whole file less than 30% of the float graph
        Assert.True(modelBytes < 0.3 * floatGraphBytes, $"int8 model.zip {modelBytes} bytes, float graph {floatGraphBytes} bytes");
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
