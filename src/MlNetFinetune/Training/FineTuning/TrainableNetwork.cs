using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>Height, width and channels of an activation map.</summary>
internal sealed record MapShape(int Height, int Width, int Channels)
{
    public int Positions => Height * Width;

    public int Size => Height * Width * Channels;
}

/// <summary>
/// A convolution of the trainable part with everything the training graphs need to know about it. Pads are the
/// ONNX ones, each side on its own: this backbone's stride-2 convolutions pad one row and column at the top and left
/// and none at the bottom and right, and the index tables reproduce that exactly.
/// </summary>
/// <param name="Input">The activation it reads.</param>
/// <param name="Output">The activation it writes (after the batch norm's scale and shift).</param>
/// <param name="WeightName">The convolution's own weight (trained, before the batch norm's scale).</param>
/// <param name="BiasName">The trained per-channel shift after the scale: the batch norm's folded bias
/// (<see cref="Backbones.BatchNormFolding"/> names it weight + "_folded_bias"), or the convolution's bias.</param>
/// <param name="Scale">The frozen batch norm's per-channel scale gamma / sqrt(var + eps), or null without one. Training
/// the unscaled weight under this fixed scale is training a convolution followed by a frozen batch norm, the usual
/// recipe; training the folded weight directly would multiply each channel's effective learning rate by 1 / scale²
/// (measured: the folded stage 4 diverges at a learning rate of 0.01).</param>
/// <param name="InputShape">Shape of <paramref name="Input"/>.</param>
/// <param name="OutputShape">Shape of <paramref name="Output"/>.</param>
/// <param name="KernelHeight">Kernel rows.</param>
/// <param name="KernelWidth">Kernel columns.</param>
/// <param name="Stride">Stride in both directions.</param>
/// <param name="PadTop">Zero rows added above.</param>
/// <param name="PadLeft">Zero columns added on the left.</param>
/// <param name="PadBottom">Zero rows added below.</param>
/// <param name="PadRight">Zero columns added on the right.</param>
internal sealed record ConvLayer(
    string Input,
    string Output,
    string WeightName,
    string BiasName,
    float[]? Scale,
    MapShape InputShape,
    MapShape OutputShape,
    int KernelHeight,
    int KernelWidth,
    int Stride,
    int PadTop,
    int PadLeft,
    int PadBottom,
    int PadRight)
{
    /// <summary>The name of the folded weight (scale applied) in the batch-norm folded network.</summary>
    public string FoldedWeightName => Scale is null ? WeightName : WeightName + "_folded";

    public int Taps => KernelHeight * KernelWidth;

    /// <summary>Rows of the weight matrix: one per kernel tap and input channel.</summary>
    public int WeightRows => Taps * InputShape.Channels;

    /// <summary>A 1x1, stride-1, unpadded convolution reads its input as the column matrix itself, with no gather.</summary>
    public bool IsPointwise => Taps == 1 && Stride == 1 && PadTop + PadLeft + PadBottom + PadRight == 0;
}

/// <summary>One step of the trainable part, in graph order.</summary>
internal abstract record NetworkOp(string Output);

internal sealed record ConvOp(ConvLayer Conv) : NetworkOp(Conv.Output);

internal sealed record ReluOp(string Input, string Output) : NetworkOp(Output);

internal sealed record AddOp(string Left, string Right, string Output) : NetworkOp(Output);

/// <summary>
/// The part of a network between a frozen activation and the taps the head reads: the ops that train, in order,
/// with every activation's shape and the parameters' initial values. Only Conv (optionally followed by an
/// inference-mode BatchNormalization, which stays frozen), Relu and Add occur in it; anything else is refused with
/// the op named, so a new backbone fails loudly rather than training something else.
/// </summary>
internal sealed class TrainableNetwork
{
    private TrainableNetwork(string input, IReadOnlyList<NetworkOp> ops, IReadOnlyDictionary<string, MapShape> shapes, IReadOnlyDictionary<string, float[]> initial)
    {
        Input = input;
        Ops = ops;
        Shapes = shapes;
        Initial = initial;
        Convs = [.. ops.OfType<ConvOp>().Select(o => o.Conv)];
    }

