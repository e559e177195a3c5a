using Microsoft.ML;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;

namespace MlNetFinetune.Tests.Quantization;

/// <summary>
/// The committed sample's pixels at 64 px, the float backbone's features of them, and the backbone quantized with
/// ranges calibrated on 50 of those images (5 per class), built once for all quantization tests.
/// </summary>
public sealed class QuantizedBackboneFixture
{
    public const string Collection = "quantized backbone";

    public QuantizedBackboneFixture()
    {
        Images = ImageFolder.Scan(TestData.SampleFolder).Images;
        var ml = new MLContext(1);
        Pixels = CalibrationSample.Pixels(ml, Images, Options.ImageSize);
        FloatGraph = ResNet18Backbone.BuildGraph(Options, batchSize: null);
        var index = Images.Select((image, i) => (image.Path, i)).ToDictionary(p => p.Path, p => p.i);
        var calibration = CalibrationSample.Choose(Images, 50).Select(image => Pixels[index[image.Path]]).ToList();
        Ranges = Int8Quantizer.Calibrate(FloatGraph, Options.ImageSize, calibration, new QuantizationOptions());
        Int8Graph = Int8Quantizer.Quantize(FloatGraph, Ranges);
        Int8BatchOneGraph = Int8Quantizer.Quantize(ResNet18Backbone.BuildGraph(Options, batchSize: 1), Ranges);
        FloatFeatures = Featurize(FloatGraph, Pixels);
    }

    /// <summary>The default backbone for small images such as the sample's 28 px.</summary>
    public BackboneOptions Options { get; } = new(64, "s2g2+s3g2+s4");

    public IReadOnlyList<ImageRecord> Images { get; }

    public IReadOnlyList<float[]> Pixels { get; }

    public byte[] FloatGraph { get; }

    internal ActivationRanges Ranges { get; }

    public byte[] Int8Graph { get; }

    public byte[] Int8BatchOneGraph { get; }

    public IReadOnlyList<float[]> FloatFeatures { get; }

    /// <summary>Runs a dynamic-batch feature graph over <paramref name="pixels"/> in batches of 64.</summary>
    public IReadOnlyList<float[]> Featurize(byte[] graph, IReadOnlyList<float[]> pixels)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(graph, options);
        var side = Options.ImageSize;
        var featureSize = Options.FeatureSize;
        var features = new List<float[]>();
        using var runOptions = new RunOptions();
        foreach (var chunk in pixels.Chunk(64))
        {
            var input = chunk.SelectMany(p => p).ToArray();
            using var tensor = OrtValue.CreateTensorValueFromMemory(input, [chunk.Length, 3, side, side]);
            using var outputs = session.Run(runOptions, ["Pixels"], [tensor], ["Features"]);
            var values = outputs[0].GetTensorDataAsSpan<float>();
            for (var i = 0; i < chunk.Length; i++)
            {
                features.Add(values.Slice(i * featureSize, featureSize).ToArray());
            }
        }

        return features;
    }
}

/// <summary>Shares one <see cref="QuantizedBackboneFixture"/> between the quantization test classes.</summary>
[CollectionDefinition(QuantizedBackboneFixture.Collection)]
public sealed class QuantizedBackboneCollection : ICollectionFixture<QuantizedBackboneFixture>;
