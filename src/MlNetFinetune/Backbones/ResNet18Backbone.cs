using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Backbones;

/// <summary>
/// The ImageNet-pretrained ResNet18 shipped as ONNX by Microsoft.ML.DnnImageFeaturizer.ResNet18, rewritten into one graph:
/// RGB planar pixels in 0..255 -> BGR -> minus the mean image -> ResNet18 -> pooled taps -> one feature vector.
/// A network with the same tensor names (fine-tuned weights) can take the pretrained one's place.
/// </summary>
public sealed class ResNet18Backbone : IBackbone
{
    private readonly ModelProto? _network;
    private readonly Lazy<string> _fingerprint;

    /// <summary>The pretrained network at <paramref name="options"/>, or <paramref name="network"/> in its place.</summary>
    /// <param name="options">Input size and taps.</param>
    /// <param name="network">A network with the pretrained one's tensor names; null for the pretrained network.</param>
    /// <param name="name">Name in reports and the manifest; "resnet18" by default.</param>
    public ResNet18Backbone(BackboneOptions options, ModelProto? network = null, string name = "resnet18")
    {
        options.Validate();
        Options = options;
        _network = network;
        Name = name;
        _fingerprint = new(() => FingerprintOf(options, network is null ? s_weightsHash.Value : Convert.ToHexStringLower(SHA256.HashData(network.ToByteArray()))));
    }

    /// <summary>Input size and taps.</summary>
    public BackboneOptions Options { get; }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public int ImageSize => Options.ImageSize;

    /// <inheritdoc/>
    public string Features => string.Join('+', Options.ParseTaps());

    /// <inheritdoc/>
    public int FeatureSize => Options.FeatureSize;

    /// <inheritdoc/>
    public string Fingerprint => _fingerprint.Value;

    /// <inheritdoc/>
    public bool RunsInBatches => true;

    /// <inheritdoc/>
    public string Describe() => Name == "resnet18" ? Options.Describe() : $"{Name};{Options.Describe()}";

    /// <inheritdoc/>
    public byte[] BuildGraph(int? batchSize) => BuildGraph(Options, batchSize, _network);

    /// <summary>Bumped whenever the graph rewrite changes what features it computes; part of the cache key.</summary>
    public const int GraphVersion = 1;

    /// <summary>The preprocessing graph (mean image subtraction) of ML.NET's ResNet18 package, relative to its DnnImageModels folder.</summary>
    public const string PreprocessFile = "ResNetPrepOnnx/ResNetPreprocess.onnx";

    /// <summary>The pretrained ResNet18 graph of ML.NET's ResNet18 package, relative to its DnnImageModels folder.</summary>
    public const string NetworkFile = "ResNet18Onnx/ResNet18.onnx";

    private const string NetworkInput = "Input247";
    private const int PretrainedSize = 224;

    private static readonly string[] s_stageOutputs = ["ReLU283_Output_0", "ReLU315_Output_0", "ReLU347_Output_0", "ReLU393_Output_0"];

    /// <summary>The folder holding the package's ONNX files, copied next to the program by the package's build props.</summary>
    public static string ModelDirectory
    {
        get
        {
            var directory = Path.Combine(AppContext.BaseDirectory, "DnnImageModels");
            foreach (var file in new[] { PreprocessFile, NetworkFile })
            {
                if (!File.Exists(Path.Combine(directory, file)))
                {
                    throw new FileNotFoundException(
                        $"{Path.Combine(directory, file)}: pretrained backbone file missing; it is copied there by the Microsoft.ML.DnnImageFeaturizer.ResNet18 package at build time");
                }
            }

            return directory;
        }
    }

