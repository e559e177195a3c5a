using Microsoft.ML.OnnxRuntime;
using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>
/// Runs the prepared float graph over calibration images with every quantized activation as an extra output and
/// turns each activation's histogram into its range (<see cref="QuantizationOptions.Method"/>).
/// </summary>
internal static class ActivationCalibrator
{
    /// <summary>Pixels per backbone call: 8 images at 224 px, more at smaller sides; bounds the memory the extra outputs take.</summary>
    private const int PixelsPerBatch = 8 * 224 * 224;

    public static ActivationRanges Calibrate(ModelProto prepared, int imageSize, IReadOnlyList<float[]> images, QuantizationOptions options)
    {
        if (images.Count == 0)
        {
            throw new ArgumentException("calibration needs at least one image", nameof(images));
        }

        var sites = QuantizationSites.Find(prepared.Graph).Calibrated;
        var model = prepared.Clone();
        var outputs = model.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var site in sites.Where(s => !outputs.Contains(s)))
        {
            model.Graph.Output.Add(TensorValueOfAnyShape(site, FloatType));
        }

        using var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = Environment.ProcessorCount,
        };
        using var session = new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model), sessionOptions);
        using var runOptions = new RunOptions();
        var histograms = sites.Select(_ => new RangeHistogram()).ToArray();
        var pixelCount = 3 * imageSize * imageSize;
        var batchSize = Math.Clamp(PixelsPerBatch / (imageSize * imageSize), 1, 64);
        for (var start = 0; start < images.Count; start += batchSize)
        {
            var count = Math.Min(batchSize, images.Count - start);
            var input = new float[count * pixelCount];
            for (var i = 0; i < count; i++)
            {
                images[start + i].AsSpan().CopyTo(input.AsSpan(i * pixelCount, pixelCount));
            }

            using var tensor = OrtValue.CreateTensorValueFromMemory(input, [count, 3, imageSize, imageSize]);
            using var results = session.Run(runOptions, [Pipeline.ColumnNames.Pixels], [tensor], sites);
            for (var s = 0; s < sites.Count; s++)
            {
                histograms[s].Add(results[s].GetTensorDataAsSpan<float>());
            }
        }

        var share = (100 - options.Percentile) / 100;
        var ranges = new Dictionary<string, (float Min, float Max)>(StringComparer.Ordinal);
        for (var s = 0; s < sites.Count; s++)
        {
            var h = histograms[s];
            ranges[sites[s]] = options.Method == CalibrationMethod.MinMax ? (h.Min, h.Max) : (h.Lower(share), h.Upper(share));
        }

        return new ActivationRanges(ranges);
    }
}
