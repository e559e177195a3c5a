using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>
/// Writes the QDQ form of a prepared backbone graph: after each quantized activation's producer a QuantizeLinear to
/// uint8, before each of its consumers a DequantizeLinear of its own (a dequantize shared by a Conv and a residual Add
/// is a pattern ONNX Runtime leaves unfused); Conv weights as per-output-channel symmetric int8 and biases as int32
/// at the input scale times each channel's weight scale, each behind a DequantizeLinear. ONNX Runtime's optimizer
/// turns DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv and the residual Add into QLinearAdd.
/// </summary>
internal static class QdqRewriter
{
    private const string QuantizedSuffix = "_quantized";

    public static void Rewrite(GraphProto graph, ActivationRanges ranges)
    {
        var sites = QuantizationSites.Find(graph);
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var parameters = new Dictionary<string, (string Scale, string ZeroPoint, float ScaleValue)>(StringComparer.Ordinal);
        foreach (var tensor in sites.Calibrated)
        {
            var (scale, zeroPoint) = ranges.Uint8Parameters(tensor);
            AddConstant(graph, FloatTensor(tensor + "_scale", [], [scale]));
            AddConstant(graph, Tensor<byte>(tensor + "_zero_point", Uint8Type, [], [zeroPoint]));
            parameters[tensor] = (tensor + "_scale", tensor + "_zero_point", scale);
        }

        foreach (var (tensor, source) in sites.SharedWith)
        {
            parameters[tensor] = parameters[source];
        }

        var nodes = graph.Node.ToList();
        graph.Node.Clear();
        foreach (var input in graph.Input.Where(i => parameters.ContainsKey(i.Name)))
        {
            graph.Node.Add(Quantize(input.Name, parameters[input.Name]));
        }

        var dequantized = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            var input = node.Input.Count > 0 ? node.Input[0] : null;
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (parameters.TryGetValue(node.Input[i], out var p))
                {
                    var name = node.Input[i];
                    var count = dequantized.GetValueOrDefault(name);
                    dequantized[name] = count + 1;
                    var output = $"{name}_dequantized_{count}";
                    graph.Node.Add(Node("DequantizeLinear", [name + QuantizedSuffix, p.Scale, p.ZeroPoint], [output]));
                    node.Input[i] = output;
                }
            }

            if (node.OpType == "Conv")
            {
                if (input is null || !parameters.TryGetValue(input, out var inputParameters))
                {
                    throw new InvalidOperationException($"Conv '{node.Name}' reads an activation that is not quantized");
                }

                QuantizeConstants(graph, node, inputParameters.ScaleValue, initializers);
            }

            graph.Node.Add(node);
            foreach (var output in node.Output.Where(parameters.ContainsKey))
            {
                graph.Node.Add(Quantize(output, parameters[output]));
            }
        }

        PruneUnused(graph);
    }

    private static NodeProto Quantize(string tensor, (string Scale, string ZeroPoint, float ScaleValue) p) =>
        Node("QuantizeLinear", [tensor, p.Scale, p.ZeroPoint], [tensor + QuantizedSuffix]);

    /// <summary>Replaces the Conv's float weight and bias by int8 / int32 constants behind DequantizeLinear nodes.</summary>
    private static void QuantizeConstants(GraphProto graph, NodeProto conv, float inputScale, Dictionary<string, TensorProto> initializers)
    {
        var weightTensor = initializers[conv.Input[1]];
        var weights = FloatValues(weightTensor);
        var channels = (int)weightTensor.Dims[0];
        var perChannel = weights.Length / channels;
        var scales = new float[channels];
        var quantized = new sbyte[weights.Length];
        for (var k = 0; k < channels; k++)
        {
            var channel = weights.AsSpan(k * perChannel, perChannel);
            var largest = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(channel);
            scales[k] = Math.Abs(largest) > 0 ? Math.Abs(largest) / 127f : 1f;
            for (var i = 0; i < perChannel; i++)
            {
                quantized[k * perChannel + i] = (sbyte)Math.Clamp(MathF.Round(channel[i] / scales[k]), -127, 127);
            }
        }

        var prefix = conv.Output[0];
        conv.Input[1] = AddPerChannel(graph, prefix + "_weight", Int8Type, [.. weightTensor.Dims], quantized, scales, new sbyte[channels]);
        if (conv.Input.Count > 2)
        {
            var bias = FloatValues(initializers[conv.Input[2]]);
            var biasScales = new float[channels];
            var biasQuantized = new int[channels];
            for (var k = 0; k < channels; k++)
            {
                biasScales[k] = inputScale * scales[k];
                biasQuantized[k] = (int)Math.Clamp(Math.Round((double)bias[k] / biasScales[k]), int.MinValue, int.MaxValue);
            }

            conv.Input[2] = AddPerChannel(graph, prefix + "_bias", Int32Type, [channels], biasQuantized, biasScales, new int[channels]);
        }
    }

    private static string AddPerChannel<T>(GraphProto graph, string name, int dataType, long[] dims, T[] values, float[] scales, T[] zeroPoints)
        where T : unmanaged
    {
        AddConstant(graph, Tensor<T>(name + QuantizedSuffix, dataType, dims, values));
        AddConstant(graph, FloatTensor(name + "_scale", [scales.Length], scales));
        AddConstant(graph, Tensor<T>(name + "_zero_point", dataType, [zeroPoints.Length], zeroPoints));
        var output = name + "_dequantized";
        graph.Node.Add(Node("DequantizeLinear", [name + QuantizedSuffix, name + "_scale", name + "_zero_point"], [output], IntAttribute("axis", 0)));
        return output;
    }
}
