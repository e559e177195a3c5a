using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Pipeline;

namespace MlNetFinetune.Prediction;

/// <summary>
/// One model file, loaded: its manifest, the split chain with one shared backbone session, and a pool of engines
/// created on demand. Reference-counted so that a replaced model is disposed only when the last prediction that
/// started on it has finished.
/// </summary>
internal sealed class LoadedModel : IDisposable
{
    private readonly ConcurrentBag<IScoringEngine> _idle = [];
    private readonly ConcurrentBag<IScoringEngine> _created = [];
    private readonly Func<IScoringEngine> _createEngine;
    private readonly IDisposable? _model;
    private readonly InferenceSession? _session;
    private int _references = 1;
    private Explanations.ModelExplainer? _explainer;
    private object? _explainerLock;

    private LoadedModel(ModelManifest manifest, Func<IScoringEngine> createEngine, IDisposable? model, InferenceSession? session, string? gpuFallback)
    {
        Manifest = manifest;
        _createEngine = createEngine;
        _model = model;
        _session = session;
        GpuFallback = gpuFallback;
    }

    public ModelManifest Manifest { get; }

    /// <summary>True when the backbone runs on its own tuned session (the chain could be split around it).</summary>
    public bool RunsBackboneDirectly => _session is not null;

    /// <summary>Why the GPU that was asked for is not used, or null.</summary>
    public string? GpuFallback { get; }

    /// <summary>Engines created so far.</summary>
    public int EngineCount => _created.Count;

    /// <summary>
    /// Loads <paramref name="modelPath"/>. Throws <see cref="UserInputException"/> naming the file when it is missing,
    /// not an MlNetFinetune model, of a newer format, truncated or corrupted, or its manifest does not match its scores.
    /// </summary>
    public static LoadedModel Load(string modelPath, int? gpuDevice)
    {
        var manifest = ModelManifest.ReadFrom(modelPath);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(modelPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserInputException($"{modelPath}: cannot be read ({FirstLine(e.Message)})");
        }

        string? int8OnCpu = null;
        if (gpuDevice is not null && manifest.Precision == ModelManifest.Int8)
        {
            // ONNX Runtime fuses the int8 graph into integer kernels for the CPU only; CUDA would run its convolutions in
            // float between dequantize and quantize steps, with scores that can differ from those the model was evaluated with.
            int8OnCpu = $"{modelPath}: an int8 model; its backbone runs on the CPU";
            gpuDevice = null;
        }

        var ml = new MLContext { GpuDeviceId = gpuDevice, FallbackToCpu = true };
        InferenceSession? session = null;
        string? gpuFallback = int8OnCpu;
        SavedChain chain;
        try
        {
            // The chain the Trainer composes: planar pixels at the manifest's size in, the manifest's feature vector out.
            var pixels = new SavedChain.NodeArg(ColumnNames.Pixels, [1, 3, manifest.ImageSize, manifest.ImageSize]);
            var features = new SavedChain.NodeArg(ColumnNames.Features, [manifest.FeatureSize]);
            chain = SavedChain.Load(ml, bytes, pixels, features, graph =>
            {
                session = BackboneSession.Create(graph, gpuDevice, out var sessionFallback);
                gpuFallback = sessionFallback ?? int8OnCpu;
                if (SavedChain.NodeArg.From(session.InputMetadata) is not { } input || SavedChain.NodeArg.From(session.OutputMetadata) is not { } output)
                {
                    return null;
                }

                // One run on zeros here, in parallel with ML.NET's load, so that the first prediction does not pay for
                // ONNX Runtime's first-run allocations.
                RunOnZeros(session, input, output);
                return (input, output);
            });
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or FormatException or IOException or ArgumentException
            or OnnxRuntimeException or InvalidProtocolBufferException)
        {
            session?.Dispose();
            throw new UserInputException($"{modelPath}: the ML.NET model inside cannot be loaded ({FirstLine(e.Message)})");
        }

        try
        {
            CheckScores(ml, chain.Model, manifest, modelPath);
            if (chain.Backbone is not null && session is not null && Split(ml, chain, session) is { } createSplit)
            {
                return new LoadedModel(manifest, createSplit, chain.Model as IDisposable, session, gpuFallback);
            }
        }
        catch
        {
            session?.Dispose();
            (chain.Model as IDisposable)?.Dispose();
            throw;
        }

        // The chain is not ours to split (a backbone input or output of another shape): ML.NET runs all of it.
        session?.Dispose();
        if (chain.Backbone is not null)
        {
            (chain.Model as IDisposable)?.Dispose();
            chain = SavedChain.LoadWhole(ml, bytes);
        }

        var model = chain.Model;
        return new LoadedModel(manifest, () => new ChainEngine(ml, model), model as IDisposable, null, int8OnCpu);
    }

