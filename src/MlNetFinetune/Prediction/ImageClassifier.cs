using Microsoft.Extensions.ObjectPool;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Prediction;

/// <summary>A class and its probability.</summary>
public sealed record LabelScore(string Label, float Score);

/// <summary>The answer for one image: the predicted class and the top classes with their probabilities, best first.</summary>
public sealed record ClassificationResult(string Label, float Confidence, IReadOnlyList<LabelScore> Top);

/// <summary>
/// Loads a model.zip once and classifies images from many threads at once. <see cref="PredictionEngine{TSrc,TDst}"/>
/// is not thread-safe, so each call borrows an engine from a bounded pool and returns it. Each engine runs its own
/// instance of the model: ONNX Runtime 1.31 fails ("LogStart must pair with LogEnd") when several threads run one
/// session after a training run in the same process, so engines share no session.
/// </summary>
public sealed class ImageClassifier : IDisposable
{
    private readonly SemaphoreSlim _gate;
    private readonly DefaultObjectPool<PredictionEngine<ImageInput, ImagePrediction>> _engines;
    private readonly EnginePolicy _policy;

    private ImageClassifier(string modelPath, ModelManifest manifest, EnginePolicy policy, int maxConcurrency)
    {
        ModelPath = modelPath;
        Manifest = manifest;
        MaxConcurrency = maxConcurrency;
        _policy = policy;
        _gate = new SemaphoreSlim(maxConcurrency, maxConcurrency);
        _engines = new DefaultObjectPool<PredictionEngine<ImageInput, ImagePrediction>>(policy, maxConcurrency);
    }

    /// <summary>Engines used by default: each holds a copy of the model (about 150 MB), and on a CPU one engine already uses every core.</summary>
    public static int DefaultMaxConcurrency => Math.Clamp(Environment.ProcessorCount / 2, 1, 4);

    public string ModelPath { get; }

    public ModelManifest Manifest { get; }

    /// <summary>Predictions that run at the same time; further callers wait for an engine.</summary>
    public int MaxConcurrency { get; }

    /// <summary>Class names in score order.</summary>
    public IReadOnlyList<string> Classes => Manifest.Classes;

    /// <summary>
    /// Loads <paramref name="modelPath"/>. Throws <see cref="UserInputException"/> naming the file when it is missing,
    /// not an MlNetFinetune model, of a newer format, truncated or corrupted.
    /// </summary>
    /// <param name="modelPath">model.zip written by the Trainer.</param>
    /// <param name="maxConcurrency">Predictions that may run at once (engines); default <see cref="DefaultMaxConcurrency"/>.</param>
    /// <param name="gpuDevice">CUDA device for the backbone (needs the GPU build); ML.NET falls back to the CPU when it is not usable.</param>
    public static ImageClassifier Load(string modelPath, int? maxConcurrency = null, int? gpuDevice = null)
    {
        var manifest = ModelManifest.ReadFrom(modelPath);
        var bytes = File.ReadAllBytes(modelPath);
        var ml = new MLContext { GpuDeviceId = gpuDevice, FallbackToCpu = true };
        ITransformer model;
        try
        {
            model = LoadModel(ml, bytes);
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or FormatException or IOException or ArgumentException)
        {
            throw new UserInputException($"{modelPath}: the ML.NET model inside cannot be loaded ({e.Message.Split('\n')[0].Trim()})");
        }

        // The saved input schema omits the image column (ML.NET does not serialize image types), so bind to ImageInput's.
        var output = model.GetOutputSchema(ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()).Schema);
        if (output.GetColumnOrNull(ColumnNames.Score) is not { } score || (score.Type as VectorDataViewType)?.Size != manifest.Classes.Count)
        {
            throw new UserInputException($"{modelPath}: the model's scores do not match the {manifest.Classes.Count} classes of its manifest");
        }

        manifest.CheckClasses(ScoreClassNames(score), modelPath);

        var concurrency = maxConcurrency ?? DefaultMaxConcurrency;
        if (concurrency < 1)
        {
            throw new UserInputException($"max concurrency {concurrency}: must be at least 1");
        }

