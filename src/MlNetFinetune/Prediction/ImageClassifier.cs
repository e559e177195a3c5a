using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Images;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Prediction;

/// <summary>
/// Loads a model.zip once and classifies images from many threads at once. Each prediction borrows an engine from a
/// bounded pool (<see cref="PredictionEngine{TSrc,TDst}"/> is not thread-safe); callers beyond
/// <see cref="MaxConcurrency"/> wait, and <see cref="PredictAsync(Stream, int, CancellationToken)"/> waits without
/// holding a thread. The engines share one loaded network: the backbone graph runs on one ONNX Runtime session
/// (whose <c>Run</c> is thread-safe) and each engine adds only ML.NET's small preprocessing and head engines and two
/// buffers (see the README for the measured memory).
/// </summary>
public sealed class ImageClassifier : IDisposable
{
    private readonly SemaphoreSlim _gate;
    private readonly Lock _reloading = new();
    private readonly ModelFileWatcher? _watcher;
    private LoadedModel _model;
    private bool _disposed;

    private ImageClassifier(ImageClassifierOptions options, LoadedModel model)
    {
        Options = options;
        MaxConcurrency = options.MaxConcurrency ?? DefaultMaxConcurrency;
        _model = model;
        _gate = new SemaphoreSlim(MaxConcurrency, MaxConcurrency);
        if (options.WatchForChanges)
        {
            _watcher = new ModelFileWatcher(options.ModelPath, ReloadAfterChange);
        }
    }

    /// <summary>
    /// Engines used by default: half the cores, at most 4. On a CPU one prediction already runs the backbone on every
    /// core, so more engines add queueing, not throughput.
    /// </summary>
    public static int DefaultMaxConcurrency => Math.Clamp(Environment.ProcessorCount / 2, 1, 4);

    /// <summary>How the classifier was loaded.</summary>
    public ImageClassifierOptions Options { get; }

    /// <summary>The model file.</summary>
    public string ModelPath => Options.ModelPath;

    /// <summary>The manifest of the model now serving (it changes when the file is reloaded).</summary>
    public ModelManifest Manifest => Volatile.Read(ref _model).Manifest;

    /// <summary>Predictions that run at the same time; further callers wait for an engine.</summary>
    public int MaxConcurrency { get; }

    /// <summary>Class names in score order.</summary>
    public IReadOnlyList<string> Classes => Manifest.Classes;

    /// <summary>Why the GPU that was asked for is not used (no CUDA build, no device), or null.</summary>
    public string? GpuFallbackMessage => Volatile.Read(ref _model).GpuFallback;

    /// <summary>Raised after the model file was reloaded (<see cref="ImageClassifierOptions.WatchForChanges"/>), or failed to.</summary>
    public event EventHandler<ModelReloadedEventArgs>? Reloaded;

    /// <summary>True when the backbone runs on its own tuned session, not inside ML.NET's chain.</summary>
    internal bool RunsBackboneDirectly => Volatile.Read(ref _model).RunsBackboneDirectly;

    /// <summary>Engines the model now serving has created.</summary>
    internal int EngineCount => Volatile.Read(ref _model).EngineCount;

    /// <summary>
    /// Loads <paramref name="modelPath"/>. Throws <see cref="UserInputException"/> naming the file when it is missing,
    /// not an MlNetFinetune model, of a newer format, truncated or corrupted.
    /// </summary>
    /// <param name="modelPath">model.zip written by the Trainer.</param>
    /// <param name="maxConcurrency">Predictions that may run at once (engines); default <see cref="DefaultMaxConcurrency"/>.</param>
    /// <param name="gpuDevice">CUDA device for the backbone (needs the GPU build); falls back to the CPU when it is not usable.</param>
    public static ImageClassifier Load(string modelPath, int? maxConcurrency = null, int? gpuDevice = null) =>
        Load(new ImageClassifierOptions { ModelPath = modelPath, MaxConcurrency = maxConcurrency, GpuDevice = gpuDevice });

    /// <summary>Loads the model named by <paramref name="options"/>; throws <see cref="UserInputException"/> for a bad setting or model file.</summary>
    public static ImageClassifier Load(ImageClassifierOptions options)
    {
        options.Validate();
        return new ImageClassifier(options, LoadedModel.Load(options.ModelPath, options.GpuDevice));
    }

