using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Pipeline;
using MlNetFinetune.Training;

namespace MlNetFinetune.Benchmarks;

/// <summary>
/// BulkFeaturizer's path from files to features (read, hash, decode, resize and extract pixels on worker threads,
/// batched ONNX Runtime session on the calling thread), without the cache and for any backbone graph, so that the
/// float and the int8 graph are timed on exactly the Trainer's route.
/// </summary>
internal sealed class FileFeaturizer
{
    private readonly MLContext _ml = new(1);
    private readonly BackboneOptions _backbone;
    private readonly int _batchSize;
    private readonly ITransformer _imageToPixels;

    public FileFeaturizer(BackboneOptions backbone, int batchSize)
    {
        _backbone = backbone;
        _batchSize = batchSize;
        _imageToPixels = ImageClassificationChain.ImageToPixels(_ml, backbone.ImageSize).Fit(_ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()));
    }

    /// <summary>BulkFeaturizer's default: half the cores decode while the backbone runs on all of them.</summary>
    public static int DefaultWorkers => Math.Max(1, Environment.ProcessorCount / 2);

    /// <summary>Features of <paramref name="paths"/> in their order (null where a file does not decode), and the wall time.</summary>
    public (float[]?[] Features, TimeSpan Elapsed) Run(byte[] graph, IReadOnlyList<string> paths, int workers)
    {
        using var session = BackboneSession.Create(graph, null, out _);
        var clock = Stopwatch.StartNew();
        var features = new float[]?[paths.Count];
        var decoded = Channel.CreateBounded<(int Index, float[] Pixels)>(new BoundedChannelOptions(_batchSize * 4) { SingleReader = true });
        var decoders = StartDecoders(paths, workers, (index, pixels) => decoded.Writer.WriteAsync((index, pixels)).AsTask().GetAwaiter().GetResult());
        _ = Task.WhenAll(decoders).ContinueWith(t => decoded.Writer.Complete(t.Exception), TaskScheduler.Default);
        var side = _backbone.ImageSize;
        var pixelCount = 3 * side * side;
        var featureSize = _backbone.FeatureSize;
        var batch = new List<(int Index, float[] Pixels)>(_batchSize);
        using var runOptions = new RunOptions();
        while (decoded.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            while (batch.Count < _batchSize && decoded.Reader.TryRead(out var item))
            {
                batch.Add(item);
            }

            var input = new float[batch.Count * pixelCount];
            for (var i = 0; i < batch.Count; i++)
            {
                batch[i].Pixels.CopyTo(input, i * pixelCount);
            }

            using var tensor = OrtValue.CreateTensorValueFromMemory(input, [batch.Count, 3, side, side]);
            using var outputs = session.Run(runOptions, [ColumnNames.Pixels], [tensor], [ColumnNames.Features]);
            var values = outputs[0].GetTensorDataAsSpan<float>();
            for (var i = 0; i < batch.Count; i++)
            {
                features[batch[i].Index] = values.Slice(i * featureSize, featureSize).ToArray();
            }
        }

        Task.WaitAll(decoders);
        return (features, clock.Elapsed);
    }

    /// <summary>Images per second of the decode half alone (read, hash, decode, resize, pixels) on <paramref name="workers"/> threads.</summary>
    public double DecodeOnly(IReadOnlyList<string> paths, int workers)
    {
        var clock = Stopwatch.StartNew();
        Task.WaitAll(StartDecoders(paths, workers, (_, _) => { }));
        return paths.Count / clock.Elapsed.TotalSeconds;
    }

    private Task[] StartDecoders(IReadOnlyList<string> paths, int workers, Action<int, float[]> deliver)
    {
        var next = -1;
        return [.. Enumerable.Range(0, workers).Select(worker => Task.Run(() =>
        {
            using var engine = _ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(_imageToPixels);
            for (var index = Interlocked.Increment(ref next); index < paths.Count; index = Interlocked.Increment(ref next))
            {
                var bytes = File.ReadAllBytes(paths[index]);
                _ = BulkFeaturizer.ImageKey(bytes);
                try
                {
                    using var image = ImageDecoder.Decode(bytes, paths[index]);
                    deliver(index, engine.Predict(new ImageInput { Image = image }).Pixels);
                }
                catch (InvalidDataException)
                {
                    // Left null in the results, as BulkFeaturizer skips it.
                }
            }
        }))];
    }

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }
}
