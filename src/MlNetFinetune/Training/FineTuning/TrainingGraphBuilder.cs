using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>A pooled activation the head reads: grid 1 is global average pooling, grid g pools a g x g grid of cells.</summary>
internal sealed record HeadTap(string Tensor, int Grid, MapShape Shape)
{
    /// <summary>Features it contributes, ordered channel-major then grid row and column, as BuildGraph's NCHW AveragePool + Flatten orders them.</summary>
    public int Size => Shape.Channels * Grid * Grid;
}

/// <summary>What a training graph computes.</summary>
internal enum GraphKind
{
    /// <summary>Forward, backward and the SGD update: inputs features, labels, learning rates, weights, momenta, the head's feature standardisation; outputs loss, new weights, new momenta.</summary>
    TrainStep,

    /// <summary>Forward only: per-image loss, logits and the head's input features.</summary>
    Evaluate,
}

/// <summary>
/// Emits the ONNX graphs that train the part of the network above the cache together with a softmax head, in ops
/// ONNX Runtime runs fast on the CPU (measured, see issue 12): activations NHWC as [N*H*W, C] matrices, each
/// convolution as a Gather with a precomputed im2col table plus a Gemm, its weight gradient as Gemm(transA) and its
/// input gradient as a Gather of the output gradient with the transposed table plus a MatMul. Batch norms are frozen:
/// a fixed per-channel scale after the convolution and a trained shift. The SGD update (PyTorch's: g = grad + wd * w
/// for weights, g = grad for biases and shifts; v = momentum * v + g; w = w - lr * v) runs in the same graph, so a
/// step is one native call.
/// </summary>
internal sealed partial class TrainingGraphBuilder
{
    public const string Features = "features";
    public const string Labels = "labels";
    public const string LearningRate = "learning_rate";
    public const string HeadLearningRate = "head_learning_rate";
    public const string Loss = "loss";
    public const string Correct = "correct";
    public const string ImageLosses = "image_losses";
    public const string Logits = "logits";
    public const string HeadFeatures = "head_features";
    public const string HeadWeight = "head_weight";
    public const string HeadBias = "head_bias";
    public const string FeatureMean = "feature_mean";
    public const string FeatureScale = "feature_scale";

    private readonly TrainableNetwork _network;
    private readonly IReadOnlyList<HeadTap> _taps;
    private readonly int _classes;
    private readonly GraphProto _graph = new() { Name = "mlnetfinetune_training" };
    private readonly Dictionary<string, List<string>> _gradients = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _columns = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _scales = new(StringComparer.Ordinal);
    private int _counter;

    private TrainingGraphBuilder(TrainableNetwork network, IReadOnlyList<HeadTap> taps, int classes)
    {
        _network = network;
        _taps = taps;
        _classes = classes;
    }

    /// <summary>Names of the trained tensors in graph-input order: every convolution's weight matrix and bias, then the head's.</summary>
    public static IReadOnlyList<string> ParameterNames(TrainableNetwork network) =>
        [.. network.Convs.SelectMany(c => new[] { c.WeightName, c.BiasName }), HeadWeight, HeadBias];

    public static string MomentumName(string parameter) => parameter + ".momentum";

    public static string UpdatedName(string parameter) => parameter + ".new";

    /// <summary>
    /// Builds a graph over <paramref name="network"/> with a softmax head on <paramref name="taps"/>.
    /// <paramref name="halfPrecisionInput"/> takes the cached maps as float16 (cast inside the graph).
    /// </summary>
    public static ModelProto Build(TrainableNetwork network, IReadOnlyList<HeadTap> taps, int classes, GraphKind kind,
        bool halfPrecisionInput, float momentum = 0.9f, float weightDecay = 0) =>
        new TrainingGraphBuilder(network, taps, classes).Build(kind, halfPrecisionInput, momentum, weightDecay);

    private int FeatureSize => _taps.Sum(t => t.Size);

    private ModelProto Build(GraphKind kind, bool halfPrecisionInput, float momentum, float weightDecay)
    {
        var input = _network.InputShape;
        _graph.Input.Add(TensorValue(Features, halfPrecisionInput ? (int)TensorProto.Types.DataType.Float16 : FloatType,
            Dim("N"), Dim(input.Height), Dim(input.Width), Dim(input.Channels)));
        _graph.Input.Add(TensorValue(Labels, Int64Type, Dim("N")));
        foreach (var conv in _network.Convs)
        {
            AddParameterInput(conv.WeightName, conv.WeightRows, conv.OutputShape.Channels);
            AddParameterInput(conv.BiasName, conv.OutputShape.Channels);
        }

        AddParameterInput(HeadWeight, FeatureSize, _classes);
        AddParameterInput(HeadBias, _classes);
        AddParameterInput(FeatureMean, FeatureSize);
        AddParameterInput(FeatureScale, FeatureSize);

        var features = halfPrecisionInput ? Op("Cast", [Features], IntAttribute("to", FloatType)) : Features;
        var activations = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [_network.Input] = Op("Reshape", [features, Shape(-1, input.Channels)]),
        };
        foreach (var op in _network.Ops)
        {
            activations[op.Output] = op switch
            {
                ConvOp c => Convolution(c.Conv, activations[c.Conv.Input]),
                ReluOp r => Op("Relu", [activations[r.Input]]),
                AddOp a => Op("Add", [activations[a.Left], activations[a.Right]]),
                _ => throw new NotSupportedException(op.GetType().Name),
            };
        }

