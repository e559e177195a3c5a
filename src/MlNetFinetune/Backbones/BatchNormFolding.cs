using Onnx;

namespace MlNetFinetune.Backbones;

/// <summary>
/// Folds every inference-mode BatchNormalization that directly follows a Conv into that Conv's weights and bias:
/// y = scale * (conv(x, W) - mean) / sqrt(var + eps) + B  =  conv(x, W * s) + (B - mean * s), s = scale / sqrt(var + eps),
/// per output channel. The folded Conv takes the BatchNormalization's output name, so downstream names (the stage-end
/// taps) stay valid. Fine-tuning trains the folded network (batch norm frozen as an affine map, as is usual with small
/// batches) and int8 quantization quantizes it; both need it in this form.
/// </summary>
internal static class BatchNormFolding
{
    /// <summary>Folds in place; returns how many BatchNormalization nodes were folded.</summary>
    public static int Fold(GraphProto graph)
    {
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var consumers = graph.Node.SelectMany(n => n.Input).GroupBy(i => i, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var producers = graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(p => p.o, p => p.n, StringComparer.Ordinal);
        var folded = 0;
        foreach (var batchNorm in graph.Node.Where(n => n.OpType == "BatchNormalization").ToList())
        {
            if (!producers.TryGetValue(batchNorm.Input[0], out var conv) || conv.OpType != "Conv"
                || consumers.GetValueOrDefault(conv.Output[0]) != 1
                || batchNorm.Input.Skip(1).Any(i => !initializers.ContainsKey(i))
                || !initializers.ContainsKey(conv.Input[1]))
            {
                continue;
            }

            var epsilon = batchNorm.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
            var scale = OnnxGraph.FloatValues(initializers[batchNorm.Input[1]]);
            var shift = OnnxGraph.FloatValues(initializers[batchNorm.Input[2]]);
            var mean = OnnxGraph.FloatValues(initializers[batchNorm.Input[3]]);
            var variance = OnnxGraph.FloatValues(initializers[batchNorm.Input[4]]);
            var weightTensor = initializers[conv.Input[1]];
            var weights = OnnxGraph.FloatValues(weightTensor);
            var outputChannels = (int)weightTensor.Dims[0];
            var perChannel = weights.Length / outputChannels;
            var bias = conv.Input.Count > 2 ? OnnxGraph.FloatValues(initializers[conv.Input[2]]) : new float[outputChannels];
            var newBias = new float[outputChannels];
            for (var k = 0; k < outputChannels; k++)
            {
                var s = scale[k] / MathF.Sqrt(variance[k] + epsilon);
                for (var i = 0; i < perChannel; i++)
                {
                    weights[k * perChannel + i] *= s;
                }

                newBias[k] = shift[k] + (bias[k] - mean[k]) * s;
            }

            var weightName = conv.Input[1] + "_folded";
            var biasName = conv.Input[1] + "_folded_bias";
            OnnxGraph.AddInitializer(graph, OnnxGraph.FloatTensor(weightName, [.. weightTensor.Dims], weights));
            OnnxGraph.AddInitializer(graph, OnnxGraph.FloatTensor(biasName, [outputChannels], newBias));
            var data = conv.Input[0];
            conv.Input.Clear();
            conv.Input.Add(data);
            conv.Input.Add(weightName);
            conv.Input.Add(biasName);
            conv.Output[0] = batchNorm.Output[0];
            graph.Node.Remove(batchNorm);
            folded++;
        }

        OnnxGraph.PruneUnused(graph);
        return folded;
    }
}