    /// <summary>Creates every engine and runs each once, so that no request pays for loading or lazy initialisation.</summary>
    public void WarmUp()
    {
        var model = Lease();
        try
        {
            model.WarmUp(MaxConcurrency);
        }
        finally
        {
            model.Release();
        }
    }

    /// <summary>Classifies an image file; throws <see cref="InvalidImageException"/> naming the file when it cannot be read or decoded.</summary>
    public ClassificationResult Predict(string imagePath, int top = 3)
    {
        _gate.Wait();
        try
        {
            return Classify(alpha => ImageDecoder.DecodeFile(imagePath, Options.Limits, alpha), top);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Classifies the encoded image in <paramref name="stream"/> (read to its end, at most
    /// <see cref="ImageLimits.MaxEncodedBytes"/> of <see cref="ImageClassifierOptions.Limits"/>). Reads synchronously: in ASP.NET Core use
    /// <see cref="PredictAsync(Stream, int, CancellationToken)"/>.
    /// </summary>
    public ClassificationResult Predict(Stream stream, int top = 3, string source = "stream") =>
        Predict(EncodedImage.Read(stream, Options.Limits, source), top, source);

    /// <summary>Classifies an encoded image; throws <see cref="InvalidImageException"/> naming <paramref name="source"/> when it cannot be decoded.</summary>
    public ClassificationResult Predict(byte[] encoded, int top = 3, string source = "image")
    {
        _gate.Wait();
        try
        {
            return Classify(alpha => EncodedImage.Decode(encoded, source, Options.Limits, alpha), top);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Classifies a decoded image (which stays the caller's to dispose). Decode it with the model's
    /// <see cref="ModelManifest.InputAlpha"/>, as the other overloads do, or transparent pixels differ from training.
    /// </summary>
    public ClassificationResult Predict(MLImage image, int top = 3)
    {
        var model = Lease();
        try
        {
            return ClassificationResult.Rank(Scores(image), model.Manifest.Classes, top);
        }
        finally
        {
            model.Release();
        }
    }

    /// <summary>
    /// Reads the encoded image in <paramref name="stream"/> asynchronously (at most
    /// <see cref="ImageLimits.MaxEncodedBytes"/> of <see cref="ImageClassifierOptions.Limits"/>), waits for an engine without blocking a thread, and classifies
    /// it. Throws <see cref="InvalidImageException"/> when the bytes are not a decodable image or are too many, and
    /// <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fires while reading or waiting.
    /// </summary>
    public async Task<ClassificationResult> PredictAsync(Stream stream, int top = 3, CancellationToken cancellationToken = default)
    {
        var encoded = await EncodedImage.ReadAsync(stream, Options.Limits, "stream", cancellationToken).ConfigureAwait(false);
        return await PredictAsync(encoded, "stream", top, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Classifies an encoded image, waiting for an engine without blocking a thread.</summary>
    public Task<ClassificationResult> PredictAsync(byte[] encoded, int top = 3, CancellationToken cancellationToken = default) =>
        PredictAsync(encoded, "image", top, cancellationToken);

    /// <summary>Classifies an encoded image; <paramref name="source"/> names it in error messages ("uploaded file 'x.png'").</summary>
    public async Task<ClassificationResult> PredictAsync(byte[] encoded, string source, int top = 3, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return Classify(alpha => EncodedImage.Decode(encoded, source, Options.Limits, alpha), top);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Classifies an image file, waiting for an engine without blocking a thread. The file is read once an engine is
    /// free (a local read, through <see cref="ImageDecoder.DecodeFile"/>: never blocked by a FIFO, size checked first).
    /// </summary>
    public async Task<ClassificationResult> PredictAsync(string imagePath, int top = 3, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return Classify(alpha => ImageDecoder.DecodeFile(imagePath, Options.Limits, alpha), top);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Probabilities of all classes, in <see cref="Classes"/> order; decode with the model's <see cref="ModelManifest.InputAlpha"/>.</summary>
    public float[] Scores(MLImage image)
    {
        _gate.Wait();
        var model = Lease();
        var engine = model.Rent();
        try
        {
            return engine.Score(image);
        }
        finally
        {
            model.Return(engine);
            model.Release();
            _gate.Release();
        }
    }

    /// <summary>
    /// Explains what the model now serving predicts for an encoded image and where it looked
    /// (<see cref="Explanations.ModelExplainer"/>), under the same concurrency limit as the predictions. The explainer
    /// is loaded with the model on first use. Throws <see cref="InvalidImageException"/> naming
    /// <paramref name="source"/> when the image cannot be decoded, and <see cref="UserInputException"/> when the model
    /// file changed after it was loaded and no reload has happened since.
    /// </summary>
    public Explanations.Explanation Explain(byte[] encoded, string source = "image", int top = 3)
    {
        _gate.Wait();
        try
        {
            return ExplainHoldingGate(encoded, source, top);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>As <see cref="Explain"/>, waiting for its turn without blocking a thread.</summary>
    public async Task<Explanations.Explanation> ExplainAsync(byte[] encoded, string source = "image", int top = 3, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return ExplainHoldingGate(encoded, source, top);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Loads the model file again and serves it from the next prediction on; predictions already running finish on the
    /// old model, which is disposed after the last of them. Throws <see cref="UserInputException"/> (and keeps the old
    /// model) when the file cannot be loaded.
    /// </summary>
    public void Reload()
    {
        lock (_reloading)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var next = LoadedModel.Load(ModelPath, Options.GpuDevice);
            next.WarmUp(1);
            Interlocked.Exchange(ref _model, next).Release();
        }
    }

    /// <summary>Stops watching the file and disposes the model once predictions in flight have finished.</summary>
    public void Dispose()
    {
        lock (_reloading)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _watcher?.Dispose();
            _model.Release();
        }
    }

    /// <summary>
    /// Decodes with the policy of the model now serving (a reload may change it) and scores on one of its engines; the
    /// caller holds the gate.
    /// </summary>
    private ClassificationResult Classify(Func<AlphaPolicy, MLImage> decode, int top)
    {
        var model = Lease();
        var engine = model.Rent();
        try
        {
            using var image = decode(model.Manifest.InputAlpha);
            return ClassificationResult.Rank(engine.Score(image), model.Manifest.Classes, top);
        }
        finally
        {
            model.Return(engine);
            model.Release();
        }
    }

    private Explanations.Explanation ExplainHoldingGate(byte[] encoded, string source, int top)
    {
        var model = Lease();
        try
        {
            var explainer = model.Explainer(ModelPath);
            using var image = EncodedImage.Decode(encoded, source, Options.Limits, model.Manifest.InputAlpha);
            return explainer.Explain(image, top);
        }
        finally
        {
            model.Release();
        }
    }

    /// <summary>A reference to the model now serving, which stays usable until released even if a reload replaces it.</summary>
    private LoadedModel Lease()
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
            var model = Volatile.Read(ref _model);
            if (model.TryAddReference())
            {
                return model;
            }
        }
    }

    private void ReloadAfterChange()
    {
        try
        {
            Reload();
            Reloaded?.Invoke(this, new ModelReloadedEventArgs(ModelPath, Manifest, null));
        }
        catch (Exception e) when (e is UserInputException or ObjectDisposedException)
        {
            if (e is UserInputException)
            {
                Reloaded?.Invoke(this, new ModelReloadedEventArgs(ModelPath, null, e));
            }
        }
    }
}

/// <summary>The outcome of reloading a changed model file.</summary>
/// <param name="ModelPath">The file.</param>
/// <param name="Manifest">The new model's manifest; null when the reload failed.</param>
/// <param name="Error">Why the file could not be loaded (the old model keeps serving); null on success.</param>
public sealed class ModelReloadedEventArgs(string ModelPath, ModelManifest? Manifest, Exception? Error) : EventArgs
{
    /// <summary>The file.</summary>
    public string ModelPath { get; } = ModelPath;

    /// <summary>The new model's manifest; null when the reload failed.</summary>
    public ModelManifest? Manifest { get; } = Manifest;

    /// <summary>Why the file could not be loaded (the old model keeps serving); null on success.</summary>
    public Exception? Error { get; } = Error;
}
