using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Images;
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
    /// <summary>How the backbone side runs: the Trainer's is one session on all cores, whose idle threads spin in fp32 and sleep in int8.</summary>
    /// <param name="Sessions">Sessions taking batches from the decoders in parallel.</param>
    /// <param name="ThreadsPerSession">Intra-op threads of each session; null for all cores (BackboneSession's choice).</param>
    /// <param name="Spinning">Whether ONNX Runtime's idle intra-op threads spin (its default) instead of sleeping.</param>
    public sealed record Layout(int Sessions = 1, int? ThreadsPerSession = null, bool Spinning = true)
    {
        public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{Sessions} session(s) x {(ThreadsPerSession is int t ? t.ToString(System.Globalization.CultureInfo.InvariantCulture) : "all cores")} thread(s){(Spinning ? "" : ", no spinning")}");
    }

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
    public (float[]?[] Features, TimeSpan Elapsed) Run(byte[] graph, IReadOnlyList<string> paths, int workers, Layout? layout = null)
    {
        layout ??= new Layout();
        var sessions = Enumerable.Range(0, layout.Sessions).Select(_ => CreateSession(graph, layout)).ToList();
        try
        {
            var clock = Stopwatch.StartNew();
            var features = new float[]?[paths.Count];
            var decoded = Channel.CreateBounded<(int Index, float[] Pixels)>(new BoundedChannelOptions(_batchSize * 4 * layout.Sessions));
            var decoders = StartDecoders(paths, workers, (index, pixels) => decoded.Writer.WriteAsync((index, pixels)).AsTask().GetAwaiter().GetResult());
            _ = Task.WhenAll(decoders).ContinueWith(t => decoded.Writer.Complete(t.Exception), TaskScheduler.Default);
            var runners = sessions.Skip(1).Select(session => Task.Run(() => RunBatches(session, decoded.Reader, features))).ToList();
            RunBatches(sessions[0], decoded.Reader, features);
            Task.WaitAll([.. decoders, .. runners]);
            return (features, clock.Elapsed);
        }
        finally
        {
            sessions.ForEach(s => s.Dispose());
        }
    }

    private static InferenceSession CreateSession(byte[] graph, Layout layout)
    {
        if (layout.ThreadsPerSession is null)
        {
            return BackboneSession.Create(graph, null, out _, layout.Spinning);
        }

        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = layout.ThreadsPerSession ?? Environment.ProcessorCount,
            InterOpNumThreads = 1,
        };
        if (!layout.Spinning)
        {
            options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        }

        return new InferenceSession(graph, options);
    }

    private void RunBatches(InferenceSession session, ChannelReader<(int Index, float[] Pixels)> reader, float[]?[] features)
    {
        var side = _backbone.ImageSize;
        var pixelCount = 3 * side * side;
        var featureSize = _backbone.FeatureSize;
        var batch = new List<(int Index, float[] Pixels)>(_batchSize);
        using var runOptions = new RunOptions();
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            while (batch.Count < _batchSize && reader.TryRead(out var item))
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
