using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Backbones;

/// <summary>
/// A user's own image network as an ONNX file (exported from PyTorch, timm, Keras…): input [N,3,H,W] float, static or
/// dynamic batch and size. Its pixel convention is folded into the graph in front of it, so it takes the same planar RGB
/// 0..255 pixels as the built-in backbone, and its features are its first output (average-pooled when it is a map) or
/// the tensors named, each optionally pooled on a grid (<c>name@g2</c>).
/// </summary>
public sealed class OnnxFileBackbone : IBackbone
{
    /// <summary>Bumped whenever the rewrite changes what features it computes; part of the fingerprint.</summary>
    private const int GraphVersion = 1;

    private const int DefaultImageSize = 224;

    private readonly ModelProto _model;
    private readonly string _input;
    private readonly IReadOnlyList<PooledTap> _taps;
    private readonly string _fingerprint;

    private OnnxFileBackbone(string path, ModelProto model, string input, int imageSize, IReadOnlyList<PooledTap> taps, string features, bool runsInBatches, PixelConvention pixels, string fileHash)
    {
        Path = path;
        _model = model;
        _input = input;
        _taps = taps;
        ImageSize = imageSize;
        Features = features;
        RunsInBatches = runsInBatches;
        Pixels = pixels;
        _fingerprint = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{Describe()};graph={GraphVersion};file={fileHash}")))[..16];
    }

    /// <summary>The ONNX file.</summary>
    public string Path { get; }

    /// <summary>The network's pixel convention, folded into the graph.</summary>
    public PixelConvention Pixels { get; }

    /// <inheritdoc/>
    public bool RunsInBatches { get; }

    /// <inheritdoc/>
    public string Name => "onnx:" + System.IO.Path.GetFileName(Path);

    /// <inheritdoc/>
    public int ImageSize { get; }

    /// <inheritdoc/>
    public string Features { get; }

    /// <inheritdoc/>
    public int FeatureSize => _taps.Sum(t => t.Size);

    /// <inheritdoc/>
    public string Fingerprint => _fingerprint;

    /// <inheritdoc/>
    public string Describe() => string.Create(CultureInfo.InvariantCulture, $"{Name};size={ImageSize};features={Features};{Pixels}");

