using System.Collections.Immutable;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;
using Microsoft.ML.Transforms;
using MlNetFinetune.Images;
using MlNetFinetune.Prediction;
using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Export;

/// <summary>What <see cref="OnnxExporter.Export"/> wrote.</summary>
/// <param name="OutputPath">The ONNX file.</param>
/// <param name="ImageSize">Side S of the square input.</param>
/// <param name="Classes">Class names in the order of the probabilities.</param>
/// <param name="Opset">The ONNX operator set (default domain) the graph declares.</param>
/// <param name="Bytes">Size of the file.</param>
public sealed record OnnxExportResult(string OutputPath, int ImageSize, IReadOnlyList<string> Classes, long Opset, long Bytes);

/// <summary>
/// Writes a trained model.zip as one ONNX graph for consumers outside .NET (ML.NET's own ConvertToOnnx stops at the
/// image column: "Unsupported type: MLImage"). The graph is the model's own backbone graph, taken byte for byte from
/// the zip, followed by the head read from the loaded ML.NET transformers: the normalizer's affine map
/// <c>(x - offset) * scale</c>, the softmax regression's weights and biases, and the softmax.
/// <list type="bullet">
/// <item>Input <see cref="InputName"/>: float32 [N, 3, S, S], planar RGB (all red values, then green, then blue), values
/// 0..255, N free. These are the pixels ML.NET's ResizeImages (IsoCrop, centre anchor: scale so the shorter side is S,
/// crop the centre) and ExtractPixels give the model; transparent pixels composited as the manifest's alpha policy says
/// (white for models trained now, black for models of format 1), as in the .NET model.</item>
/// <item>Output <see cref="OutputName"/>: float32 [N, classes], softmax probabilities in the order of the metadata
/// entry <c>classes</c> (a JSON array).</item>
/// </list>
/// The operator set is the backbone's own (8 for the built-in ResNet18); every added operator exists there.
/// </summary>
public static class OnnxExporter
{
    /// <summary>Name of the graph's input tensor.</summary>
    public const string InputName = "pixels";

    /// <summary>Name of the graph's output tensor.</summary>
    public const string OutputName = "probabilities";

    /// <summary>The metadata key holding the class names as a JSON array, in output order.</summary>
    public const string ClassesKey = "classes";

    /// <summary>
    /// IR version 4 lets initializers stay out of the graph's inputs (IR 3, the backbone's, lists every weight as an
    /// input): consumers then see one input, and runtimes may treat the weights as constants.
    /// </summary>
    private const long IrVersion = 4;

