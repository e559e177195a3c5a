using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Pipeline;
using Onnx;

namespace MlNetFinetune.Explanations;

/// <summary>
/// A trained model taken apart for explanations: ML.NET's resize and pixel extraction (so that pixels match the saved
/// chain), the backbone's feature graph with a dynamic batch in an ONNX Runtime session, and the fitted head. Runs are
/// serialised: each batch already uses every core, and one session is not shared between threads.
/// </summary>
internal sealed class ExplanationModel : IDisposable
{
    /// <summary>Bounds the input of one backbone call (64 images at 224 px): larger inputs are split into several calls.</summary>
    private const long MaximumBatchPixels = 64L * 224 * 224;

    private readonly Lock _lock = new();
    private readonly MLContext _ml;
    private readonly InferenceSession _session;
    private readonly ITransformer _head;
    private readonly PredictionEngine<ImageInput, PixelRow> _pixels;
    private readonly SchemaDefinition _featureSchema;

    private ExplanationModel(MLContext ml, byte[] dynamicGraph, ITransformer head, int imageSize, int featureSize, IReadOnlyList<string> classes, int? gpuDevice = null)
    {
        _ml = ml;
        _head = head;
        ImageSize = imageSize;
        FeatureSize = featureSize;
        Classes = classes;
        _session = BackboneSession.Create(dynamicGraph, gpuDevice, out _);
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        _pixels = ml.Model.CreatePredictionEngine<ImageInput, PixelRow>(ImageClassificationChain.ImageToPixels(ml, imageSize).Fit(empty));
        _featureSchema = SchemaDefinition.Create(typeof(FeatureInput));
        _featureSchema[ColumnNames.Features].ColumnType = new VectorDataViewType(NumberDataViewType.Single, featureSize);
    }

    /// <summary>Side of the backbone's square input.</summary>
    public int ImageSize { get; }

    /// <summary>Length of the bottleneck feature vector.</summary>
    public int FeatureSize { get; }

    /// <summary>Class names in score order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>
    /// The model of a training run, from its backbone and fitted head (normaliser and classifier), on the CUDA device
    /// the run's featurization used, if any (the CPU when it is not usable, as there). The backbone's batch graph is
    /// kept in the workspace's graphs folder, as the saved chain's is, so that later runs do not rebuild it.
    /// </summary>
    public static ExplanationModel FromTraining(MLContext ml, IBackbone backbone, ITransformer head, IReadOnlyList<string> classes, string workspace, int? gpuDevice = null)
    {
        var graphPath = Path.Combine(workspace, "graphs", $"{backbone.Fingerprint}-batch.onnx");
        byte[] graph;
        if (File.Exists(graphPath))
        {
            graph = File.ReadAllBytes(graphPath);
        }
        else
        {
            graph = backbone.BuildGraph(batchSize: null);
            AtomicFile.Write(graphPath, temporary => File.WriteAllBytes(temporary, graph));
        }

        return new(ml, graph, head, backbone.ImageSize, backbone.FeatureSize, classes, gpuDevice);
    }

    /// <summary>
    /// The model saved in <paramref name="modelPath"/>: the backbone graph exactly as the saved chain runs it (pretrained
    /// or fine-tuned weights alike), given a dynamic batch, and the chain's steps after the featurizer.
    /// </summary>
    public static ExplanationModel FromModelFile(string modelPath, int imageSize, int featureSize, IReadOnlyList<string> classes)
    {
        var ml = new MLContext();
        ITransformer model;
        using (var stream = File.OpenRead(modelPath))
        {
            model = ml.Model.Load(stream, out _);
        }

        if (model is not TransformerChain<ITransformer> chain || chain.Count() < 2)
        {
            throw new UserInputException($"{modelPath}: not the featurizer-then-head chain MlNetFinetune saves");
        }

        var head = new TransformerChain<ITransformer>([.. chain.Skip(1)]);

        // The featurizer's own ONNX session (batch 1) is not needed: the explainer runs its own, batched.
        (chain.First() as IDisposable)?.Dispose();
        return new ExplanationModel(ml, DynamicBatch(ReadBackboneGraph(modelPath), featureSize), head, imageSize, featureSize, classes);
    }

    /// <summary>The image as the backbone sees it: resized and cropped by ML.NET as the saved chain does, planar RGB in 0..255.</summary>
    public float[] Pixels(MLImage image)
    {
        lock (_lock)
        {
            return _pixels.Predict(new ImageInput { Image = image }).Pixels;
        }
    }

