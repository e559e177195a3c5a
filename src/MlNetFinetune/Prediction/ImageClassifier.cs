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
/// is not thread-safe, so each call borrows an engine from a pool and returns it.
/// </summary>
public sealed class ImageClassifier : IDisposable
{
    private readonly DisposableObjectPool _engines;

    private ImageClassifier(string modelPath, ModelManifest manifest, MLContext ml, ITransformer model)
    {
        ModelPath = modelPath;
        Manifest = manifest;
        _engines = new DisposableObjectPool(() => ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(model), Environment.ProcessorCount * 2);
    }

    public string ModelPath { get; }

    public ModelManifest Manifest { get; }

    /// <summary>Class names in score order.</summary>
    public IReadOnlyList<string> Classes => Manifest.Classes;

    /// <summary>
    /// Loads <paramref name="modelPath"/>. Throws <see cref="UserInputException"/> naming the file when it is missing,
    /// not an MlNetFinetune model, of a newer format, truncated or corrupted.
    /// </summary>
    public static ImageClassifier Load(string modelPath)
    {
        var manifest = ModelManifest.ReadFrom(modelPath);
        var ml = new MLContext();
        ITransformer model;
        try
        {
            model = ml.Model.Load(modelPath, out _);
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

        return new ImageClassifier(modelPath, manifest, ml, model);
    }

    /// <summary>Runs one prediction on a blank image so that the first real request does not pay for lazy initialisation.</summary>
    public void WarmUp()
    {
        using var image = MLImage.CreateFromPixels(8, 8, MLPixelFormat.Bgra32, new byte[8 * 8 * 4]);
        _ = Predict(image, 1);
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
        var engine = _engines.Get();
        try
        {
            return engine.Predict(new ImageInput { Image = image }).Score;
        }
        finally
        {
            _engines.Return(engine);
        }
    }

    public void Dispose() => _engines.Dispose();

    /// <summary>Keeps up to a number of idle engines; engines beyond that, and all of them at the end, are disposed.</summary>
    private sealed class DisposableObjectPool(Func<PredictionEngine<ImageInput, ImagePrediction>> create, int retained) : IDisposable
    {
        private readonly ObjectPool<PredictionEngine<ImageInput, ImagePrediction>> _pool =
            new DefaultObjectPoolProvider { MaximumRetained = retained }.Create(new EnginePolicy(create));

        public PredictionEngine<ImageInput, ImagePrediction> Get() => _pool.Get();

        public void Return(PredictionEngine<ImageInput, ImagePrediction> engine) => _pool.Return(engine);

        public void Dispose() => (_pool as IDisposable)?.Dispose();
    }

    private sealed class EnginePolicy(Func<PredictionEngine<ImageInput, ImagePrediction>> create) : IPooledObjectPolicy<PredictionEngine<ImageInput, ImagePrediction>>
    {
        public PredictionEngine<ImageInput, ImagePrediction> Create() => create();

        public bool Return(PredictionEngine<ImageInput, ImagePrediction> obj) => true;
    }
}