        var pooled = _taps.Select(t => Pool(t, activations[t.Tensor])).ToList();
        var head = pooled.Count == 1 ? pooled[0] : Op("Concat", pooled, IntAttribute("axis", 1));

        // The head reads standardised features (a fixed affine map, like the frozen pipeline's normaliser): the raw
        // pooled features share a large mean, which makes plain SGD on the head unstable at any useful rate.
        var standardised = Op("Mul", [Op("Sub", [head, FeatureMean]), FeatureScale]);
        var logits = Op("Gemm", [standardised, HeadWeight, HeadBias]);
        var logProbabilities = Op("LogSoftmax", [logits], IntAttribute("axis", 1));
        var oneHot = Op("OneHot", [Labels, Constant([_classes]), FloatConstant([0, 1])], IntAttribute("axis", -1));
        var imageLosses = Op("Neg", [Op("ReduceSum", [Op("Mul", [logProbabilities, oneHot]), Constant([1])], IntAttribute("keepdims", 0))]);
        if (kind == GraphKind.Evaluate)
        {
            Output(imageLosses, ImageLosses, Dim("N"));
            Output(logits, Logits, Dim("N"), Dim(_classes));
            Output(head, HeadFeatures, Dim("N"), Dim(FeatureSize));
            return Model();
        }

        Output(Op("ReduceMean", [imageLosses], IntAttribute("keepdims", 0)), Loss);

        // Right answers in the batch before the step, for the epoch's training accuracy (ties go to the first class, as in validation).
        var predicted = Op("ArgMax", [logits], IntAttribute("axis", 1), IntAttribute("keepdims", 0));
        Output(Op("ReduceSum", [Op("Cast", [Op("Equal", [predicted, Labels])], IntAttribute("to", FloatType))], IntAttribute("keepdims", 0)), Correct);
        _graph.Input.Add(TensorValue(LearningRate, FloatType));
        _graph.Input.Add(TensorValue(HeadLearningRate, FloatType));

