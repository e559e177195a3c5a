using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace MlNetFinetune.Backbones;

/// <summary>An activation pooled into part of the feature vector.</summary>
/// <param name="Tensor">The activation: [N,C,H,W] (pooled) or [N,C] (taken as it is, <paramref name="Side"/> 0).</param>
/// <param name="Channels">C.</param>
/// <param name="Side">H (= W) of a map; 0 for a vector.</param>
/// <param name="Grid">1 for global average pooling; K pools each cell of a KxK grid separately.</param>
/// <param name="Name">Prefix for the nodes added.</param>
internal sealed record PooledTap(string Tensor, int Channels, int Side, int Grid, string Name)
{
    /// <summary>Values this tap adds to the feature vector.</summary>
    public int Size => Channels * Grid * Grid;
}

/// <summary>
/// Small builders for ONNX protobuf objects, shared by every graph rewrite (backbone, batch-norm folding, training
/// graphs, quantization, export) so that each reads as the graph it builds.
/// </summary>
internal static class OnnxGraph
{
    public const int FloatType = (int)TensorProto.Types.DataType.Float;
    public const int Int64Type = (int)TensorProto.Types.DataType.Int64;
    public const int Int32Type = (int)TensorProto.Types.DataType.Int32;
    public const int Int8Type = (int)TensorProto.Types.DataType.Int8;
    public const int Uint8Type = (int)TensorProto.Types.DataType.Uint8;