    /// <summary>Initial value of every convolution's weight (as a [taps * C, K] matrix) and bias, by name.</summary>
    public IReadOnlyDictionary<string, float[]> Initial { get; }

    /// <summary>The frozen activation the trainable part starts from (what the cache holds).</summary>
    public string Input { get; }

    public IReadOnlyList<NetworkOp> Ops { get; }

    public IReadOnlyDictionary<string, MapShape> Shapes { get; }

    public IReadOnlyList<ConvLayer> Convs { get; }

    public MapShape InputShape => Shapes[Input];

    /// <summary>
    /// The nodes of <paramref name="graph"/> that lie on a path from <paramref name="input"/> to one of
    /// <paramref name="outputs"/>. Every other input of those nodes must be an initializer: an output that also needs
    /// an activation from below <paramref name="input"/> cannot be computed from the cache.
    /// </summary>
    public static TrainableNetwork Extract(GraphProto graph, string input, MapShape inputShape, IReadOnlyCollection<string> outputs)
    {
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var needed = new HashSet<string>(outputs, StringComparer.Ordinal);
        foreach (var node in graph.Node.Reverse())
        {
            if (node.Output.Any(needed.Contains) && node.Output[0] != input)
            {
                needed.UnionWith(node.Input.Where(i => !initializers.ContainsKey(i)));
            }
        }

        // A batch norm that is its convolution's only consumer merges into it as a frozen scale and a trained shift.
        var consumers = graph.Node.SelectMany(n => n.Input).GroupBy(i => i, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var batchNorms = graph.Node.Where(n => n.OpType == "BatchNormalization" && consumers.GetValueOrDefault(n.Input[0]) == 1)
            .ToDictionary(n => n.Input[0], StringComparer.Ordinal);
        var shapes = new Dictionary<string, MapShape>(StringComparer.Ordinal) { [input] = inputShape };
        var ops = new List<NetworkOp>();
        var initial = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (!node.Output.Any(needed.Contains) || node.Output[0] == input || !node.Input.Any(shapes.ContainsKey))
            {
                continue;
            }

            if (node.OpType == "BatchNormalization" && ops.OfType<ConvOp>().Any(c => c.Conv.Output == node.Output[0]))
            {
                continue;
            }

            var missing = node.Input.FirstOrDefault(i => !shapes.ContainsKey(i) && !initializers.ContainsKey(i));
            if (missing is not null)
            {
                throw new InvalidOperationException(
                    $"{node.OpType} '{node.Name}' also reads '{missing}', which lies below the frozen activation '{input}'; train more stages or drop that tap");
            }

            var first = shapes[node.Input[0]];
            switch (node.OpType)
            {
                case "Conv":
                    var conv = ReadConv(node, first, initializers, batchNorms.GetValueOrDefault(node.Output[0]), initial);
                    shapes[conv.Output] = conv.OutputShape;
                    ops.Add(new ConvOp(conv));
                    break;
                case "Relu":
                    shapes[node.Output[0]] = first;
                    ops.Add(new ReluOp(node.Input[0], node.Output[0]));
                    break;
                case "Add" when node.Input.Count == 2 && shapes.TryGetValue(node.Input[1], out var second) && second == first:
                    shapes[node.Output[0]] = first;
                    ops.Add(new AddOp(node.Input[0], node.Input[1], node.Output[0]));
                    break;
                default:
                    throw new NotSupportedException($"{node.OpType} '{node.Name}': fine-tuning supports only Conv, Relu and Add between the frozen part and the taps");
            }
        }

        var unreachable = outputs.FirstOrDefault(o => !shapes.ContainsKey(o));
        if (unreachable is not null)
        {
            throw new InvalidOperationException($"'{unreachable}' does not follow from the frozen activation '{input}'");
        }

        return new TrainableNetwork(input, ops, shapes, initial);
    }

