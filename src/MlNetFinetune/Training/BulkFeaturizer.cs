using System.Diagnostics;
using System.Security.Cryptography;
using System.Threading.Channels;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Training;

/// <summary>How bulk featurization runs.</summary>
/// <param name="BatchSize">Images per backbone call.</param>
/// <param name="DecodeWorkers">Threads decoding and resizing while the backbone runs; 0 picks half the cores (at least 1).</param>
/// <param name="GpuDevice">CUDA device for the backbone, or null for the CPU.</param>
/// <param name="WriterName">Name of the cache file this run appends to (shards use their own).</param>
public sealed record FeaturizationOptions(int BatchSize = 16, int DecodeWorkers = 0, int? GpuDevice = null, string WriterName = "run");

/// <summary>What a featurization did.</summary>
public sealed record FeaturizationResult(
    IReadOnlyDictionary<string, string> KeyByPath,
    IReadOnlyList<SkippedFile> Skipped,
    int FromCache,
    int Computed,
    TimeSpan Elapsed,
    string? GpuFallbackMessage)
{
    public double ImagesPerSecond => Computed == 0 ? 0 : Computed / Elapsed.TotalSeconds;
}

/// <summary>
/// Runs the backbone over many image files into the <see cref="BottleneckCache"/>: decoding, resizing and pixel
/// extraction (ML.NET's own transforms, so pixels match the saved chain) run on worker threads while ONNX Runtime
/// runs batches of the dynamic-batch backbone graph. Images already cached are only hashed.
/// </summary>
public sealed class BulkFeaturizer
{
    private readonly MLContext _ml;
    private readonly BackboneOptions _backbone;
    private readonly FeaturizationOptions _options;
    private readonly ITransformer _imageToPixels;

    public BulkFeaturizer(MLContext ml, BackboneOptions backbone, FeaturizationOptions options)
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
    /// Featurizes <paramref name="paths"/>; for those in <paramref name="mirrored"/> also the horizontally mirrored view,
    /// cached under the image's key + <see cref="MirroredSuffix"/>.
    /// </summary>
    public FeaturizationResult Featurize(
        IReadOnlyList<string> paths,
        BottleneckCache cache,
        IProgress<FeaturizationProgress>? progress = null,
        CancellationToken cancellation = default,
        IReadOnlySet<string>? mirrored = null)
    {
        var stopwatch = Stopwatch.StartNew();
        var keys = new System.Collections.Concurrent.ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        var skipped = new System.Collections.Concurrent.ConcurrentBag<SkippedFile>();
        var done = 0;
        var fromCache = 0;
        var computed = 0;
        var batchSize = Math.Max(1, _options.BatchSize);
        var workers = _options.DecodeWorkers > 0 ? _options.DecodeWorkers : Math.Max(1, Environment.ProcessorCount / 2);
        var decoded = Channel.CreateBounded<(string Key, float[] Pixels)>(new BoundedChannelOptions(batchSize * 4) { SingleReader = true });
        var queue = new System.Collections.Concurrent.ConcurrentQueue<string>(paths.Distinct(StringComparer.Ordinal));
        var total = queue.Count;
        var pending = new HashSet<string>(StringComparer.Ordinal);

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
            while (!cancellation.IsCancellationRequested && queue.TryDequeue(out var path))
            {
                byte[] bytes;
                try
                {
                    bytes = File.ReadAllBytes(path);
                }
                catch (IOException e)
                {
                    skipped.Add(new SkippedFile(path, $"cannot read: {e.Message}"));
                    Interlocked.Increment(ref done);
                    continue;
                }

                var key = ImageKey(bytes);
                keys[path] = key;
                var wantMirrored = mirrored?.Contains(path) == true;
                bool claimed, claimedMirrored;
                lock (pending)
                {
                    claimed = !cache.Contains(key) && pending.Add(key);
                    claimedMirrored = wantMirrored && !cache.Contains(key + MirroredSuffix) && pending.Add(key + MirroredSuffix);
                }

                if (!claimed && !claimedMirrored)
                {
                    Interlocked.Increment(ref fromCache);
                    Interlocked.Increment(ref done);
                    continue;
                }

                float[] pixels;
                try
                {
                    using var image = ImageDecoder.Decode(bytes, path);
                    pixels = engine.Predict(new ImageInput { Image = image }).Pixels;
                }
                catch (InvalidImageException e)
                {
                    keys.TryRemove(path, out _);
                    lock (pending)
                    {
                        pending.Remove(key);
                        pending.Remove(key + MirroredSuffix);
                    }

                    skipped.Add(new SkippedFile(path, e.Detail));
                    Interlocked.Increment(ref done);
                    continue;
                }

                if (claimedMirrored)
                {
                    await decoded.Writer.WriteAsync((key + MirroredSuffix, Mirror(pixels, _backbone.ImageSize)), cancellation).ConfigureAwait(false);
                }

                if (claimed)
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

        var graph = ResNet18Backbone.BuildGraph(_backbone, batchSize: null);
        using var session = BackboneSession.Create(graph, _options.GpuDevice, out var fallback);
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
                using var outputs = session.Run(new RunOptions(), [ColumnNames.Pixels], [tensor], [ColumnNames.Features]);
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

        Task.WaitAll(decoders.Select(d => d.ContinueWith(_ => { }, TaskScheduler.Default)).ToArray());
        cancellation.ThrowIfCancellationRequested();
        var failed = decoders.FirstOrDefault(d => d.IsFaulted);
        if (failed is not null)
        {
            throw failed.Exception!.InnerException!;
        }

        Report();
        return new FeaturizationResult(
            new Dictionary<string, string>(keys, StringComparer.Ordinal),
            [.. skipped.OrderBy(s => s.Path, StringComparer.Ordinal)],
            fromCache,
            computed,
            stopwatch.Elapsed,
            fallback);
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

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