    /// <summary>A node named after its op and outputs, which keeps names unique as long as output names are.</summary>
    public static NodeProto Node(string opType, IEnumerable<string> inputs, IEnumerable<string> outputs, params AttributeProto[] attributes)
    {
        var outputList = outputs.ToList();
        var node = new NodeProto { OpType = opType, Name = $"mlnetfinetune_{opType}_{string.Join('_', outputList)}" };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputList);
        node.Attribute.AddRange(attributes);
        return node;
    }

    public static AttributeProto IntAttribute(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto FloatAttribute(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto IntsAttribute(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    public static TensorProto FloatTensor(string name, long[] dims, ReadOnlySpan<float> values)
    {
        var tensor = new TensorProto { Name = name, DataType = FloatType };
        tensor.Dims.AddRange(dims);
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
        return tensor;
    }

    public static TensorProto Int64Tensor(string name, long[] dims, ReadOnlySpan<long> values)
    {
        var tensor = new TensorProto { Name = name, DataType = Int64Type };
        tensor.Dims.AddRange(dims);
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
        return tensor;
    }

    /// <summary>A tensor of any fixed-width element type, stored as raw little-endian bytes.</summary>
    public static TensorProto Tensor<T>(string name, int dataType, long[] dims, ReadOnlySpan<T> values)
        where T : unmanaged
    {
        var tensor = new TensorProto { Name = name, DataType = dataType };
        tensor.Dims.AddRange(dims);
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
        return tensor;
    }

    /// <summary>The values of a float initializer, whichever of its two storage fields holds them.</summary>
    public static float[] FloatValues(TensorProto tensor) => tensor.FloatData.Count > 0
        ? [.. tensor.FloatData]
        : MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();

    public static TensorShapeProto.Types.Dimension Dim(long value) => new() { DimValue = value };

    public static TensorShapeProto.Types.Dimension Dim(string symbol) => new() { DimParam = symbol };

    public static ValueInfoProto TensorValue(string name, int elementType, params TensorShapeProto.Types.Dimension[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.AddRange(dims);
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elementType, Shape = shape } },
        };
    }

    /// <summary>A graph output or value of known element type whose shape is left to the runtime to infer.</summary>
    public static ValueInfoProto TensorValueOfAnyShape(string name, int elementType) => new()
    {
        Name = name,
        Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elementType } },
    };

    /// <summary>
    /// Adds <paramref name="tensor"/> as an initializer only. From IR version 4 on, an initializer that is also a
    /// graph input is a default the caller may override, so ONNX Runtime neither folds it as a constant nor fuses
    /// quantize/dequantize pairs around it; graphs of that IR version add their constants this way.
    /// </summary>
    public static void AddConstant(GraphProto graph, TensorProto tensor) => graph.Initializer.Add(tensor);

    /// <summary>Drops the graph-input entries of initializers (see <see cref="AddConstant"/>), when moving a graph to IR version 4 or later.</summary>
    public static void RemoveInitializerInputs(GraphProto graph)
    {
        var names = graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => names.Contains(i.Name)).ToList())
        {
            graph.Input.Remove(input);
        }
    }

    /// <summary>
    /// Adds <paramref name="tensor"/> as an initializer. Opset-8 graphs (this backbone's) must also list every
    /// initializer as a graph input, so it is listed there too.
    /// </summary>
    public static void AddInitializer(GraphProto graph, TensorProto tensor)
    {
        graph.Initializer.Add(tensor);
        graph.Input.Add(TensorValue(tensor.Name, tensor.DataType, [.. tensor.Dims.Select(Dim)]));
    }

    /// <summary>Replaces the values of the float initializer <paramref name="name"/>, keeping its name and shape.</summary>
    public static void SetFloatValues(GraphProto graph, string name, ReadOnlySpan<float> values)
    {
        var tensor = graph.Initializer.Single(t => t.Name == name);
        if (tensor.Dims.Aggregate(1L, (a, b) => a * b) != values.Length)
        {
            throw new ArgumentException($"{name}: {values.Length} values for a tensor of shape [{string.Join(',', tensor.Dims)}]");
        }

        tensor.FloatData.Clear();
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
    }

    /// <summary>A 1-D int64 constant (shapes, axes, pads), added to <paramref name="graph"/> under <paramref name="name"/>.</summary>
    public static string Int64Constant(GraphProto graph, string name, params long[] values)
    {
        AddConstant(graph, Int64Tensor(name, [values.Length], values));
        return name;
    }

    /// <summary>A float constant of shape [] (a scalar), added to <paramref name="graph"/> under <paramref name="name"/>.</summary>
    public static string ScalarConstant(GraphProto graph, string name, float value)
    {
        AddConstant(graph, FloatTensor(name, [], [value]));
        return name;
    }

    /// <summary>The batch dimension: fixed when <paramref name="batchSize"/> is given, else the symbol "batch".</summary>
    public static TensorShapeProto.Types.Dimension BatchDim(int? batchSize) => batchSize is int fixedBatch ? Dim(fixedBatch) : Dim("batch");

    /// <summary>
    /// Pools each tap, concatenates them into the graph's only output <c>Features</c>: [batch, F] for a dynamic batch
    /// (bulk featurization), or the [F] vector ML.NET's ONNX transform binds to for batch 1.
    /// </summary>
    public static void AddPooledFeatures(GraphProto graph, IEnumerable<PooledTap> taps, int? batchSize)
    {
        var pooled = new List<string>();
        var featureSize = 0;
        foreach (var tap in taps)
        {
            featureSize += tap.Size;
            if (tap.Side == 0)
            {
                pooled.Add(tap.Tensor);
                continue;
            }

            if (tap.Grid == 1)
            {
                graph.Node.Add(Node("GlobalAveragePool", [tap.Tensor], [tap.Name + "_pool"]));
            }
            else
            {
                var kernel = tap.Side / tap.Grid;
                graph.Node.Add(Node("AveragePool", [tap.Tensor], [tap.Name + "_pool"],
                    IntsAttribute("kernel_shape", kernel, kernel), IntsAttribute("strides", kernel, kernel)));
            }

            graph.Node.Add(Node("Flatten", [tap.Name + "_pool"], [tap.Name], IntAttribute("axis", 1)));
            pooled.Add(tap.Name);
        }

        graph.Output.Clear();
        if (batchSize is null)
        {
            graph.Node.Add(Node("Concat", pooled, [Pipeline.ColumnNames.Features], IntAttribute("axis", 1)));
            graph.Output.Add(TensorValue(Pipeline.ColumnNames.Features, FloatType, BatchDim(null), Dim(featureSize)));
        }
        else
        {
            graph.Node.Add(Node("Concat", pooled, ["mlnetfinetune_concat"], IntAttribute("axis", 1)));
            var shape = Int64Tensor("mlnetfinetune_shape", [1], [-1]);
            AddInitializer(graph, shape);
            graph.Node.Add(Node("Reshape", ["mlnetfinetune_concat", shape.Name], [Pipeline.ColumnNames.Features]));
            graph.Output.Add(TensorValue(Pipeline.ColumnNames.Features, FloatType, Dim(batchSize.Value * featureSize)));
        }
    }

    /// <summary>Removes nodes no output depends on, then initializers (and their input entries) no node reads.</summary>
    public static void PruneUnused(GraphProto graph)
    {
        var needed = new HashSet<string>(graph.Output.Select(o => o.Name), StringComparer.Ordinal);
        var kept = new List<NodeProto>();
        foreach (var node in graph.Node.Reverse())
        {
            if (node.Output.Any(needed.Contains))
            {
                kept.Add(node);
                needed.UnionWith(node.Input);
            }
        }

        kept.Reverse();
        graph.Node.Clear();
        graph.Node.AddRange(kept);
        var unused = graph.Initializer.Where(i => !needed.Contains(i.Name)).Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var initializer in graph.Initializer.Where(i => unused.Contains(i.Name)).ToList())
        {
            graph.Initializer.Remove(initializer);
        }

        foreach (var input in graph.Input.Where(i => unused.Contains(i.Name)).ToList())
        {
            graph.Input.Remove(input);
        }
    }
}