    /// <summary>
    /// Reads and checks <paramref name="path"/>. Throws <see cref="UserInputException"/> naming the file and what is wrong
    /// when it is not an ONNX image model: not ONNX, not one image input [N,3,H,W] of floats, a size that does not fit,
    /// a named tensor that is missing or not a map or vector, or a graph ONNX Runtime cannot run.
    /// </summary>
    /// <param name="path">The ONNX file.</param>
    /// <param name="pixels">What the network expects in its input.</param>
    /// <param name="imageSize">Input side; null takes the graph's own (224 when the graph's size is dynamic).</param>
    /// <param name="features">Tensor names joined by ',', each optionally with a grid (<c>name@g2</c>); null for the first output.</param>
    public static OnnxFileBackbone Load(string path, PixelConvention pixels, int? imageSize = null, string? features = null)
    {
        pixels.Validate();
        byte[] bytes;
        ModelProto model;
        try
        {
            bytes = File.ReadAllBytes(path);
            model = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException)
        {
            throw new UserInputException($"--backbone {path}: not an ONNX model file");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserInputException($"--backbone {path}: cannot read ({e.Message})");
        }

        if (model.Graph is null || model.Graph.Node.Count == 0)
        {
            throw new UserInputException($"--backbone {path}: not an ONNX model file (no graph)");
        }

        KeepOurNamesFree(model.Graph);

        var opset = model.OpsetImport.Where(o => string.IsNullOrEmpty(o.Domain) || o.Domain == "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();
        if (opset < 7)
        {
            throw new UserInputException($"--backbone {path}: ONNX opset {opset} is too old; export with opset 7 or newer");
        }

        var initializers = model.Graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var inputs = model.Graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        if (inputs.Count != 1)
        {
            throw new UserInputException($"--backbone {path}: an image model has one input; this graph has {inputs.Count} ({string.Join(", ", inputs.Select(i => i.Name))})");
        }

        var input = inputs[0];
        var tensor = input.Type?.TensorType;
        var dims = tensor?.Shape?.Dim;
        if (tensor is null || tensor.ElemType != FloatType || dims is null || dims.Count != 4)
        {
            throw new UserInputException($"--backbone {path}: input '{input.Name}' is {Shape(input)}; an image model takes float [N,3,H,W]");
        }

        if (dims[1].HasDimValue && dims[1].DimValue != 3)
        {
            throw new UserInputException($"--backbone {path}: input '{input.Name}' has {dims[1].DimValue} channels; an RGB image model takes 3 ([N,3,H,W])");
        }

        var size = ImageSizeOf(path, input.Name, dims[2], dims[3], imageSize);
        var taps = ParseFeatures(path, model, features);
        var (shapes, runsInBatches) = Probe(path, model, input.Name, size, taps.Select(t => t.Tensor).ToList());
        var pooled = new List<PooledTap>();
        for (var i = 0; i < taps.Count; i++)
        {
            pooled.Add(ToPooledTap(path, taps[i].Tensor, taps[i].Grid, shapes[i], i));
        }

        var text = features ?? taps[0].Tensor;
        return new OnnxFileBackbone(System.IO.Path.GetFullPath(path), model, input.Name, size, pooled, text, runsInBatches, pixels, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    /// <inheritdoc/>
    public byte[] BuildGraph(int? batchSize)
    {
        var model = _model.Clone();
        var graph = model.Graph;
        var nodes = graph.Node.ToList();
        graph.Node.Clear();
        graph.Input.Remove(graph.Input.Single(i => i.Name == _input));
        if (graph.ValueInfo.FirstOrDefault(v => v.Name == _input) is { } described)
        {
            graph.ValueInfo.Remove(described);
        }
        graph.Input.Add(TensorValue(Pipeline.ColumnNames.Pixels, FloatType, BatchDim(batchSize), Dim(3), Dim(ImageSize), Dim(ImageSize)));

        // The convention in front of the network: channel order, scale into its range, minus mean, over deviation.
        var current = Pipeline.ColumnNames.Pixels;
        if (Pixels.Bgr)
        {
            AddInitializer(graph, Int64Tensor("mlnetfinetune_bgr_order", [3], [2, 1, 0]));
            graph.Node.Add(Node("Gather", [current, "mlnetfinetune_bgr_order"], ["mlnetfinetune_bgr"], IntAttribute("axis", 1)));
            current = "mlnetfinetune_bgr";
        }

        AddInitializer(graph, FloatTensor("mlnetfinetune_scale", [1], [Pixels.Scale]));
        AddInitializer(graph, FloatTensor("mlnetfinetune_mean", [1, 3, 1, 1], [.. Pixels.Mean]));
        AddInitializer(graph, FloatTensor("mlnetfinetune_std", [1, 3, 1, 1], [.. Pixels.Std]));
        graph.Node.Add(Node("Mul", [current, "mlnetfinetune_scale"], ["mlnetfinetune_scaled"]));
        graph.Node.Add(Node("Sub", ["mlnetfinetune_scaled", "mlnetfinetune_mean"], ["mlnetfinetune_centred"]));
        graph.Node.Add(Node("Div", ["mlnetfinetune_centred", "mlnetfinetune_std"], [_input]));
        graph.Node.AddRange(nodes);

        AddPooledFeatures(graph, _taps, batchSize);
        PruneUnused(graph);

        // From IR version 4 on, an initializer listed as an input is one a caller may override: ML.NET would then ask
        // for a column for each. Only the pixels are an input.
        if (model.IrVersion >= 4)
        {
            foreach (var listed in graph.Input.Where(i => i.Name != Pipeline.ColumnNames.Pixels).ToList())
            {
                graph.Input.Remove(listed);
            }
        }

        return model.ToByteArray();
    }

    /// <summary>
    /// Renames the graph's tensors that would collide with the names the rewrite adds (the <c>Pixels</c> input, the
    /// <c>Features</c> output, anything prefixed <c>mlnetfinetune_</c>), in nested subgraphs too.
    /// </summary>
    private static void KeepOurNamesFree(GraphProto graph)
    {
        static bool Ours(string name) => name is Pipeline.ColumnNames.Pixels or Pipeline.ColumnNames.Features || name.StartsWith("mlnetfinetune_", StringComparison.Ordinal);
        var names = graph.Node.SelectMany(n => n.Input.Concat(n.Output)).Concat(graph.Input.Select(i => i.Name)).Concat(graph.Initializer.Select(i => i.Name));
        foreach (var name in names.Where(Ours).Distinct(StringComparer.Ordinal).ToList())
        {
            Rename(graph, name, "user_" + name);
        }

        foreach (var node in graph.Node.Where(n => n.Name.StartsWith("mlnetfinetune_", StringComparison.Ordinal)))
        {
            node.Name = "user_" + node.Name;
        }
    }

    private static void Rename(GraphProto graph, string from, string to)
    {
        static void Replace(Google.Protobuf.Collections.RepeatedField<string> names, string from, string to)
        {
            for (var i = 0; i < names.Count; i++)
            {
                if (names[i] == from)
                {
                    names[i] = to;
                }
            }
        }

        foreach (var node in graph.Node)
        {
            Replace(node.Input, from, to);
            Replace(node.Output, from, to);
            foreach (var attribute in node.Attribute)
            {
                if (attribute.G is { } body)
                {
                    Rename(body, from, to);
                }

                foreach (var nested in attribute.Graphs)
                {
                    Rename(nested, from, to);
                }
            }
        }

        foreach (var value in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo).Where(v => v.Name == from))
        {
            value.Name = to;
        }

        foreach (var initializer in graph.Initializer.Where(i => i.Name == from))
        {
            initializer.Name = to;
        }
    }

    private static int ImageSizeOf(string path, string input, TensorShapeProto.Types.Dimension height, TensorShapeProto.Types.Dimension width, int? asked)
    {
        if (height.HasDimValue && width.HasDimValue)
        {
            if (height.DimValue != width.DimValue)
            {
                throw new UserInputException($"--backbone {path}: input '{input}' is {height.DimValue}x{width.DimValue}; only square inputs are supported");
            }

            if (asked is int size && size != height.DimValue)
            {
                throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                    $"--image-size {size}: the graph's input '{input}' has a fixed size of {height.DimValue}; leave --image-size out or give {height.DimValue}"));
            }

            return (int)height.DimValue;
        }

        var chosen = asked ?? DefaultImageSize;
        if (chosen is < BackboneOptions.MinimumImageSize or > BackboneOptions.MaximumImageSize)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"--image-size {chosen}: must be between {BackboneOptions.MinimumImageSize} and {BackboneOptions.MaximumImageSize}"));
        }

        return chosen;
    }

    private static List<(string Tensor, int Grid)> ParseFeatures(string path, ModelProto model, string? features)
    {
        if (features is null)
        {
            var first = model.Graph.Output.FirstOrDefault()
                ?? throw new UserInputException($"--backbone {path}: the graph has no output");
            return [(first.Name, 1)];
        }

        var produced = model.Graph.Node.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        var taps = new List<(string, int)>();
        foreach (var part in features.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var at = part.LastIndexOf("@g", StringComparison.Ordinal);
            var name = at < 0 ? part : part[..at];
            var grid = 1;
            if (at >= 0 && (!int.TryParse(part[(at + 2)..], NumberStyles.None, CultureInfo.InvariantCulture, out grid) || grid < 1))
            {
                throw new UserInputException($"--features {features}: '{part}' has a bad grid; write e.g. {name}@g2 for a 2x2 grid");
            }

            if (!produced.Contains(name))
            {
                throw new UserInputException($"--features {features}: the graph {path} has no tensor named '{name}' (its outputs: {string.Join(", ", model.Graph.Output.Select(o => o.Name))})");
            }

            taps.Add((name, grid));
        }

        return taps.Count > 0 ? taps : throw new UserInputException($"--features {features}: no tensor named");
    }

    /// <summary>
    /// Runs the graph once on black images to learn the shapes of the tapped tensors: with a batch of 2 if the graph
    /// allows a dynamic batch, else with 1. A graph ONNX Runtime cannot run is a user error naming the first cause.
    /// </summary>
    private static (IReadOnlyList<long[]> Shapes, bool RunsInBatches) Probe(string path, ModelProto model, string input, int size, IReadOnlyList<string> tensors)
    {
        var probe = model.Clone();
        var graph = probe.Graph;
        var declared = graph.Input.Single(i => i.Name == input);
        graph.Input.Remove(declared);
        graph.Input.Add(TensorValue(input, FloatType, Dim("batch"), Dim(3), Dim(size), Dim(size)));
        graph.Output.Clear();
        foreach (var tensor in tensors.Distinct(StringComparer.Ordinal))
        {
            graph.Output.Add(new ValueInfoProto { Name = tensor, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = FloatType } } });
        }

        var bytes = probe.ToByteArray();
        string? problem = null;
        foreach (var batch in new[] { 2, 1 })
        {
            try
            {
                using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC };
                using var session = new InferenceSession(bytes, options);
                using var runOptions = new RunOptions();
                using var pixels = OrtValue.CreateTensorValueFromMemory(new float[batch * 3 * size * size], [batch, 3, size, size]);
                using var outputs = session.Run(runOptions, [input], [pixels], [.. tensors]);
                return ([.. outputs.Select(o => o.GetTensorTypeAndShape().Shape)], batch > 1);
            }
            catch (OnnxRuntimeException e)
            {
                problem ??= e.Message.Split('\n', 2)[0].Trim();
            }
        }

        throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
            $"--backbone {path}: ONNX Runtime cannot run the graph on a {size}x{size} image ({problem})"));
    }

    private static PooledTap ToPooledTap(string path, string tensor, int grid, long[] shape, int index)
    {
        var name = string.Create(CultureInfo.InvariantCulture, $"mlnetfinetune_tap{index}");
        switch (shape.Length)
        {
            case 2 when grid == 1:
                return new PooledTap(tensor, (int)shape[1], 0, 1, name);
            case 2:
                throw new UserInputException($"--features: '{tensor}' of {path} is a vector [N,{shape[1]}]; only maps [N,C,H,W] can be pooled on a grid");
            case 4 when shape[2] != shape[3]:
                throw new UserInputException($"--features: '{tensor}' of {path} is a {shape[2]}x{shape[3]} map; only square maps are supported");
            case 4 when shape[2] % grid != 0:
                throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                    $"--features: '{tensor}' of {path} is a {shape[2]}x{shape[3]} map, which does not split into a {grid}x{grid} grid"));
            case 4:
                return new PooledTap(tensor, (int)shape[1], (int)shape[2], grid, name);
            default:
                throw new UserInputException($"--features: '{tensor}' of {path} has shape [{string.Join(',', shape)}]; features come from a map [N,C,H,W] or a vector [N,C]");
        }
    }

    private static string Shape(ValueInfoProto value)
    {
        if (value.Type?.TensorType is not { } tensor)
        {
            return "not a tensor";
        }

        var element = ((TensorProto.Types.DataType)tensor.ElemType).ToString().ToLowerInvariant();
        var dims = tensor.Shape?.Dim.Select(d => d.HasDimValue ? d.DimValue.ToString(CultureInfo.InvariantCulture) : d.DimParam) ?? [];
        return $"{element} [{string.Join(',', dims)}]";
    }
}