        // Mean loss over the batch: d loss / d logits = (softmax - one-hot) / N.
        var count = Op("Cast", [Op("Shape", [Labels])], IntAttribute("to", FloatType));
        var logitsGradient = Op("Div", [Op("Sub", [Op("Exp", [logProbabilities]), oneHot]), count]);
        var gradients = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [HeadWeight] = WeightGradient(standardised, logitsGradient, HeadWeight, weightDecay),
            [HeadBias] = BiasGradient(logitsGradient),
        };
        var headGradient = Op("Mul", [Op("Gemm", [logitsGradient, HeadWeight], IntAttribute("transB", 1)), FeatureScale]);
        var pieces = _taps.Count == 1
            ? [headGradient]
            : Ops("Split", [headGradient, Constant([.. _taps.Select(t => (long)t.Size)])], _taps.Count, IntAttribute("axis", 1));
        for (var i = 0; i < _taps.Count; i++)
        {
            // A tap on the frozen input itself has no gradient to pass on.
            if (_taps[i].Tensor != _network.Input)
            {
                AddGradient(_taps[i].Tensor, Unpool(_taps[i], pieces[i]));
            }
        }

        foreach (var op in _network.Ops.Reverse())
        {
            if (!_gradients.ContainsKey(op.Output))
            {
                continue;
            }

            var outputGradient = TakeGradient(op.Output);
            switch (op)
            {
                case ConvOp c:
                    var convolutionGradient = c.Conv.Scale is null ? outputGradient : Op("Mul", [outputGradient, _scales[c.Conv.Output]]);
                    gradients[c.Conv.WeightName] = WeightGradient(_columns[c.Conv.Output], convolutionGradient, c.Conv.WeightName, weightDecay);
                    gradients[c.Conv.BiasName] = BiasGradient(outputGradient);
                    if (c.Conv.Input != _network.Input)
                    {
                        AddGradient(c.Conv.Input, InputGradient(c.Conv, convolutionGradient));
                    }

                    break;
                case ReluOp r:
                    AddGradient(r.Input, Op("Mul", [outputGradient, Op("Sign", [activations[r.Output]])]));
                    break;
                case AddOp a:
                    AddGradient(a.Left, outputGradient);
                    AddGradient(a.Right, outputGradient);
                    break;
            }
        }

        var momentumConstant = ScalarConstant(_graph, "mlnetfinetune_momentum", momentum);
        foreach (var parameter in ParameterNames(_network))
        {
            var shape = _graph.Input.Single(i => i.Name == parameter).Type.TensorType.Shape.Dim.ToArray();
            _graph.Input.Add(TensorValue(MomentumName(parameter), FloatType, shape));
            var velocity = Op("Add", [Op("Mul", [MomentumName(parameter), momentumConstant]), gradients[parameter]]);
            var rate = parameter is HeadWeight or HeadBias ? HeadLearningRate : LearningRate;
            var updated = Op("Sub", [parameter, Op("Mul", [velocity, rate])]);
            Output(velocity, UpdatedName(MomentumName(parameter)), shape);
            Output(updated, UpdatedName(parameter), shape);
        }

        return Model();
    }

    private ModelProto Model()
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = "MlNetFinetune", Graph = _graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }

    private void AddParameterInput(string name, params long[] dims) => _graph.Input.Add(TensorValue(name, FloatType, [.. dims.Select(Dim)]));

    private void Output(string value, string name, params TensorShapeProto.Types.Dimension[] dims)
    {
        var last = _graph.Node.Last(n => n.Output.Contains(value));
        last.Output[last.Output.IndexOf(value)] = name;
        foreach (var node in _graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == value)
                {
                    node.Input[i] = name;
                }
            }
        }

        _graph.Output.Add(TensorValue(name, FloatType, dims));
    }

    /// <summary>Average pooling of an NHWC [N*H*W, C] map into the head's feature order (channel, grid row, grid column).</summary>
    private string Pool(HeadTap tap, string map)
    {
        var shape = tap.Shape;
        if (tap.Grid == 1)
        {
            return Op("ReduceMean", [Op("Reshape", [map, Shape(-1, shape.Positions, shape.Channels)])],
                IntsAttribute("axes", 1), IntAttribute("keepdims", 0));
        }

        int g = tap.Grid, kh = shape.Height / g, kw = shape.Width / g;
        var cells = Op("ReduceMean", [Op("Reshape", [map, Shape(-1, g, kh, g, kw, shape.Channels)])],
            IntsAttribute("axes", 2, 4), IntAttribute("keepdims", 0));
        return Op("Reshape", [Op("Transpose", [cells], IntsAttribute("perm", 0, 3, 1, 2)), Shape(-1, tap.Size)]);
    }

    /// <summary>The gradient of <see cref="Pool"/>: each cell's gradient spread evenly over the cell's positions.</summary>
    private string Unpool(HeadTap tap, string gradient)
    {
        var shape = tap.Shape;
        int g = tap.Grid, kh = shape.Height / g, kw = shape.Width / g;
        var scaled = Op("Mul", [gradient, ScalarConstant(_graph, Name(), 1f / (kh * kw))]);
        var cells = g == 1
            ? Op("Reshape", [scaled, Shape(-1, 1, 1, 1, 1, shape.Channels)])
            : Op("Reshape", [Op("Transpose", [Op("Reshape", [scaled, Shape(-1, shape.Channels, g, g)])], IntsAttribute("perm", 0, 2, 3, 1)),
                Shape(-1, g, 1, g, 1, shape.Channels)]);
        var spread = Op("Expand", [cells, Constant([1, 1, kh, 1, kw, 1])]);
        return Op("Reshape", [spread, Shape(-1, shape.Channels)]);
    }

    private void AddGradient(string tensor, string gradient)
    {
        if (!_gradients.TryGetValue(tensor, out var list))
        {
            _gradients[tensor] = list = [];
        }

        list.Add(gradient);
    }

    private string TakeGradient(string tensor)
    {
        var list = _gradients[tensor];
        return list.Count == 1 ? list[0] : Op("Sum", list);
    }

    private string Name() => $"t{_counter++}";

    private string Op(string opType, IEnumerable<string> inputs, params AttributeProto[] attributes)
    {
        var output = Name();
        _graph.Node.Add(Node(opType, inputs, [output], attributes));
        return output;
    }

    private string[] Ops(string opType, IEnumerable<string> inputs, int outputs, params AttributeProto[] attributes)
    {
        var names = Enumerable.Range(0, outputs).Select(_ => Name()).ToArray();
        _graph.Node.Add(Node(opType, inputs, names, attributes));
        return names;
    }

    private string Shape(params long[] dims) => Constant(dims);

    private string Constant(long[] values, long[]? dims = null)
    {
        var name = Name();
        AddConstant(_graph, Int64Tensor(name, dims ?? [values.Length], values));
        return name;
    }

    private string FloatConstant(float[] values)
    {
        var name = Name();
        AddConstant(_graph, FloatTensor(name, [values.Length], values));
        return name;
    }
}
