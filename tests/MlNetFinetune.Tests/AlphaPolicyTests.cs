using System.IO.Compression;
using System.Text.Json;
using MlNetFinetune.Evaluation;
using MlNetFinetune.Explanations;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;
using MlNetFinetune.Training;
using SkiaSharp;

namespace MlNetFinetune.Tests;

/// <summary>The Trainer and the Predictor resolve transparency the same way, per model (the manifest's alpha policy).</summary>
public sealed class AlphaPolicyTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("mlnetfinetune-alpha-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void AModelPredictsTransparentImagesAsItsTrainerSawThem()
    {
        // Given transparent images: sample garments whose brightness became opacity, drawn in one colour
        var data = TransparentCopy(TestData.CopySubset(_root, 12, "Bag", "Sandal", "Trouser"));
        var options = new TrainingOptions(data, OutputFolder: Path.Combine(_root, "out"), Workspace: Path.Combine(_root, "ws"), Seed: 3)
        {
            ImageSize = 64,
            Features = "s4",
            Explanations = ExplanationOptions.None,
        };

        // When a model is trained with the default policy and loaded by the Predictor's classifier
        var result = new ImageClassifierTrainer(options).Train();
        using var classifier = ImageClassifier.Load(result.ModelPath);

        // Then the manifest records the policy, the classifier's scores are the trainer's held-out scores, and decoding
        // on black instead would have changed them
        Assert.Equal(FeaturizationOptions.DefaultAlpha, classifier.Manifest.Alpha);
        Assert.Equal(AlphaPolicy.CompositeOnWhite, classifier.Manifest.InputAlpha);
        var largestOnBlack = 0f;
        foreach (var heldOut in result.HeldOutPredictions)
        {
            var predicted = classifier.Predict(heldOut.Path, top: heldOut.Scores.Length);
            var scores = classifier.Classes.Select(c => predicted.Top.Single(p => p.Label == c).Score).ToArray();
            Assert.Equal(heldOut.PredictedLabel, predicted.Label);
            Assert.All(scores.Zip(heldOut.Scores), pair => Assert.Equal(pair.Second, pair.First, 1e-4f));

            using var onBlack = ImageDecoder.DecodeFile(heldOut.Path, alpha: AlphaPolicy.CompositeOnBlack);
            largestOnBlack = Math.Max(largestOnBlack, classifier.Scores(onBlack).Zip(heldOut.Scores, (a, b) => Math.Abs(a - b)).Max());
        }

        Assert.True(largestOnBlack > 1e-3f, $"decoding on black moved no score by more than {largestOnBlack}: the images are not transparent enough to test the policy");
    }

    [Fact]
    public void AManifestWithoutAPolicyMeansTransparentPixelsOnBlack()
    {
        // Given a manifest of format 1, written before the policy was recorded
        var json = """
            { "formatVersion": 1, "tool": "MlNetFinetune 1.0", "classes": ["a", "b"], "backbone": "resnet18", "imageSize": 64,
              "features": "s4", "featureSize": 512, "head": "softmax", "l2Regularization": 1,
              "heldOut": { "microAccuracy": 1, "macroAccuracy": 1, "logLoss": 0, "heldOutImages": 2 } }
            """;
        var zip = Path.Combine(_root, "old.zip");
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Create))
        using (var writer = new StreamWriter(archive.CreateEntry(ModelManifest.EntryName).Open()))
        {
            writer.Write(json);
        }

        // When it is read
        var manifest = ModelManifest.ReadFrom(zip);

        // Then it decodes as every model of that format was trained, and a new manifest names its policy by name
        Assert.Null(manifest.Alpha);
        Assert.Equal(AlphaPolicy.CompositeOnBlack, manifest.InputAlpha);
        var written = JsonSerializer.Serialize(manifest with { Alpha = AlphaPolicy.CompositeOnWhite }, ReportWriter.JsonOptions);
        Assert.Contains("\"alpha\": \"CompositeOnWhite\"", written, StringComparison.Ordinal);
        Assert.DoesNotContain("inputAlpha", written, StringComparison.Ordinal);
    }

    /// <summary>Rewrites every image of <paramref name="folder"/> as an RGBA PNG: colour (200, 30, 90), opacity = brightness.</summary>
    private static string TransparentCopy(string folder)
    {
        foreach (var file in Directory.GetFiles(folder, "*.png", SearchOption.AllDirectories))
        {
            using var gray = SKBitmap.Decode(file);
            using var transparent = new SKBitmap(new SKImageInfo(gray.Width, gray.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
            for (var y = 0; y < gray.Height; y++)
            {
                for (var x = 0; x < gray.Width; x++)
                {
                    transparent.SetPixel(x, y, new SKColor(200, 30, 90, gray.GetPixel(x, y).Red));
                }
            }

            using var png = transparent.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(file, png.ToArray());
        }

        return folder;
    }
}
