using System.Globalization;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Images;

namespace MlNetFinetune.Training;

/// <summary>One image after featurization: its bottleneck features, or why it has none.</summary>
/// <param name="Image">The image and its label.</param>
/// <param name="Key">Content key of its bytes (equal keys: byte-identical images); null when it could not be read.</param>
/// <param name="Features">The bottleneck features; null when the image was skipped.</param>
/// <param name="MirroredFeatures">Features of the left-right mirrored view, when asked for.</param>
/// <param name="SkipReason">Why the image has no features; null when it has them.</param>
public sealed record FeaturizedImage(ImageRecord Image, string? Key, float[]? Features, float[]? MirroredFeatures, string? SkipReason)
{
    /// <summary>Whether the image has features to train or evaluate on.</summary>
    public bool IsUsable => Features is not null;
}

/// <summary>What a featurization produced: every image asked for, in the order asked, with its features or skip reason.</summary>
public sealed record FeaturizationResult(
    IReadOnlyList<FeaturizedImage> Images,
    int FromCache,
    int Computed,
    TimeSpan Elapsed,
    string? GpuFallbackMessage)
{
    /// <summary>Backbone throughput of the run (images computed, not those found in the cache).</summary>
    public double ImagesPerSecond => Computed == 0 ? 0 : Computed / Elapsed.TotalSeconds;

    /// <summary>The images that have no features, with the reason.</summary>
    public IReadOnlyList<SkippedFile> Skipped => [.. Images.Where(i => !i.IsUsable).Select(i => new SkippedFile(i.Image.Path, i.SkipReason!))];
}

/// <summary>
/// The bottleneck features of images, computed once per image content and kept in the workspace's cache. It owns the
/// cache: callers ask for images and get one aligned list back, never keys or cache lookups.
/// </summary>
internal sealed class FeatureStore : IDisposable
{
    private readonly BottleneckCache _cache;
    private readonly BulkFeaturizer _featurizer;

    private FeatureStore(BottleneckCache cache, BulkFeaturizer featurizer)
    {
        _cache = cache;
        _featurizer = featurizer;
    }

    /// <summary>The cache folder of this backbone.</summary>
    public string Directory => _cache.Directory;

    /// <summary>Feature vectors found on disk when the store was opened.</summary>
    public int LoadedCount => _cache.LoadedCount;

    /// <summary>Records on disk that failed their checksum; their images are computed again.</summary>
    public int CorruptCount => _cache.CorruptCount;

    /// <summary>
    /// Bumped whenever decoding changes the pixels of some image (EXIF orientation applied, alpha resolved): features
    /// cached from the old pixels must not be reused, although the image bytes, its key, are the same.
    /// </summary>
    private const int DecoderVersion = 2;

    /// <summary>Opens the store of <paramref name="backbone"/>'s features under <paramref name="workspace"/>.</summary>
    public static FeatureStore Open(MLContext ml, string workspace, IBackbone backbone, FeaturizationOptions options) =>
        new(BottleneckCache.Open(workspace, CacheName(backbone, options.Alpha), backbone.FeatureSize), new BulkFeaturizer(ml, backbone, options));

    /// <summary>The cache folder's name: the backbone's fingerprint and how images are decoded.</summary>
    public static string CacheName(IBackbone backbone, AlphaPolicy alpha) => string.Create(CultureInfo.InvariantCulture,
        $"{backbone.Fingerprint}-d{DecoderVersion}-{alpha.ToString().ToLowerInvariant()}");

    /// <summary>
    /// Features of <paramref name="images"/>, computing those not cached; with <paramref name="mirrored"/> (paths) also
    /// of those images' mirrored views. The result lists every image of <paramref name="images"/> in the same order.
    /// </summary>
    public FeaturizationResult Featurize(
        IReadOnlyList<ImageRecord> images,
        IReadOnlySet<string>? mirrored = null,
        IProgress<FeaturizationProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        var run = _featurizer.Featurize(images, _cache, progress, cancellation, mirrored);
        var featurized = new List<FeaturizedImage>(images.Count);
        foreach (var image in images)
        {
            var outcome = run.Outcomes[image.Path];
            float[]? features = null, mirroredFeatures = null;
            if (outcome.Key is { } key && _cache.TryGet(key, out var found))
            {
                features = found;
                if (mirrored?.Contains(image.Path) == true && _cache.TryGet(key + BulkFeaturizer.MirroredSuffix, out var view))
                {
                    mirroredFeatures = view;
                }
            }

            featurized.Add(new FeaturizedImage(image, outcome.Key, features, mirroredFeatures, features is null ? outcome.Problem ?? "no features were computed" : null));
        }

        return new FeaturizationResult(featurized, run.FromCache, run.Computed, run.Elapsed, run.GpuFallbackMessage);
    }

    public void Dispose() => _cache.Dispose();
}
