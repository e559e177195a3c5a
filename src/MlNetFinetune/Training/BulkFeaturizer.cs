using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Threading.Channels;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Backbones.Quantization;
using MlNetFinetune.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Training;

/// <summary>How bulk featurization runs.</summary>
/// <param name="BatchSize">Images per backbone call.</param>
/// <param name="DecodeWorkers">Threads decoding and resizing while the backbone runs; 0 picks half the cores (at least 1).</param>
/// <param name="GpuDevice">CUDA device for the backbone, or null for the CPU.</param>
/// <param name="WriterName">Name of the cache file this run appends to (shards use their own).</param>
/// <param name="Limits">Bounds on each image file (bytes) and on what it may decode to (pixels), checked before decoding.</param>
/// <param name="Alpha">What transparent pixels become before the backbone sees them; recorded in the model so the
/// Predictor decodes alike. Default <see cref="DefaultAlpha"/>.</param>
public sealed record FeaturizationOptions(
    int BatchSize = 16,
    int DecodeWorkers = 0,
    int? GpuDevice = null,
    string WriterName = "run",
    ImageLimits? Limits = null,
    AlphaPolicy Alpha = FeaturizationOptions.DefaultAlpha)
{
    /// <summary>
    /// Transparent pixels on white, as a page shows them. Measured on OpenMoji (44 classes, 1,748 images, 5-fold, 128 px):
    /// features s3g2+s4 scored 0.675 on white, 0.655 on black (the old behaviour), s4 alone 0.616 and 0.614; OpenMoji's
    /// black outlines vanish on black. Opaque images decode the same under every policy.
    /// </summary>
    public const AlphaPolicy DefaultAlpha = AlphaPolicy.CompositeOnWhite;

    /// <summary>Throws <see cref="UserInputException"/> naming the option when a value cannot work.</summary>
    public void Validate()
    {
        if (BatchSize is < 1 or > 4096)
        {
            throw new UserInputException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"--batch-size {BatchSize}: must be between 1 and 4096"));
        }

        if (DecodeWorkers < 0)
        {
            throw new UserInputException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"decode workers {DecodeWorkers}: must be 0 (automatic) or more"));
        }

        Limits?.Validate();
        if (GpuDevice is < 0)
        {
            throw new UserInputException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"--gpu {GpuDevice}: a device number is 0 or more"));
        }
    }
}

/// <summary>What became of one image in a featurization: its content key once read, or the problem that stopped it.</summary>
/// <param name="Key">Cache key of the image's bytes (null when they could not be read).</param>
/// <param name="Problem">Why the image has no features, or null when it has them.</param>
internal sealed record ImageOutcome(string? Key, string? Problem);

/// <summary>What a bulk featurization did, per image path.</summary>
internal sealed record BulkFeaturization(
    IReadOnlyDictionary<string, ImageOutcome> Outcomes,
    int FromCache,
    int Computed,
    TimeSpan Elapsed,
    string? GpuFallbackMessage);

/// <summary>
/// Runs the backbone over many images into the <see cref="BottleneckCache"/>: reading, decoding, resizing and pixel
/// extraction (ML.NET's own transforms, so pixels match the saved chain) run on worker threads while ONNX Runtime
/// runs batches of the dynamic-batch backbone graph. Images already cached are only hashed. Work is per content key:
/// byte-identical files are decoded once, and a decoding failure is the failure of every file with those bytes.
/// </summary>
internal sealed class BulkFeaturizer
{
    private readonly MLContext _ml;
    private readonly IBackbone _backbone;
    private readonly FeaturizationOptions _options;
    private readonly ITransformer _imageToPixels;

    public BulkFeaturizer(MLContext ml, IBackbone backbone, FeaturizationOptions options)
    {
        _ml = ml;
        _backbone = backbone;
        _options = options;
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        _imageToPixels = ImageClassificationChain.ImageToPixels(ml, backbone.ImageSize).Fit(empty);
    }

    /// <summary>Suffix of the cache key of an image's horizontally mirrored view.</summary>
    public const string MirroredSuffix = "|mirrored";