    /// <summary>Exports <paramref name="modelPath"/> to <paramref name="outputPath"/>. Throws <see cref="UserInputException"/>
    /// with one line when the model is missing, unreadable, or has a head this export cannot write (LightGBM).</summary>
    public static OnnxExportResult Export(string modelPath, string outputPath)
    {
        if (string.IsNullOrWhiteSpace(outputPath))
        {
            throw new UserInputException("--output: an .onnx file name is needed");
        }

        var model = Build(modelPath, out var manifest);
        var bytes = model.ToByteArray();
        AtomicFile.Write(outputPath, temporary => File.WriteAllBytes(temporary, bytes));
        var opset = model.OpsetImport.Where(o => o.Domain.Length == 0 || o.Domain == "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();
        return new OnnxExportResult(Path.GetFullPath(outputPath), manifest.ImageSize, manifest.Classes, opset, bytes.LongLength);
    }

    /// <summary>The whole exported graph for <paramref name="modelPath"/>, not yet written.</summary>
    internal static ModelProto Build(string modelPath, out ModelManifest manifest)
    {
        manifest = ModelManifest.ReadFrom(modelPath);
        if (manifest.Head == Training.HeadTrainer.LightGbmHead)
        {
            throw new UserInputException(
                $"{modelPath}: the model's head is LightGBM (gradient-boosted trees), which export-onnx does not write; train with --head softmax for an exportable model");
        }

        var head = ReadHead(modelPath, manifest);
        var model = ModelProto.Parser.ParseFrom(ReadBackboneGraph(modelPath));
        var graph = model.Graph;
        var size = manifest.ImageSize;
        var featureSize = head.Scale.Length;
        var classes = manifest.Classes.Count;

        // The chain's backbone graph takes one image [1, 3, S, S] and gives [F]; its network is batch-free (the
        // Trainer runs the same network with a free batch), so the batch becomes a free dimension and [N * F] is
        // reshaped back to [N, F].
        if (graph.Input.Count(i => !graph.Initializer.Any(t => t.Name == i.Name)) != 1 || graph.Output.Count != 1)
        {
            throw new UserInputException($"{modelPath}: the backbone graph inside has not one image input and one feature output");
        }

        var backboneInput = graph.Input.Single(i => !graph.Initializer.Any(t => t.Name == i.Name)).Name;
        var backboneOutput = graph.Output[0].Name;
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == backboneInput)
                {
                    node.Input[i] = InputName;
                }
            }
        }

        graph.Input.Clear();
        graph.Output.Clear();
        graph.ValueInfo.Clear();
        var batch = Dim("N");
        graph.Input.Add(TensorValue(InputName, FloatType, batch, Dim(3), Dim(size), Dim(size)));

        var featureShape = Int64Tensor("mlnetfinetune_export_feature_shape", [2], [-1, featureSize]);
        var weights = FloatTensor("mlnetfinetune_export_weights", [classes, featureSize], head.Weights);
        var biases = FloatTensor("mlnetfinetune_export_biases", [classes], head.Biases);
        var scale = FloatTensor("mlnetfinetune_export_scale", [featureSize], head.Scale);
        graph.Initializer.AddRange([featureShape, weights, biases, scale]);
        graph.Node.Add(Node("Reshape", [backboneOutput, featureShape.Name], ["mlnetfinetune_export_features"]));
        var normalizerInput = "mlnetfinetune_export_features";
        if (head.Offset.Length > 0)
        {
            var offset = FloatTensor("mlnetfinetune_export_offset", [featureSize], head.Offset);
            graph.Initializer.Add(offset);
            graph.Node.Add(Node("Sub", [normalizerInput, offset.Name], ["mlnetfinetune_export_centred"]));
            normalizerInput = "mlnetfinetune_export_centred";
        }

        graph.Node.Add(Node("Mul", [normalizerInput, scale.Name], ["mlnetfinetune_export_normalized"]));
        graph.Node.Add(Node("Gemm", ["mlnetfinetune_export_normalized", weights.Name, biases.Name], ["mlnetfinetune_export_logits"], IntAttribute("transB", 1)));
        graph.Node.Add(Node("Softmax", ["mlnetfinetune_export_logits"], [OutputName], IntAttribute("axis", 1)));
        graph.Output.Add(TensorValue(OutputName, FloatType, batch, Dim(classes)));
        PruneUnused(graph);

        model.IrVersion = Math.Max(model.IrVersion, IrVersion);
        model.ProducerName = "MlNetFinetune";
        model.ProducerVersion = typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "";
        graph.Name = "mlnetfinetune_image_classifier";
        model.DocString = Contract(size, manifest.InputAlpha);
        model.MetadataProps.Clear();
        AddMetadata(model, ClassesKey, JsonSerializer.Serialize(manifest.Classes));
        AddMetadata(model, "image_size", size.ToString(CultureInfo.InvariantCulture));
        AddMetadata(model, "input", $"{InputName}: float32 [N, 3, {size}, {size}], planar RGB, values 0..255");
        AddMetadata(model, "preprocessing", Contract(size, manifest.InputAlpha));
        AddMetadata(model, "alpha", manifest.InputAlpha.ToString());
        AddMetadata(model, "backbone", manifest.Backbone);
        AddMetadata(model, "features", manifest.Features);
        AddMetadata(model, "precision", manifest.Precision);
        AddMetadata(model, "head", manifest.Head);
        AddMetadata(model, "tool", manifest.Tool);
        return model;
    }

    private static string Contract(int size, AlphaPolicy alpha) => string.Create(CultureInfo.InvariantCulture,
        $"Input {InputName}: float32 [N, 3, {size}, {size}], planar RGB (channel, row, column), values 0..255 (not scaled or " +
        $"mean-subtracted; the graph does that). Resize as ML.NET ResizeImages IsoCrop with centre anchor does: scale " +
        $"uniformly so the shorter side is {size}, then crop the centre {size}x{size}. {Transparency(alpha)} " +
        $"Output {OutputName}: float32 [N, classes], softmax probabilities in the order of the metadata entry '{ClassesKey}' (JSON array).");

    private static string Transparency(AlphaPolicy alpha) => alpha switch
    {
        AlphaPolicy.CompositeOnWhite => "Composite transparent pixels on white (colour x alpha + 255 x (1 - alpha)).",
        AlphaPolicy.CompositeOnBlack => "Composite transparent pixels on black (colour x alpha).",
        _ => "Take the colour of transparent pixels as stored, ignoring alpha.",
    };

    private static void AddMetadata(ModelProto model, string key, string value) =>
        model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });

    /// <summary>The head's numbers: affine normalizer and softmax regression.</summary>
    private sealed record Head(float[] Scale, float[] Offset, float[] Weights, float[] Biases);

    private static Head ReadHead(string modelPath, ModelManifest manifest)
    {
        var ml = new MLContext();
        ITransformer loaded;
        try
        {
            loaded = ml.Model.Load(modelPath, out _);
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or FormatException or IOException or ArgumentException)
        {
            throw new UserInputException($"{modelPath}: the ML.NET model inside cannot be loaded ({e.Message.Split('\n')[0].Trim()})");
        }

        var transformers = Flatten(loaded).ToList();
        var normalizers = transformers.OfType<NormalizingTransformer>().ToList();
        var predictors = transformers.OfType<ISingleFeaturePredictionTransformer<object>>().Select(p => p.Model).ToList();
        if (normalizers.Count != 1 || predictors.Count != 1)
        {
            throw new UserInputException($"{modelPath}: expected one normalizer and one classifier in the model, found {normalizers.Count} and {predictors.Count}");
        }

        if (predictors[0] is not MaximumEntropyModelParameters regression)
        {
            throw new UserInputException(
                $"{modelPath}: the model's head ({predictors[0].GetType().Name}) is not a softmax regression, which is all export-onnx writes; train with --head softmax");
        }

        if (normalizers[0].GetNormalizerModelParameters(0) is not NormalizingTransformer.AffineNormalizerModelParameters<ImmutableArray<float>> affine)
        {
            throw new UserInputException($"{modelPath}: the head's normalizer is not an affine (mean-variance) one");
        }

        VBuffer<float>[] rows = [];
        regression.GetWeights(ref rows, out var classCount);
        var biases = regression.GetBiases().ToArray();
        var featureSize = affine.Scale.Length;
        if (classCount != manifest.Classes.Count || biases.Length != classCount || featureSize != manifest.FeatureSize)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"{modelPath}: the head has {classCount} classes over {featureSize} features, the manifest says {manifest.Classes.Count} over {manifest.FeatureSize}"));
        }

        var weights = new float[classCount * featureSize];
        for (var k = 0; k < classCount; k++)
        {
            rows[k].DenseValues().ToArray().CopyTo(weights, k * featureSize);
        }

        return new Head([.. affine.Scale], [.. affine.Offset], weights, biases);
    }

    private static IEnumerable<ITransformer> Flatten(ITransformer transformer) => transformer is IEnumerable<ITransformer> chain
        ? chain.SelectMany(Flatten)
        : [transformer];

    /// <summary>
    /// The backbone graph ML.NET embedded in the zip when it saved the ApplyOnnxModel step: an entry named
    /// <c>…/OnnxModel</c> holding a 32-bit little-endian length and the ONNX bytes.
    /// </summary>
    private static byte[] ReadBackboneGraph(string modelPath)
    {
        using var archive = ZipFile.OpenRead(modelPath);
        var entries = archive.Entries.Where(e => e.FullName.EndsWith("/OnnxModel", StringComparison.Ordinal)).ToList();
        if (entries.Count != 1)
        {
            throw new UserInputException(string.Create(CultureInfo.InvariantCulture,
                $"{modelPath}: expected one embedded backbone graph, found {entries.Count}"));
        }

        using var stream = entries[0].Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        var bytes = memory.GetBuffer().AsSpan(0, (int)memory.Length);
        if (bytes.Length < 4 || System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(bytes) != bytes.Length - 4)
        {
            throw new UserInputException($"{modelPath}: the embedded backbone graph {entries[0].FullName} is not in the layout ML.NET 5 writes");
        }

        return bytes[4..].ToArray();
    }
}