        return new ImageClassifier(modelPath, manifest, new EnginePolicy(ml, bytes, model), concurrency);
    }

    /// <summary>Creates every engine and runs each once, so that no request pays for loading or lazy initialisation.</summary>
    public void WarmUp()
    {
        var engines = Enumerable.Range(0, MaxConcurrency).Select(_ => _engines.Get()).ToList();
        using var image = MLImage.CreateFromPixels(8, 8, MLPixelFormat.Bgra32, new byte[8 * 8 * 4]);
        foreach (var engine in engines)
        {
            engine.Predict(new ImageInput { Image = image });
            _engines.Return(engine);
        }
    }

    public ClassificationResult Predict(string imagePath, int top = 3)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(imagePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"{imagePath}: cannot read ({e.Message})", e);
        }

        return Predict(bytes, top, imagePath);
    }

    public ClassificationResult Predict(Stream stream, int top = 3, string source = "stream")
    {
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return Predict(memory.ToArray(), top, source);
    }

    /// <summary>Classifies an encoded image; throws <see cref="InvalidDataException"/> naming <paramref name="source"/> when it cannot be decoded.</summary>
    public ClassificationResult Predict(byte[] encoded, int top = 3, string source = "image")
    {
        using var image = ImageDecoder.Decode(encoded, source);
        return Predict(image, top);
    }

    public ClassificationResult Predict(MLImage image, int top = 3)
    {
        var scores = Scores(image);
        var ranked = scores
            .Select((score, i) => new LabelScore(Manifest.Classes[i], score))
            .OrderByDescending(s => s.Score)
            .ThenBy(s => s.Label, StringComparer.Ordinal)
            .ToList();
        return new ClassificationResult(ranked[0].Label, ranked[0].Score, ranked.Take(Math.Max(1, top)).ToList());
    }

    /// <summary>Probabilities of all classes, in <see cref="Classes"/> order.</summary>
    public float[] Scores(MLImage image)
    {
        _gate.Wait();
        var engine = _engines.Get();
        try
        {
            return engine.Predict(new ImageInput { Image = image }).Score;
        }
        finally
        {
            _engines.Return(engine);
            _gate.Release();
        }
    }

    /// <summary>
    /// Explains what the model predicts for an encoded image and where it looked (<see cref="ModelExplainer"/>), under
    /// the same concurrency limit as <see cref="Predict(MLImage, int)"/>. The explainer is loaded from
    /// <see cref="ModelPath"/> on first use; throws <see cref="UserInputException"/> when that file has changed since
    /// this classifier loaded it, and <see cref="InvalidDataException"/> naming <paramref name="source"/> when the image
    /// cannot be decoded.
    /// </summary>
    public Explanations.Explanation Explain(byte[] encoded, string source = "image", int top = 3)
    {
        using var image = ImageDecoder.Decode(encoded, source);
        var explainer = LazyInitializer.EnsureInitialized(ref _explainer, ref _explainerLock, LoadExplainer);
        _gate.Wait();
        try
        {
            return explainer.Explain(image, top);
        }
        finally
        {
            _gate.Release();
        }
    }

    private Explanations.ModelExplainer? _explainer;
    private object? _explainerLock;

    private Explanations.ModelExplainer LoadExplainer()
    {
        var explainer = Explanations.ModelExplainer.Load(ModelPath);
        var json = System.Text.Json.JsonSerializer.Serialize(Manifest, Evaluation.ReportWriter.JsonOptions);
        if (json != System.Text.Json.JsonSerializer.Serialize(explainer.Manifest, Evaluation.ReportWriter.JsonOptions))
        {
            explainer.Dispose();
            throw new UserInputException($"{ModelPath}: the model file changed after it was loaded; restart to explain the new model");
        }

        return explainer;
    }

    public void Dispose()
    {
        _policy.Dispose();
        _gate.Dispose();
        _explainer?.Dispose();
    }

    /// <summary>The class names ML.NET keeps with the score column (its slot names, from the training labels' key values).</summary>
    private static IReadOnlyList<string> ScoreClassNames(DataViewSchema.Column score)
    {
        if (score.Annotations.Schema.GetColumnOrNull("SlotNames") is null)
        {
            return [];
        }

        VBuffer<ReadOnlyMemory<char>> names = default;
        score.Annotations.GetValue("SlotNames", ref names);
        return [.. names.DenseValues().Select(n => n.ToString())];
    }

    private static ITransformer LoadModel(MLContext ml, byte[] zip)
    {
        using var stream = new MemoryStream(zip, writable: false);
        return ml.Model.Load(stream, out _);
    }

    /// <summary>Creates engines, each over its own model instance; the instance loaded for validation serves the first.</summary>
    private sealed class EnginePolicy(MLContext ml, byte[] zip, ITransformer first) : IPooledObjectPolicy<PredictionEngine<ImageInput, ImagePrediction>>, IDisposable
    {
        private readonly System.Collections.Concurrent.ConcurrentBag<PredictionEngine<ImageInput, ImagePrediction>> _created = [];
        private ITransformer? _first = first;

        public PredictionEngine<ImageInput, ImagePrediction> Create()
        {
            var model = Interlocked.Exchange(ref _first, null) ?? LoadModel(ml, zip);
            var engine = ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(model);
            _created.Add(engine);
            return engine;
        }

        public bool Return(PredictionEngine<ImageInput, ImagePrediction> obj) => true;

        public void Dispose()
        {
            foreach (var engine in _created)
            {
                engine.Dispose();
            }
        }
    }
}