    /// <summary>Class probabilities of <paramref name="count"/> images whose planar pixels are concatenated in <paramref name="pixels"/>.</summary>
    public float[][] Probabilities(float[] pixels, int count)
    {
        var plane = 3 * ImageSize * ImageSize;
        var perCall = (int)Math.Max(1, MaximumBatchPixels / ((long)ImageSize * ImageSize));
        var features = new List<FeatureInput>(count);
        lock (_lock)
        {
            for (var start = 0; start < count; start += perCall)
            {
                var n = Math.Min(perCall, count - start);
                using var input = OrtValue.CreateTensorValueFromMemory(
                    OrtMemoryInfo.DefaultInstance, pixels.AsMemory(start * plane, n * plane), [n, 3, ImageSize, ImageSize]);
                using var runOptions = new RunOptions();
                using var outputs = _session.Run(runOptions, [ColumnNames.Pixels], [input], [ColumnNames.Features]);
                var values = outputs[0].GetTensorDataAsSpan<float>();
                for (var i = 0; i < n; i++)
                {
                    features.Add(new FeatureInput { Features = values.Slice(i * FeatureSize, FeatureSize).ToArray() });
                }
            }

            var scored = _head.Transform(_ml.Data.LoadFromEnumerable(features, _featureSchema));
            return [.. _ml.Data.CreateEnumerable<ScoreRow>(scored, reuseRowObject: false).Select(r => r.Score)];
        }
    }

    /// <summary>The occlusion map of a decoded image.</summary>
    public OcclusionMap Explain(MLImage image, OcclusionOptions options) =>
        Occlusion.Explain(Pixels(image), ImageSize, Classes, options, Probabilities);

    public void Dispose()
    {
        _session.Dispose();
        _pixels.Dispose();
    }

    /// <summary>
    /// The ONNX graph the saved chain's featurizer runs. ML.NET stores it as the zip entry "OnnxModel" of the ONNX
    /// transform: a 32-bit little-endian length, then the model's bytes.
    /// </summary>
    internal static byte[] ReadBackboneGraph(string modelPath)
    {
        using var archive = ZipFile.OpenRead(modelPath);
        var entries = archive.Entries.Where(e => e.Name == "OnnxModel").ToList();
        if (entries.Count != 1)
        {
            throw new UserInputException($"{modelPath}: expected one ONNX backbone inside, found {entries.Count}");
        }

        using var stream = entries[0].Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        var bytes = memory.GetBuffer().AsSpan(0, (int)memory.Length);
        var length = bytes.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(bytes) : -1;
        if (length != bytes.Length - 4)
        {
            throw new UserInputException($"{modelPath}: the ONNX backbone entry is damaged ({bytes.Length} bytes, length field {length})");
        }

        return bytes[4..].ToArray();
    }

    /// <summary>
    /// The chain's feature graph (input [1,3,S,S], output the [F] vector ML.NET binds to) with a dynamic batch: input
    /// [N,3,S,S], output [N,F]. The backbone's layers take any batch (bulk featurization runs them so); only the
    /// final reshape to one vector is widened to one row per image.
    /// </summary>
    internal static byte[] DynamicBatch(byte[] chainGraph, int featureSize)
    {
        var model = ModelProto.Parser.ParseFrom(chainGraph);
        var graph = model.Graph;
        var batch = new TensorShapeProto.Types.Dimension { DimParam = "batch" };
        var input = graph.Input.Single(i => i.Name == ColumnNames.Pixels);
        input.Type.TensorType.Shape.Dim[0] = batch;
        var output = graph.Output.Single(o => o.Name == ColumnNames.Features);
        var reshape = graph.Node.SingleOrDefault(n => n.Output.Contains(ColumnNames.Features) && n.OpType == "Reshape");
        if (reshape is not null)
        {
            var shapeName = reshape.Input[1];
            var shape = graph.Initializer.Single(t => t.Name == shapeName);
            var widened = OnnxGraph.Int64Tensor(shapeName, [2], [-1, featureSize]);
            graph.Initializer[graph.Initializer.IndexOf(shape)] = widened;
            var declared = graph.Input.SingleOrDefault(i => i.Name == shapeName);
            if (declared is not null)
            {
                graph.Input[graph.Input.IndexOf(declared)] = OnnxGraph.TensorValue(shapeName, OnnxGraph.Int64Type, OnnxGraph.Dim(2));
            }
        }

        graph.Output[graph.Output.IndexOf(output)] = OnnxGraph.TensorValue(ColumnNames.Features, OnnxGraph.FloatType, batch, OnnxGraph.Dim(featureSize));
        graph.ValueInfo.Clear();
        return Google.Protobuf.MessageExtensions.ToByteArray(model);
    }

    private sealed class PixelRow
    {
        [ColumnName(ColumnNames.Pixels)]
        public float[] Pixels { get; set; } = [];
    }

    private sealed class FeatureInput
    {
        [ColumnName(ColumnNames.Features)]
        public float[] Features { get; set; } = [];
    }

    private sealed class ScoreRow
    {
        [ColumnName(ColumnNames.Score)]
        public float[] Score { get; set; } = [];
    }
}