    /// <summary>The weight of <paramref name="conv"/> as the training graphs hold it: [taps * C, K], row = tap * C + c, tap = dy * kw + dx.</summary>
    public static float[] ToWeightMatrix(ConvLayer conv, ReadOnlySpan<float> onnxWeight)
    {
        int c = conv.InputShape.Channels, k = conv.OutputShape.Channels, taps = conv.Taps;
        var matrix = new float[taps * c * k];
        for (var kk = 0; kk < k; kk++)
        {
            for (var cc = 0; cc < c; cc++)
            {
                for (var t = 0; t < taps; t++)
                {
                    matrix[((t * c) + cc) * k + kk] = onnxWeight[((kk * c) + cc) * taps + t];
                }
            }
        }

        return matrix;
    }

    /// <summary>The inverse of <see cref="ToWeightMatrix"/>: back to ONNX's [K, C, kh, kw].</summary>
    public static float[] FromWeightMatrix(ConvLayer conv, ReadOnlySpan<float> matrix)
    {
        int c = conv.InputShape.Channels, k = conv.OutputShape.Channels, taps = conv.Taps;
        var weight = new float[taps * c * k];
        for (var kk = 0; kk < k; kk++)
        {
            for (var cc = 0; cc < c; cc++)
            {
                for (var t = 0; t < taps; t++)
                {
                    weight[((kk * c) + cc) * taps + t] = matrix[((t * c) + cc) * k + kk];
                }
            }
        }

        return weight;
    }

    private static ConvLayer ReadConv(NodeProto node, MapShape input, Dictionary<string, TensorProto> initializers, NodeProto? batchNorm,
        Dictionary<string, float[]> initial)
    {
        long[] Ints(string name, params long[] fallback) =>
            node.Attribute.FirstOrDefault(a => a.Name == name) is { } attribute ? [.. attribute.Ints] : fallback;

        var weight = initializers[node.Input[1]];
        var autoPad = node.Attribute.FirstOrDefault(a => a.Name == "auto_pad")?.S.ToStringUtf8() ?? "NOTSET";
        var group = node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1;
        var strides = Ints("strides", 1, 1);
        var pads = Ints("pads", 0, 0, 0, 0);
        if (autoPad != "NOTSET" || group != 1 || Ints("dilations", 1, 1).Any(d => d != 1) || strides[0] != strides[1]
            || weight.Dims.Count != 4 || weight.Dims[1] != input.Channels)
        {
            throw new NotSupportedException($"Conv '{node.Name}': only ungrouped, undilated 2-D convolutions with explicit pads and equal strides are supported");
        }

        var channels = (int)weight.Dims[0];
        var bias = node.Input.Count > 2 ? FloatValues(initializers[node.Input[2]]) : new float[channels];
        float[]? scale = null;
        var biasName = node.Input.Count > 2 ? node.Input[2] : node.Input[1] + "_bias";
        if (batchNorm is not null)
        {
            // y = gamma * (conv - mean) / sqrt(var + eps) + beta = scale * conv(x, W) + (beta + (b - mean) * scale)
            var epsilon = batchNorm.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
            var gamma = FloatValues(initializers[batchNorm.Input[1]]);
            var beta = FloatValues(initializers[batchNorm.Input[2]]);
            var mean = FloatValues(initializers[batchNorm.Input[3]]);
            var variance = FloatValues(initializers[batchNorm.Input[4]]);
            scale = [.. Enumerable.Range(0, channels).Select(k => gamma[k] / MathF.Sqrt(variance[k] + epsilon))];
            bias = [.. Enumerable.Range(0, channels).Select(k => beta[k] + ((bias[k] - mean[k]) * scale[k]))];
            biasName = node.Input[1] + "_folded_bias";
        }

        int kernelHeight = (int)weight.Dims[2], kernelWidth = (int)weight.Dims[3], stride = (int)strides[0];
        int top = (int)pads[0], left = (int)pads[1], bottom = (int)pads[2], right = (int)pads[3];
        var output = new MapShape(
            ((input.Height + top + bottom - kernelHeight) / stride) + 1,
            ((input.Width + left + right - kernelWidth) / stride) + 1,
            channels);
        var conv = new ConvLayer(node.Input[0], batchNorm?.Output[0] ?? node.Output[0], node.Input[1], biasName, scale, input, output,
            kernelHeight, kernelWidth, stride, top, left, bottom, right);
        initial[conv.WeightName] = ToWeightMatrix(conv, FloatValues(weight));
        initial[conv.BiasName] = bias;
        return conv;
    }
}
