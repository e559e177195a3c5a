using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Export;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Tests;

/// <summary>export-onnx on the model trained from the committed sample, checked against ImageClassifier by ONNX Runtime.</summary>
[Collection(SampleModelCollection.Name)]
public sealed class OnnxExportTests(SampleModelFixture fixture) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mlnetfinetune-onnx-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void ExportedGraphGivesTheClassifiersProbabilitiesOnTheHeldOutImages()
    {
        // Given the sample model and its held-out images
        var onnxPath = Path.Combine(_folder, "model.onnx");
        var heldOut = fixture.Result.HeldOutPredictions.Select(p => p.Path).ToArray();

        // When
        var outcome = CommandLineRunner.Predictor("export-onnx", "--model", fixture.Result.ModelPath, "--output", onnxPath);

        // Then: ONNX Runtime on the exported file, fed the pixels the .NET model resizes each image to, in batches of
        // several images, gives ImageClassifier's probabilities
        Assert.Equal(0, outcome.ExitCode);
        using var classifier = ImageClassifier.Load(fixture.Result.ModelPath, maxConcurrency: 1);
        var size = classifier.Manifest.ImageSize;
        var (pixels, expected) = PixelsAndProbabilities(classifier, heldOut);
        using var session = new InferenceSession(onnxPath);
        using var runOptions = new RunOptions();
        var largest = 0f;
        var sameTop = 0;
        const int batch = 25;
        for (var start = 0; start < heldOut.Length; start += batch)
        {
            var count = Math.Min(batch, heldOut.Length - start);
            var input = pixels.AsSpan(start * 3 * size * size, count * 3 * size * size).ToArray();
            using var tensor = OrtValue.CreateTensorValueFromMemory(input, [count, 3, size, size]);
            using var outputs = session.Run(runOptions, [OnnxExporter.InputName], [tensor], [OnnxExporter.OutputName]);
            var probabilities = outputs[0].GetTensorDataAsSpan<float>();
            for (var i = 0; i < count; i++)
            {
                var row = probabilities.Slice(i * classifier.Classes.Count, classifier.Classes.Count).ToArray();
                largest = Math.Max(largest, row.Zip(expected[start + i], (a, b) => Math.Abs(a - b)).Max());
                sameTop += Array.IndexOf(row, row.Max()) == Array.IndexOf(expected[start + i], expected[start + i].Max()) ? 1 : 0;
            }
        }

        Assert.Equal(100, heldOut.Length);
        Assert.True(largest <= 1e-4f, $"largest probability difference {largest}");
        Assert.Equal(heldOut.Length, sameTop);
    }

    [Fact]
    public void ExportedGraphHasOneFreeBatchInputAndTheClassNamesInItsMetadata()
    {
        // Given
        var onnxPath = Path.Combine(_folder, "model.onnx");

        // When
        var result = OnnxExporter.Export(fixture.Result.ModelPath, onnxPath);

        // Then
        using var session = new InferenceSession(onnxPath);
        var input = Assert.Single(session.InputMetadata);
        Assert.Equal(OnnxExporter.InputName, input.Key);
        Assert.Equal([-1, 3, 64, 64], input.Value.Dimensions);
        var output = Assert.Single(session.OutputMetadata);
        Assert.Equal(OnnxExporter.OutputName, output.Key);
        Assert.Equal([-1, 10], output.Value.Dimensions);
        var classes = JsonSerializer.Deserialize<string[]>(session.ModelMetadata.CustomMetadataMap[OnnxExporter.ClassesKey]);
        Assert.Equal(fixture.Result.Report.ClassNames, classes);
        Assert.Equal(8, result.Opset);
    }

    [Fact]
    public void ExamplesOptionChecksTheExportAndWritesPixelsAndProbabilitiesForOtherRuntimes()
    {
        // Given
        var onnxPath = Path.Combine(_folder, "checked.onnx");
        var images = fixture.Result.HeldOutPredictions.Select(p => p.Path).Take(20).ToArray();

        // When
        var outcome = CommandLineRunner.Predictor(["export-onnx", "--model", fixture.Result.ModelPath, "--output", onnxPath, "--examples", .. images]);

        // Then
        Assert.Equal(0, outcome.ExitCode);
        Assert.Contains("on 20 images: same top class on 20,", outcome.Output, StringComparison.Ordinal);
        var examples = Path.Combine(_folder, "checked.examples");
        Assert.Equal(20L * 3 * 64 * 64 * sizeof(float), new FileInfo(Path.Combine(examples, OnnxExportCheck.PixelsFile)).Length);
        using var expected = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(examples, OnnxExportCheck.ExpectedFile)));
        Assert.Equal(images, expected.RootElement.GetProperty("images").EnumerateArray().Select(i => i.GetProperty("path").GetString()));
    }

    [Fact]
    public void LightGbmHeadIsOneClearError()
    {
        // Given the sample model with a manifest that says its head is LightGBM
        var model = Path.Combine(_folder, "lightgbm.zip");
        File.Copy(fixture.Result.ModelPath, model);
        var manifest = ModelManifest.ReadFrom(model) with { Head = "lightgbm" };
        manifest.WriteInto(model);

        // When
        var outcome = CommandLineRunner.Predictor("export-onnx", "--model", model, "--output", Path.Combine(_folder, "lightgbm.onnx"));

        // Then
        Assert.Equal(2, outcome.ExitCode);
        Assert.Equal(
            $"error: {model}: the model's head is LightGBM (gradient-boosted trees), which export-onnx does not write; train with --head softmax for an exportable model",
            outcome.Error.Trim());
        Assert.False(File.Exists(Path.Combine(_folder, "lightgbm.onnx")));
    }

    [Fact]
    public void MissingModelIsOneLine()
    {
        var missing = Path.Combine(_folder, "nothing.zip");

        var outcome = CommandLineRunner.Predictor("export-onnx", "--model", missing, "--output", Path.Combine(_folder, "x.onnx"));

        Assert.Equal(2, outcome.ExitCode);
        Assert.Equal($"error: {missing}: model file not found", outcome.Error.Trim());
    }

    /// <summary>The pixels ML.NET's own resize and extraction give each image, and ImageClassifier's probabilities.</summary>
    private static (float[] Pixels, float[][] Probabilities) PixelsAndProbabilities(ImageClassifier classifier, IReadOnlyList<string> images)
    {
        var ml = new MLContext();
        var toPixels = ImageClassificationChain.ImageToPixels(ml, classifier.Manifest.ImageSize).Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
        using var engine = ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(toPixels);
        var pixels = new List<float>();
        var probabilities = new List<float[]>();
        foreach (var path in images)
        {
            using var image = MlNetFinetune.Images.ImageDecoder.DecodeFile(path);
            pixels.AddRange(engine.Predict(new ImageInput { Image = image }).Pixels);
            probabilities.Add(classifier.Scores(image));
        }

        return ([.. pixels], [.. probabilities]);
    }

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
