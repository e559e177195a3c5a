using MlNetFinetune.Backbones;
using MlNetFinetune.Training.FineTuning;
using Onnx;

namespace MlNetFinetune.Tests.FineTuning;

/// <summary>
/// A small random residual conv net as an ONNX graph (NCHW Conv with bias, some followed by a frozen
/// BatchNormalization, Relu, Add), cut and trained by the same
/// code as the backbone: a first conv, then a residual block whose stride-2 conv is padded 1 top/left and 0
/// bottom/right (the backbone's) next to a 1x1 stride-2 projection, both passing gradients back to the first conv,
/// then a conv with lopsided pads (2 top, 1 left, 0 bottom, 1 right). The head reads a 2x2 grid of the
/// block output, the global pool of the last map and a 2x2 grid of the (frozen) input.
/// </summary>
internal static class SmallNetwork
{
    public const int Classes = 3;

    public static readonly MapShape InputShape = new(8, 8, 3);

    public static (TrainableNetwork Network, IReadOnlyList<HeadTap> Taps, Dictionary<string, float[]> Weights) Create(int seed)
    {
        var (network, taps, weights, _) = CreateWithGraph(seed);
        return (network, taps, weights);
    }

    public static (TrainableNetwork Network, IReadOnlyList<HeadTap> Taps, Dictionary<string, float[]> Weights, GraphProto Graph) CreateWithGraph(int seed)
    {
        var random = new Random(seed);
        var graph = new GraphProto();
        float[] Uniform(int count, double low, double high) => [.. Enumerable.Range(0, count).Select(_ => (float)(low + (random.NextDouble() * (high - low))))];
        void Conv(string input, string output, string weight, int inChannels, int outChannels, int kernel, int stride, bool batchNorm, params long[] pads)
        {
            var fanIn = inChannels * kernel * kernel;
            graph.Initializer.Add(OnnxGraph.FloatTensor(weight, [outChannels, inChannels, kernel, kernel], Uniform(outChannels * fanIn, -1.5 / Math.Sqrt(fanIn), 1.5 / Math.Sqrt(fanIn))));
            graph.Initializer.Add(OnnxGraph.FloatTensor(weight + "_b", [outChannels], Uniform(outChannels, -0.06, 0.14)));
            var convOutput = batchNorm ? output + "_raw" : output;
            graph.Node.Add(OnnxGraph.Node("Conv", [input, weight, weight + "_b"], [convOutput],
                OnnxGraph.IntsAttribute("kernel_shape", kernel, kernel), OnnxGraph.IntsAttribute("strides", stride, stride), OnnxGraph.IntsAttribute("pads", pads)));
            if (batchNorm)
            {
                // A frozen batch norm whose scales span what the backbone has (0.08 to 15): trained as a fixed scale and a trained shift.
                string[] names = [weight + "_gamma", weight + "_beta", weight + "_mean", weight + "_var"];
                graph.Initializer.Add(OnnxGraph.FloatTensor(names[0], [outChannels], Uniform(outChannels, 0.3, 3)));
                graph.Initializer.Add(OnnxGraph.FloatTensor(names[1], [outChannels], Uniform(outChannels, -0.2, 0.3)));
                graph.Initializer.Add(OnnxGraph.FloatTensor(names[2], [outChannels], Uniform(outChannels, -0.2, 0.2)));
                graph.Initializer.Add(OnnxGraph.FloatTensor(names[3], [outChannels], Uniform(outChannels, 0.5, 2)));
                graph.Node.Add(OnnxGraph.Node("BatchNormalization", [convOutput, .. names], [output], OnnxGraph.FloatAttribute("epsilon", 1e-5f)));
            }
        }

        Conv("x", "s", "ws", 3, 4, 3, 1, false, 1, 1, 1, 1);
        graph.Node.Add(OnnxGraph.Node("Relu", ["s"], ["stem"]));
        Conv("stem", "a", "wa", 4, 4, 3, 2, true, 1, 1, 0, 0);
        graph.Node.Add(OnnxGraph.Node("Relu", ["a"], ["a_relu"]));
        Conv("a_relu", "b", "wb", 4, 4, 3, 1, true, 1, 1, 1, 1);
        Conv("stem", "p", "wp", 4, 4, 1, 2, false, 0, 0, 0, 0);
        graph.Node.Add(OnnxGraph.Node("Add", ["b", "p"], ["sum"]));
        graph.Node.Add(OnnxGraph.Node("Relu", ["sum"], ["block"]));
        Conv("block", "c", "wc", 4, 5, 3, 1, true, 2, 1, 0, 1);
        graph.Node.Add(OnnxGraph.Node("Relu", ["c"], ["top"]));

        var network = TrainableNetwork.Extract(graph, "x", InputShape, ["block", "top"]);
        HeadTap[] taps = [new("block", 2, network.Shapes["block"]), new("top", 1, network.Shapes["top"]), new("x", 2, InputShape)];
        var weights = network.Initial.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

        var features = taps.Sum(t => t.Size);
        weights[TrainingGraphBuilder.HeadWeight] = [.. Enumerable.Range(0, features * Classes).Select(_ => (float)((random.NextDouble() * 2) - 1) * 0.5f)];
        weights[TrainingGraphBuilder.HeadBias] = [.. Enumerable.Range(0, Classes).Select(_ => (float)(random.NextDouble() - 0.5) * 0.1f)];
        return (network, taps, weights, graph);
    }

    /// <summary>Random non-negative maps (post-ReLU-like) and labels.</summary>
    public static (float[] Maps, long[] Labels) Batch(int images, int seed)
    {
        var random = new Random(seed);
        var maps = Enumerable.Range(0, images * InputShape.Size).Select(_ => (float)Math.Max(0, random.NextDouble() * 2 - 0.5)).ToArray();
        var labels = Enumerable.Range(0, images).Select(i => (long)(i % Classes)).ToArray();
        return (maps, labels);
    }
}
