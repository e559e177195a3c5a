using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML;
using MlNetFinetune.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Training;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>
/// A float backbone's graph statically quantized to int8 (<see cref="Int8Quantizer"/>) with activation ranges
/// calibrated on a sample of the user's training images. Everything downstream (bottleneck cache, saved chain,
/// Predictor, server) takes it as any other <see cref="IBackbone"/>: same input, same feature vector.
/// </summary>
public sealed class Int8Backbone : IBackbone
{
    /// <summary>The float backbone quantized with <paramref name="ranges"/>.</summary>
    /// <param name="floatBackbone">The backbone whose graph is quantized.</param>
    /// <param name="ranges">Calibrated activation ranges of <paramref name="floatBackbone"/>'s graph.</param>
    /// <param name="calibration">How the ranges were calibrated, in words, for the manifest and reports.</param>
    public Int8Backbone(IBackbone floatBackbone, ActivationRanges ranges, string calibration)
    {
        Float = floatBackbone;
        Ranges = ranges;
        Calibration = calibration;
        Fingerprint = Int8Quantizer.Fingerprint(floatBackbone.Fingerprint, ranges);
    }

    /// <summary>The float backbone that was quantized.</summary>
    public IBackbone Float { get; }

    /// <summary>The calibrated activation ranges.</summary>
    public ActivationRanges Ranges { get; }

    /// <summary>How the ranges were calibrated, e.g. "percentile 99.999 on 260 training images".</summary>
    public string Calibration { get; }

    /// <inheritdoc/>
    public string Name => Float.Name;

    /// <inheritdoc/>
    public int ImageSize => Float.ImageSize;

    /// <inheritdoc/>
    public string Features => Float.Features;

    /// <inheritdoc/>
    public int FeatureSize => Float.FeatureSize;

    /// <summary>
    /// The float fingerprint, the rewrite's version and the ranges: int8 features never share a cache folder with
    /// the float backbone's, nor with those of other ranges.
    /// </summary>
    public string Fingerprint { get; }

    /// <inheritdoc/>
    public bool RunsInBatches => Float.RunsInBatches;

    /// <inheritdoc/>
    public string Describe() => $"{Float.Describe()};precision=int8";

    /// <inheritdoc/>
    public byte[] BuildGraph(int? batchSize) => Int8Quantizer.Quantize(Float.BuildGraph(batchSize), Ranges);

    /// <summary>
    /// Quantizes <paramref name="floatBackbone"/> with ranges calibrated on <see cref="QuantizationOptions.CalibrationImages"/>
    /// of <paramref name="training"/> (<see cref="CalibrationSample.Choose"/>). The ranges are stored under
    /// <paramref name="workspace"/>, keyed by the float backbone, the options and the sample's bytes: a later run or
    /// another shard on the same images reads them back instead of calibrating again, and so gets the same fingerprint
    /// and reuses the cached int8 features (calibrating anew could move a range by a rounding step and miss the cache).
    /// </summary>
    /// <exception cref="UserInputException">The backbone's graph has layers the quantizer does not handle, or no sample image decodes.</exception>
    /// <param name="floatBackbone">The backbone to quantize.</param>
    /// <param name="training">The training images; the calibration sample is taken from them.</param>
    /// <param name="options">How the ranges are calibrated.</param>
    /// <param name="workspace">The workspace the ranges are stored in.</param>
    /// <param name="featurization">How images are read and decoded (limits, alpha policy), as featurization does.</param>
    /// <param name="log">Receives one line: the ranges calibrated or reused.</param>
    public static Int8Backbone Calibrate(IBackbone floatBackbone, IReadOnlyList<ImageRecord> training, QuantizationOptions options,
        string workspace, FeaturizationOptions featurization, Action<string>? log = null)
    {
        options.Validate();
        log ??= _ => { };
        var sample = CalibrationSample.Choose(training, options.CalibrationImages);
        var key = StoreKey(floatBackbone, options, sample, featurization);
        var path = Path.Combine(workspace, "calibration", key + ".json");
        var method = options.Method == CalibrationMethod.MinMax ? "min-max" : string.Create(CultureInfo.InvariantCulture, $"percentile {options.Percentile:R}");
        var calibration = string.Create(CultureInfo.InvariantCulture, $"{method} on {sample.Count} training images");
        if (TryRead(path) is { } stored)
        {
            log($"Int8 calibration: stored ranges ({calibration}) reused from {path}");
            return new Int8Backbone(floatBackbone, stored, calibration);
        }

        var clock = Stopwatch.StartNew();
        var ml = new MLContext(1);
        var pixels = CalibrationSample.Pixels(ml, sample, floatBackbone.ImageSize, featurization.Limits, featurization.Alpha);
        if (pixels.Count == 0)
        {
            throw new UserInputException($"int8 calibration: none of the {sample.Count} sample images decodes");
        }

        ActivationRanges ranges;
        try
        {
            ranges = Int8Quantizer.Calibrate(floatBackbone.BuildGraph(batchSize: null), floatBackbone.ImageSize, pixels, options);
        }
        catch (NotSupportedException e)
        {
            throw new UserInputException($"--precision int8: {e.Message}; use --precision fp32 for this backbone");
        }

        ranges = Store(path, ranges);
        log(string.Create(CultureInfo.InvariantCulture, $"Int8 calibration: {calibration} ({pixels.Count} decoded) in {clock.Elapsed.TotalSeconds:F1} s, stored in {path}"));
        return new Int8Backbone(floatBackbone, ranges, calibration);
    }

    /// <summary>Hash of what the ranges depend on: the float backbone, the rewrite, the options and each sample image's bytes.</summary>
    private static string StoreKey(IBackbone floatBackbone, QuantizationOptions options, IReadOnlyList<ImageRecord> sample, FeaturizationOptions featurization)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{floatBackbone.Fingerprint};rewrite={Int8Quantizer.RewriteVersion};{options.Describe()};{FeatureStore.CacheName(floatBackbone, featurization.Alpha)}"));
        foreach (var image in sample)
        {
            try
            {
                var bytes = image.Content is { } content ? content.ToArray() : ImageDecoder.ReadFile(image.Path, featurization.Limits);
                hash.AppendData(SHA256.HashData(bytes));
            }
            catch (InvalidImageException)
            {
                // An unreadable image is left out of calibration too; its absence is part of the key.
                hash.AppendData(Encoding.UTF8.GetBytes("unreadable"));
            }
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset())[..24];
    }

    private static ActivationRanges? TryRead(string path)
    {
        try
        {
            return File.Exists(path) ? ActivationRanges.FromJson(File.ReadAllText(path)) : null;
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // A damaged file is calibrated again and replaced.
            return null;
        }
    }

    /// <summary>
    /// Writes <paramref name="ranges"/> unless another process stored its own first; then the stored ones are used, so
    /// that shards calibrating at the same time all end up with one fingerprint.
    /// </summary>
    private static ActivationRanges Store(string path, ActivationRanges ranges)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = $"{path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            File.WriteAllText(temporary, ranges.ToJson());
            try
            {
                File.Move(temporary, path, overwrite: false);
                return ranges;
            }
            catch (IOException) when (File.Exists(path))
            {
                if (TryRead(path) is { } first)
                {
                    return first;
                }

                File.Move(temporary, path, overwrite: true);
                return ranges;
            }
        }
        finally
        {
            File.Delete(temporary);
        }
    }
}
