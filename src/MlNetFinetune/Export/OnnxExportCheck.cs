using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Export;

/// <summary>How an exported graph compared with the .NET model on real images.</summary>
/// <param name="Images">Images compared.</param>
/// <param name="SameTopClass">Images on which both gave the same most probable class.</param>
/// <param name="LargestDifference">Largest absolute difference of any class probability.</param>
/// <param name="ExamplesFolder">Where the pixels and the .NET model's probabilities were written for other runtimes.</param>
public sealed record OnnxExportCheckResult(int Images, int SameTopClass, double LargestDifference, string ExamplesFolder)
{
    /// <summary>The agreement an export must reach: probabilities within 1e-4, the same class on every image.</summary>
    public const double Tolerance = 1e-4;

    /// <summary>True when every image has the same top class and the probabilities agree within <see cref="Tolerance"/>.</summary>
    public bool Passed => SameTopClass == Images && LargestDifference <= Tolerance;
}

/// <summary>
/// Checks an exported graph against the model it came from, and leaves the evidence for other runtimes: for each
/// image, the pixels the .NET model resizes it to (ML.NET's own transforms) and the probabilities
/// <see cref="ImageClassifier"/> gives it. The folder holds <see cref="PixelsFile"/> (float32 little-endian,
/// [images, 3, S, S], the exported graph's input) and <see cref="ExpectedFile"/> (image paths, classes and
/// probabilities), so a runtime in any language can be held to the same 1e-4.
/// </summary>
public static class OnnxExportCheck
{
    /// <summary>The exported graph's input for every example: float32 little-endian [images, 3, S, S].</summary>
    public const string PixelsFile = "pixels.f32";

    /// <summary>Image paths, classes and the .NET model's probabilities, as JSON.</summary>
    public const string ExpectedFile = "expected.json";

    private const int BatchSize = 16;

    /// <summary>Compares <paramref name="onnxPath"/> with <paramref name="modelPath"/> on <paramref name="images"/> and writes the examples into <paramref name="examplesFolder"/>.</summary>
    public static OnnxExportCheckResult Run(string modelPath, string onnxPath, IReadOnlyList<string> images, string examplesFolder)
    {
        if (images.Count == 0)
        {
            throw new UserInputException("--examples: no images to check the export on");
        }

        using var classifier = ImageClassifier.Load(modelPath, maxConcurrency: 1);
        var size = classifier.Manifest.ImageSize;
        var ml = new MLContext();
        var toPixels = ImageClassificationChain.ImageToPixels(ml, size).Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
        using var pixelEngine = ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(toPixels);
        using var session = new InferenceSession(onnxPath);

        // One RunOptions for every run, alive until the end: a RunOptions created inline in Run can be finalized
        // by a collection while the native run still reads it (seen as crashes in libonnxruntime).
        using var runOptions = new RunOptions();
        Directory.CreateDirectory(examplesFolder);

        var expected = new List<ExpectedImage>();
        int same = 0;
        double largest = 0;
        var pixelCount = 3 * size * size;
        AtomicFile.Write(Path.Combine(examplesFolder, PixelsFile), temporary =>
        {
            using var pixelsOut = File.Create(temporary);
            foreach (var chunk in images.Chunk(BatchSize))
            {
                var batch = new float[chunk.Length * pixelCount];
                var dotnet = new float[chunk.Length][];
                for (var i = 0; i < chunk.Length; i++)
                {
                    using var image = Images.ImageDecoder.DecodeFile(chunk[i], alpha: classifier.Manifest.InputAlpha);
                    pixelEngine.Predict(new ImageInput { Image = image }).Pixels.CopyTo(batch, i * pixelCount);
                    dotnet[i] = classifier.Scores(image);
                }

                pixelsOut.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(batch.AsSpan()));
                using var input = OrtValue.CreateTensorValueFromMemory(batch, [chunk.Length, 3, size, size]);
                using var outputs = session.Run(runOptions, [OnnxExporter.InputName], [input], [OnnxExporter.OutputName]);
                var exported = outputs[0].GetTensorDataAsSpan<float>();
                var classes = dotnet[0].Length;
                for (var i = 0; i < chunk.Length; i++)
                {
                    var row = exported.Slice(i * classes, classes);
                    for (var k = 0; k < classes; k++)
                    {
                        largest = Math.Max(largest, Math.Abs(row[k] - dotnet[i][k]));
                    }

                    same += ArgMax(row) == ArgMax(dotnet[i]) ? 1 : 0;
                    expected.Add(new ExpectedImage(chunk[i], dotnet[i]));
                }
            }
        });

        var document = new ExpectedFileContent(size, [1, 3, size, size], classifier.Classes, OnnxExportCheckResult.Tolerance, expected);
        AtomicFile.Write(Path.Combine(examplesFolder, ExpectedFile), temporary =>
        {
            using var stream = File.Create(temporary);
            JsonSerializer.Serialize(stream, document, Evaluation.ReportWriter.JsonOptions);
        });
        return new OnnxExportCheckResult(images.Count, same, largest, Path.GetFullPath(examplesFolder));
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>One image of <see cref="ExpectedFile"/>: its path and the .NET model's probabilities, in class order.</summary>
    private sealed record ExpectedImage(string Path, float[] Probabilities);

    /// <summary><see cref="ExpectedFile"/>: images in the order of <see cref="PixelsFile"/>, each <c>ImageShape</c> floats long.</summary>
    private sealed record ExpectedFileContent(int ImageSize, int[] ImageShape, IReadOnlyList<string> Classes, double Tolerance, IReadOnlyList<ExpectedImage> Images);

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