    /// <summary>
    /// Builds the feature graph. <paramref name="batchSize"/> null leaves the batch dimension dynamic and outputs
    /// [batch, features] for bulk featurization; 1 gives the [features] vector the ML.NET chain binds to.
    /// </summary>
    /// <param name="options">Input size and feature taps.</param>
    /// <param name="batchSize">Null for a dynamic batch, 1 for the chain's single image.</param>
    /// <param name="network">The network to wrap; null for the pretrained one (<see cref="LoadNetwork"/>). A fine-tuned
    /// network with the same tensor names (its batch norms folded, say) takes its place.</param>
    public static byte[] BuildGraph(BackboneOptions options, int? batchSize, ModelProto? network = null)
    {
        options.Validate();
        var taps = options.ParseTaps();
        var preprocess = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(ModelDirectory, PreprocessFile)));
        var model = network?.Clone() ?? LoadNetwork();
        var graph = model.Graph;
        var size = options.ImageSize;

        graph.ValueInfo.Clear();
        graph.Input.Clear();
        graph.Output.Clear();
        graph.Input.Add(TensorValue(Pipeline.ColumnNames.Pixels, FloatType, BatchDim(batchSize), Dim(3), Dim(size), Dim(size)));
        foreach (var initializer in graph.Initializer)
        {
            graph.Input.Add(TensorValue(initializer.Name, initializer.DataType, [.. initializer.Dims.Select(Dim)]));
        }

        var networkNodes = graph.Node.ToList();
        graph.Node.Clear();

        // The preprocessing graph's channel swap and mean image, with the mean image resampled to the input size.
        const string bgr = "mlnetfinetune_bgr";
        graph.Node.Add(Node("Split", [Pipeline.ColumnNames.Pixels], ["mlnetfinetune_r", "mlnetfinetune_g", "mlnetfinetune_b"],
            IntAttribute("axis", 1), IntsAttribute("split", 1, 1, 1)));
        graph.Node.Add(Node("Concat", ["mlnetfinetune_b", "mlnetfinetune_g", "mlnetfinetune_r"], [bgr], IntAttribute("axis", 1)));
        var mean = FloatTensor("mlnetfinetune_mean", [1, 3, size, size], ResampleMeanImage(preprocess, size));
        AddInitializer(graph, mean);
        graph.Node.Add(Node("Sub", [bgr, mean.Name], [NetworkInput]));

        graph.Node.AddRange(networkNodes.Where(n => n.OpType != "AveragePool" || !n.Output.Contains("Pooling395_Output_0")));

        var pooled = taps.Select(t => new PooledTap(s_stageOutputs[t.Stage - 1], BackboneOptions.StageChannels[t.Stage - 1], options.StageSide(t.Stage), t.Grid, $"mlnetfinetune_{t}"));
        AddPooledFeatures(graph, pooled, batchSize);
        PruneUnused(graph);
        model.ProducerName = "MlNetFinetune";
        return model.ToByteArray();
    }

    /// <summary>The pretrained ResNet18 network as the package ships it: input <c>Input247</c>, BGR minus the mean image, [1,3,224,224].</summary>
    public static ModelProto LoadNetwork() => ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(ModelDirectory, NetworkFile)));

    /// <summary>Names of the stage-end activations (after the ReLU) of stages 1 to 4.</summary>
    public static IReadOnlyList<string> StageOutputs => s_stageOutputs;

    /// <summary>Hash of the options, the graph version and the network weights: features under another fingerprint are never reused.</summary>
    private static string FingerprintOf(BackboneOptions options, string weightsHash)
    {
        var text = Encoding.UTF8.GetBytes($"{options.Describe()};graph={GraphVersion};weights={weightsHash}");
        return Convert.ToHexStringLower(SHA256.HashData(text))[..16];
    }

    /// <summary>The 64 MB of ONNX files are hashed once per process, not on every training run or shard.</summary>
    private static readonly Lazy<string> s_weightsHash = new(() =>
    {
        using var sha = SHA256.Create();
        foreach (var file in new[] { PreprocessFile, NetworkFile })
        {
            var bytes = File.ReadAllBytes(Path.Combine(ModelDirectory, file));
            sha.TransformBlock(bytes, 0, bytes.Length, null, 0);
        }

        sha.TransformFinalBlock([], 0, 0);
        return Convert.ToHexStringLower(sha.Hash!);
    });

    private static float[] ResampleMeanImage(ModelProto preprocess, int size)
    {
        var tensor = preprocess.Graph.Initializer.Single(t => t.Name == "MeanImage");
        var source = FloatValues(tensor);
        if (size == PretrainedSize)
        {
            return source;
        }

        // Area averaging over the source pixels each target pixel covers: the mean image is smooth, so this keeps
        // its per-channel level and coarse shape at any size.
        var target = new float[3 * size * size];
        var scale = (double)PretrainedSize / size;
        for (var c = 0; c < 3; c++)
        {
            for (var y = 0; y < size; y++)
            {
                for (var x = 0; x < size; x++)
                {
                    double sum = 0, weight = 0;
                    for (var sy = (int)Math.Floor(y * scale); sy < Math.Min(PretrainedSize, (int)Math.Ceiling((y + 1) * scale)); sy++)
                    {
                        var wy = Math.Min(sy + 1, (y + 1) * scale) - Math.Max(sy, y * scale);
                        for (var sx = (int)Math.Floor(x * scale); sx < Math.Min(PretrainedSize, (int)Math.Ceiling((x + 1) * scale)); sx++)
                        {
                            var wx = Math.Min(sx + 1, (x + 1) * scale) - Math.Max(sx, x * scale);
                            sum += wx * wy * source[(c * PretrainedSize + sy) * PretrainedSize + sx];
                            weight += wx * wy;
                        }
                    }

                    target[(c * size + y) * size + x] = (float)(sum / weight);
                }
            }
        }

        return target;
    }
}
