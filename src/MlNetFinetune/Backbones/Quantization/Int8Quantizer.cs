using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Onnx;

namespace MlNetFinetune.Backbones.Quantization;

/// <summary>
/// Static int8 quantization of a backbone feature graph (input <c>Pixels</c>, output <c>Features</c>, as
/// <see cref="ResNet18Backbone.BuildGraph(int?)"/> writes it, for either batch form) by the project's own graph rewriting:
/// batch norms folded, Conv weights per-channel symmetric int8, activations per-tensor uint8 with ranges calibrated
/// on the user's images, in the QDQ form that ONNX Runtime fuses into QLinearConv and QLinearAdd. Calibrate once on
/// the dynamic-batch graph, then quantize both the dynamic-batch and the batch-1 graph with the same ranges.
/// </summary>
public static class Int8Quantizer
{
    /// <summary>Lowest ONNX opset of the quantized graph: 13 is the first with per-channel DequantizeLinear (its axis attribute).</summary>
    public const int Opset = 13;

    /// <summary>Bumped whenever the rewrite changes what the quantized graph computes; part of the fingerprint.</summary>
    public const int RewriteVersion = 1;

    private static readonly HashSet<string> s_supportedOps = new(StringComparer.Ordinal)
    {
        "Conv", "Relu", "Add", "Sub", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Concat", "Reshape", "Split",
    };

    /// <summary>Measures the range of every quantized activation of <paramref name="featureGraph"/> on <paramref name="calibrationPixels"/>
    /// (planar RGB 0..255 images of side <paramref name="imageSize"/>, as the featurizer feeds them).</summary>
    public static ActivationRanges Calibrate(byte[] featureGraph, int imageSize, IReadOnlyList<float[]> calibrationPixels, QuantizationOptions options)
    {
        options.Validate();
        return ActivationCalibrator.Calibrate(Prepare(featureGraph), imageSize, calibrationPixels, options);
    }

    /// <summary>The QDQ int8 form of <paramref name="featureGraph"/>, with the ranges measured by <see cref="Calibrate"/>.</summary>
    public static byte[] Quantize(byte[] featureGraph, ActivationRanges ranges)
    {
        var model = Prepare(featureGraph);
        QdqRewriter.Rewrite(model.Graph, ranges);
        return model.ToByteArray();
    }

    /// <summary>
    /// Identifies int8 features, for the bottleneck cache and the manifest: the float backbone's fingerprint, the
    /// rewrite's version and the calibrated ranges, which together fix the quantized graph (whatever options led to them).
    /// </summary>
    public static string Fingerprint(string floatFingerprint, ActivationRanges ranges)
    {
        var text = Encoding.UTF8.GetBytes($"{floatFingerprint};int8;rewrite={RewriteVersion};ranges={ranges.Fingerprint()}");
        return Convert.ToHexStringLower(SHA256.HashData(text))[..16];
    }

    /// <summary>
    /// The float graph in the form both calibration and the rewrite work on: batch norms folded, opset 13 or later and
    /// IR version 7 or later (initializers no longer listed as inputs, so that ONNX Runtime treats them as constants).
    /// </summary>
    internal static ModelProto Prepare(byte[] featureGraph)
    {
        var model = ModelProto.Parser.ParseFrom(featureGraph);
        var graph = model.Graph;
        BatchNormFolding.Fold(graph);
        var unsupported = graph.Node.Select(n => n.OpType).Where(op => !s_supportedOps.Contains(op)).Distinct().ToList();
        if (unsupported.Count > 0)
        {
            throw new NotSupportedException($"int8 quantization does not handle the backbone graph's op(s) {string.Join(", ", unsupported)}");
        }

        var fromOpset = model.OpsetImport.Where(o => o.Domain.Length == 0).Select(o => o.Version).DefaultIfEmpty(1).Single();

        // Split's sizes moved from an attribute to an input in opset 13; the other ops here read the same from 8 to 13.
        foreach (var split in graph.Node.Where(n => n.OpType == "Split"))
        {
            var sizes = split.Attribute.FirstOrDefault(a => a.Name == "split");
            if (sizes is not null)
            {
                split.Attribute.Remove(sizes);
                var name = split.Output[0] + "_sizes";
                OnnxGraph.AddConstant(graph, OnnxGraph.Int64Tensor(name, [sizes.Ints.Count], [.. sizes.Ints]));
                split.Input.Add(name);
            }
        }

        model.OpsetImport.Clear();
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = string.Empty, Version = Math.Max(fromOpset, Opset) });
        model.IrVersion = Math.Max(model.IrVersion, 7);
        graph.ValueInfo.Clear();
        OnnxGraph.RemoveInitializerInputs(graph);
        return model;
    }
}