    /// <summary>Cache key of an encoded image: its content hash, so renamed or copied files are not recomputed and changed ones are.</summary>
    public static string ImageKey(ReadOnlySpan<byte> encoded) => Convert.ToHexStringLower(SHA256.HashData(encoded))[..32];

    /// <summary>
    /// Featurizes <paramref name="images"/>; for the paths in <paramref name="mirrored"/> also the horizontally mirrored
    /// view, cached under the image's key + <see cref="MirroredSuffix"/>. Cancelling stops it with what was computed
    /// flushed to the cache, and throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public BulkFeaturization Featurize(
        IReadOnlyList<ImageRecord> images,
        BottleneckCache cache,
        IProgress<FeaturizationProgress>? progress = null,
        CancellationToken cancellation = default,
        IReadOnlySet<string>? mirrored = null)
    {
        var stopwatch = Stopwatch.StartNew();
        var keyByPath = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        var readProblems = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        var decodeProblems = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        var done = 0;
        var fromCache = 0;
        var computed = 0;
        var batchSize = _backbone.RunsInBatches ? Math.Max(1, _options.BatchSize) : 1;
        var workers = _options.DecodeWorkers > 0 ? _options.DecodeWorkers : Math.Max(1, Environment.ProcessorCount / 2);
        var decoded = Channel.CreateBounded<(string Key, float[] Pixels)>(new BoundedChannelOptions(batchSize * 4) { SingleReader = true });
        var queue = new ConcurrentQueue<ImageRecord>(images.DistinctBy(i => i.Path, StringComparer.Ordinal));
        var total = queue.Count;
        var claimed = new HashSet<string>(StringComparer.Ordinal);

        void Report()
        {
            var rate = computed / Math.Max(stopwatch.Elapsed.TotalSeconds, 1e-3);
            var left = total - Volatile.Read(ref done);
            progress?.Report(new FeaturizationProgress(total - left, total, computed, rate,
                rate > 0 ? TimeSpan.FromSeconds(left / rate) : TimeSpan.Zero));
        }

        var decoders = Enumerable.Range(0, workers).Select(worker => Task.Run(async () =>
        {
            using var engine = _ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(_imageToPixels);
            while (!cancellation.IsCancellationRequested && queue.TryDequeue(out var image))
            {
                var path = image.Path;
                byte[] bytes;
                try
                {
                    bytes = image.Content is { } content ? content.ToArray() : ImageDecoder.ReadFile(path, _options.Limits);
                }
                catch (InvalidImageException e)
                {
                    readProblems[path] = e.Detail;
                    Interlocked.Increment(ref done);
                    continue;
                }

                var key = ImageKey(bytes);
                keyByPath[path] = key;
                var wantMirrored = mirrored?.Contains(path) == true;
                bool mine, mineMirrored;
                lock (claimed)
                {
                    mine = !cache.Contains(key) && claimed.Add(key);
                    mineMirrored = wantMirrored && !cache.Contains(key + MirroredSuffix) && claimed.Add(key + MirroredSuffix);
                }

                if (!mine && !mineMirrored)
                {
                    Interlocked.Increment(ref fromCache);
                    Interlocked.Increment(ref done);
                    continue;
                }

                float[] pixels;
                try
                {
                    using var decodedImage = ImageDecoder.Decode(bytes, path, _options.Limits, _options.Alpha);
                    pixels = engine.Predict(new ImageInput { Image = decodedImage }).Pixels;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Whatever a decoder makes of hostile bytes is this image's problem, never the run's.
                    decodeProblems[key] = e is InvalidImageException refused ? refused.Detail : $"cannot be decoded ({e.GetType().Name}: {FirstLine(e.Message)})";
                    Interlocked.Increment(ref done);
                    continue;
                }

                if (mineMirrored)
                {
                    await decoded.Writer.WriteAsync((key + MirroredSuffix, Mirror(pixels, _backbone.ImageSize)), cancellation).ConfigureAwait(false);
                }

                if (mine)
                {
                    await decoded.Writer.WriteAsync((key, pixels), cancellation).ConfigureAwait(false);
                }
                else
                {
                    Interlocked.Increment(ref done);
                }
            }
        }, cancellation)).ToArray();
        _ = Task.WhenAll(decoders).ContinueWith(t => decoded.Writer.Complete(t.Exception), TaskScheduler.Default);

        var graph = _backbone.BuildGraph(batchSize: null);
        // The decode workers share the cores with ONNX Runtime's threads, which by default spin while idle. In three runs
        // of the int8 benchmark on 2 cores (64 and 224 px), letting them sleep made int8 featurization of real files 1.0x
        // to 2.8x faster, fp32 0.8x to 1.2x: only the int8 backbone's threads sleep (README, "int8").
        using var session = BackboneSession.Create(graph, _options.GpuDevice, out var fallback, spinning: _backbone is not Int8Backbone);

        // Held for the whole loop: a RunOptions made inline in the Run call is unreachable once its handle is read,
        // and its finalizer can free it while ONNX Runtime still uses it (seen as SIGSEGV after ~20,000 images).
        using var runOptions = new RunOptions();
        var featureSize = _backbone.FeatureSize;
        var pixelCount = 3 * _backbone.ImageSize * _backbone.ImageSize;
        var batch = new List<(string Key, float[] Pixels)>(batchSize);
        var reader = decoded.Reader;
        try
        {
            while (reader.WaitToReadAsync(cancellation).AsTask().GetAwaiter().GetResult())
            {
                batch.Clear();
                while (batch.Count < batchSize && reader.TryRead(out var item))
                {
                    batch.Add(item);
                }

                var input = new float[batch.Count * pixelCount];
                for (var i = 0; i < batch.Count; i++)
                {
                    batch[i].Pixels.CopyTo(input, i * pixelCount);
                }

                using var tensor = OrtValue.CreateTensorValueFromMemory(input, [batch.Count, 3, _backbone.ImageSize, _backbone.ImageSize]);
                using var outputs = session.Run(runOptions, [ColumnNames.Pixels], [tensor], [ColumnNames.Features]);
                var features = outputs[0].GetTensorDataAsSpan<float>();
                var records = new (string, float[])[batch.Count];
                for (var i = 0; i < batch.Count; i++)
                {
                    records[i] = (batch[i].Key, features.Slice(i * featureSize, featureSize).ToArray());
                }

                cache.Add(records, _options.WriterName);
                Interlocked.Add(ref computed, batch.Count);
                Interlocked.Add(ref done, batch.Count(b => !b.Key.EndsWith(MirroredSuffix, StringComparison.Ordinal)));
                Report();
            }
        }
        catch (OperationCanceledException)
        {
            // What was flushed stays in the cache; the next run computes only the rest.
        }

        Task.WaitAll([.. decoders.Select(d => d.ContinueWith(_ => { }, TaskScheduler.Default))]);
        cancellation.ThrowIfCancellationRequested();
        var failed = decoders.FirstOrDefault(d => d.IsFaulted);
        if (failed is not null)
        {
            throw failed.Exception!.InnerException!;
        }

        Report();
        var outcomes = new Dictionary<string, ImageOutcome>(StringComparer.Ordinal);
        foreach (var image in images)
        {
            outcomes[image.Path] = keyByPath.TryGetValue(image.Path, out var key)
                ? new ImageOutcome(key, cache.Contains(key) ? null : decodeProblems.GetValueOrDefault(key, "no features were computed"))
                : new ImageOutcome(null, readProblems.GetValueOrDefault(image.Path, "not read"));
        }

        return new BulkFeaturization(outcomes, fromCache, computed, stopwatch.Elapsed, fallback);
    }

    /// <summary>Mirrors planar [3, size, size] pixels left to right.</summary>
    public static float[] Mirror(float[] pixels, int size)
    {
        var mirrored = new float[pixels.Length];
        for (var row = 0; row < pixels.Length / size; row++)
        {
            var offset = row * size;
            for (var x = 0; x < size; x++)
            {
                mirrored[offset + x] = pixels[offset + size - 1 - x];
            }
        }

        return mirrored;
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
