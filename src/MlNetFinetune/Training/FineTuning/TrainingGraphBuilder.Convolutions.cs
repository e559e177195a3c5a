using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Training.FineTuning;

/// <summary>The convolutions of the training graphs: im2col by Gather tables, products, and their gradients.</summary>
internal sealed partial class TrainingGraphBuilder
{
    /// <summary>The column matrix [N*Ho*Wo, taps*C] of <paramref name="conv"/>'s input, kept for its weight gradient.</summary>
    private string Columns(ConvLayer conv, string input)
    {
        if (conv.IsPointwise)
        {
            _columns[conv.Output] = input;
            return input;
        }

        var shape = conv.InputShape;
        var table = ConvIndexTables.Forward(conv);
        var rows = Op("Reshape", [input, Shape(-1, shape.Positions, shape.Channels)]);
        if (ConvIndexTables.ReadsZeroRow(table, shape.Positions))
        {
            rows = Op("Pad", [rows, Constant([0, 0, 0, 0, 1, 0])]);
        }

        var gathered = Op("Gather", [rows, Constant(table, [table.Length])], IntAttribute("axis", 1));
        var columns = Op("Reshape", [gathered, Shape(-1, conv.WeightRows)]);
        _columns[conv.Output] = columns;
        return columns;
    }

    /// <summary>
    /// d loss / d input of a convolution: the output gradient gathered with the transposed table, times the
    /// tap-transposed weights; for strided convolutions one such product per parity class of input positions.
    /// </summary>
    private string InputGradient(ConvLayer conv, string outputGradient)
    {
        int c = conv.InputShape.Channels, k = conv.OutputShape.Channels;
        if (conv.IsPointwise)
        {
            return Op("Gemm", [outputGradient, conv.WeightName], IntAttribute("transB", 1));
        }

        var table = ConvIndexTables.Backward(conv);
        var rows = Op("Reshape", [outputGradient, Shape(-1, conv.OutputShape.Positions, k)]);
        if (ConvIndexTables.ReadsZeroRow(table, conv.OutputShape.Positions))
        {
            rows = Op("Pad", [rows, Constant([0, 0, 0, 0, 1, 0])]);
        }

        var tapMajor = Op("Transpose", [Op("Reshape", [conv.WeightName, Shape(conv.Taps, c, k)])], IntsAttribute("perm", 0, 2, 1));
        if (conv.Stride > 1 && ConvIndexTables.ParityClasses(conv) is { } classes)
        {
            var parts = new List<string>();
            var order = new List<long>();
            foreach (var (positions, taps, classTable) in classes)
            {
                var classRows = Op("Gather", [rows, Constant(classTable, [classTable.Length])], IntAttribute("axis", 1));
                var classWeights = Op("Reshape", [Op("Gather", [tapMajor, Constant(taps, [taps.Length])], IntAttribute("axis", 0)), Shape(taps.Length * k, c)]);
                var product = Op("MatMul", [Op("Reshape", [classRows, Shape(-1, taps.Length * k)]), classWeights]);
                parts.Add(Op("Reshape", [product, Shape(-1, positions.Length, c)]));
                order.AddRange(positions);
            }

            // Back from class order to position order.
            var inverse = new long[order.Count];
            for (var i = 0; i < order.Count; i++)
            {
                inverse[order[i]] = i;
            }

            var joined = Op("Concat", parts, IntAttribute("axis", 1));
            return Op("Reshape", [Op("Gather", [joined, Constant(inverse, [inverse.Length])], IntAttribute("axis", 1)), Shape(-1, c)]);
        }

        var gathered = Op("Gather", [rows, Constant(table, [table.Length])], IntAttribute("axis", 1));
        var columns = Op("Reshape", [gathered, Shape(-1, conv.Taps * k)]);
        return Op("MatMul", [columns, Op("Reshape", [tapMajor, Shape(conv.Taps * k, c)])]);
    }

    /// <summary>inputᵀ · output gradient, plus weight decay times the weight, in one Gemm (its C term).</summary>
    private string WeightGradient(string input, string outputGradient, string weight, float weightDecay) => weightDecay == 0
        ? Op("Gemm", [input, outputGradient], IntAttribute("transA", 1))
        : Op("Gemm", [input, outputGradient, weight], IntAttribute("transA", 1), FloatAttribute("beta", weightDecay));

    /// <summary>Biases (and the batch norms' shifts they stand for) take no weight decay, as is usual.</summary>
    private string BiasGradient(string outputGradient) => Op("ReduceSum", [outputGradient, Constant([0])], IntAttribute("keepdims", 0));

    /// <summary>
    /// columns · W, times the frozen batch norm's scale when there is one, plus the shift; the unscaled product's
    /// gradient is the output gradient times the scale.
    /// </summary>
    private string Convolution(ConvLayer conv, string input)
    {
        var columns = Columns(conv, input);
        if (conv.Scale is null)
        {
            return Op("Gemm", [columns, conv.WeightName, conv.BiasName]);
        }

        var scale = Name();
        AddConstant(_graph, FloatTensor(scale, [conv.Scale.Length], conv.Scale));
        _scales[conv.Output] = scale;
        return Op("Add", [Op("Mul", [Op("MatMul", [columns, conv.WeightName]), scale]), conv.BiasName]);
    }
}
