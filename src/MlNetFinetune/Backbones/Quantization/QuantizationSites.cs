using Onnx;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>
/// Which tensors of a prepared (batch norms folded, opset 13) backbone graph carry uint8 activations, chosen so that
/// ONNX Runtime fuses every convolution and residual addition into its integer kernels:
/// <list type="bullet">
/// <item>the activation inputs of every Conv, residual Add and MaxPool;</item>
/// <item>the output of every Conv and Add, or, when its one consumer is a Relu, the Relu's output (ONNX Runtime then
/// drops the Relu: a quantize with zero point 0 already clips at zero, and the Conv fuses with the quantize);</item>
/// <item>the output of every MaxPool, with its input's scale and zero point (ONNX Runtime then runs the MaxPool on the
/// uint8 values directly).</item>
/// </list>
/// Everything else (the pixel preprocessing, the pooled taps, the feature output) stays float.
/// </summary>
internal sealed class QuantizationSites
{
    private QuantizationSites(IReadOnlyList<string> calibrated, IReadOnlyDictionary<string, string> sharedWith)
    {
        Calibrated = calibrated;
        SharedWith = sharedWith;
    }

    /// <summary>Quantized tensors whose range is measured on calibration images, in graph order.</summary>
    public IReadOnlyList<string> Calibrated { get; }

    /// <summary>Quantized tensors that take another's parameters (a MaxPool's output takes its input's).</summary>
    public IReadOnlyDictionary<string, string> SharedWith { get; }

    /// <summary>Every quantized tensor.</summary>
    public IEnumerable<string> All => Calibrated.Concat(SharedWith.Keys);

    public static QuantizationSites Find(GraphProto graph)
    {
        var constants = graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var consumers = graph.Node.SelectMany(n => n.Input.Select(i => (i, n))).ToLookup(p => p.i, p => p.n, StringComparer.Ordinal);
        var calibrated = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var shared = new Dictionary<string, string>(StringComparer.Ordinal);

        void Calibrate(string tensor)
        {
            if (!constants.Contains(tensor) && !shared.ContainsKey(tensor) && seen.Add(tensor))
            {
                calibrated.Add(tensor);
            }
        }

        foreach (var node in graph.Node)
        {
            switch (node.OpType)
            {
                case "Conv":
                    Calibrate(node.Input[0]);
                    Calibrate(OutputSite(node, consumers));
                    break;
                case "Add" when node.Input.All(i => !constants.Contains(i)):
                    Calibrate(node.Input[0]);
                    Calibrate(node.Input[1]);
                    Calibrate(OutputSite(node, consumers));
                    break;
                case "MaxPool":
                    Calibrate(node.Input[0]);
                    shared[node.Output[0]] = shared.GetValueOrDefault(node.Input[0], node.Input[0]);
                    break;
            }
        }

        // A tensor met first as an input and then found to be a MaxPool's output keeps the shared parameters only.
        calibrated.RemoveAll(shared.ContainsKey);
        return new QuantizationSites(calibrated, shared);
    }

    private static string OutputSite(NodeProto node, ILookup<string, NodeProto> consumers)
    {
        var readers = consumers[node.Output[0]].ToList();
        return readers is [{ OpType: "Relu" } relu] ? relu.Output[0] : node.Output[0];
    }
}