    /// <summary>Takes an idle engine or creates one; the caller bounds how many are out at once.</summary>
    public IScoringEngine Rent() => _idle.TryTake(out var engine) ? engine : Create();

    public void Return(IScoringEngine engine) => _idle.Add(engine);

    /// <summary>Creates engines until <paramref name="count"/> exist and runs each once.</summary>
    public void WarmUp(int count)
    {
        using var image = MLImage.CreateFromPixels(8, 8, MLPixelFormat.Bgra32, new byte[8 * 8 * 4]);
        var engines = new List<IScoringEngine>();
        while (_created.Count < count)
        {
            engines.Add(Create());
        }

        while (_idle.TryTake(out var idle))
        {
            engines.Add(idle);
        }

        foreach (var engine in engines)
        {
            engine.Score(image);
            _idle.Add(engine);
        }
    }

    /// <summary>Takes a reference for one prediction; false when the model has already been disposed (it was replaced).</summary>
    public bool TryAddReference()
    {
        var references = Volatile.Read(ref _references);
        while (references > 0)
        {
            var seen = Interlocked.CompareExchange(ref _references, references + 1, references);
            if (seen == references)
            {
                return true;
            }

            references = seen;
        }

        return false;
    }

    /// <summary>
    /// The occlusion explainer of this model, loaded from <paramref name="modelPath"/> on first use. Throws
    /// <see cref="UserInputException"/> when the file there is no longer the model loaded here.
    /// </summary>
    public Explanations.ModelExplainer Explainer(string modelPath) =>
        LazyInitializer.EnsureInitialized(ref _explainer, ref _explainerLock, () =>
        {
            var explainer = Explanations.ModelExplainer.Load(modelPath);
            if (Serialize(explainer.Manifest) != Serialize(Manifest))
            {
                explainer.Dispose();
                throw new UserInputException($"{modelPath}: the model file changed after it was loaded; reload or restart to explain the new model");
            }

            return explainer;
        });

    /// <summary>Drops a reference; the last one disposes the engines, the session, the explainer and the ML.NET model.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            foreach (var engine in _created)
            {
                engine.Dispose();
            }

            _session?.Dispose();
            _explainer?.Dispose();
            _model?.Dispose();
        }
    }

    /// <summary>Drops the owner's reference.</summary>
    public void Dispose() => Release();

    private static string Serialize(ModelManifest manifest) => System.Text.Json.JsonSerializer.Serialize(manifest, Evaluation.ReportWriter.JsonOptions);

    private IScoringEngine Create()
    {
        var engine = _createEngine();
        _created.Add(engine);
        return engine;
    }

    /// <summary>
    /// Engines for the split chain, or null when its parts do not fit together: the preprocessing must produce the
    /// graph's input as a float vector of its size, and the head must take the graph's output.
    /// </summary>
    private static Func<IScoringEngine>? Split(MLContext ml, SavedChain chain, InferenceSession session)
    {
        var input = SavedChain.NodeArg.From(session.InputMetadata)!;
        var output = SavedChain.NodeArg.From(session.OutputMetadata)!;
        var pixels = chain.Preprocess!.GetOutputSchema(ImageInputSchema(ml)).GetColumnOrNull(input.Name);
        if (pixels?.Type is not VectorDataViewType { ItemType: NumberDataViewType number, Size: var size } || number != NumberDataViewType.Single || size != input.Length)
        {
            return null;
        }

        SplitEngine? engine;
        try
        {
            engine = new SplitEngine(ml, chain, session, input, output);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            return null;
        }

        return () => Interlocked.Exchange(ref engine, null) ?? new SplitEngine(ml, chain, session, input, output);
    }

    private static void RunOnZeros(InferenceSession session, SavedChain.NodeArg input, SavedChain.NodeArg output)
    {
        using var zeros = OrtValue.CreateTensorValueFromMemory(new float[input.Length], input.Dimensions);
        using var result = OrtValue.CreateTensorValueFromMemory(new float[output.Length], output.Dimensions);
        using var options = new RunOptions();
        session.Run(options, [input.Name], [zeros], [output.Name], [result]);
    }

    private static DataViewSchema ImageInputSchema(MLContext ml) => ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>()).Schema;

    /// <summary>The model's scores must be one per class of the manifest, named as the manifest names them.</summary>
    private static void CheckScores(MLContext ml, ITransformer model, ModelManifest manifest, string modelPath)
    {
        // The saved input schema omits the image column (ML.NET does not serialize image types), so bind to ImageInput's.
        var output = model.GetOutputSchema(ImageInputSchema(ml));
        if (output.GetColumnOrNull(ColumnNames.Score) is not { } score || (score.Type as VectorDataViewType)?.Size != manifest.Classes.Count)
        {
            throw new UserInputException($"{modelPath}: the model's scores do not match the {manifest.Classes.Count} classes of its manifest");
        }

        manifest.CheckClasses(ScoreClassNames(score), modelPath);
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

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();
}
