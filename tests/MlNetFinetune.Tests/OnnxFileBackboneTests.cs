using Google.Protobuf;
using Microsoft.ML;
using MlNetFinetune.Backbones;
using MlNetFinetune.Data;
using MlNetFinetune.Prediction;
using MlNetFinetune.Training;
using Onnx;
using static MlNetFinetune.Backbones.OnnxGraph;

namespace MlNetFinetune.Tests;

/// <summary>
/// A user's own ONNX backbone. The graphs are built here from the real ResNet18, re-exported with the conventions
/// users' exporters use (RGB 0..1 with the ImageNet mean and deviation; Caffe's BGR 0..255 minus a mean), so their
/// features must equal the built-in path's.
/// </summary>
[Collection(SampleModelCollection.Name)]
public sealed class OnnxFileBackboneTests(SampleModelFixture fixture)
{
    private const int Size = 64;

    private string NewFolder() => Directory.CreateDirectory(Path.Combine(fixture.Root, "onnx-" + Guid.NewGuid().ToString("N")[..8])).FullName;

    private static List<ImageRecord> Sample(int perClass) =>
        [.. ImageFolder.Scan(TestData.SampleFolder).Images.GroupBy(i => i.Label).SelectMany(g => g.Take(perClass))];

    [Fact]
    public void AnImageNetConventionExportGivesTheBuiltInFeatures()
    {
        // Given the ResNet18 exported as PyTorch would: input "input" [N,3,64,64], RGB 0..1 minus the ImageNet mean over its deviation
        var file = WriteExport(NewFolder(), PixelConvention.ImageNet, "s3g2+s4");

        // When its first output and two of its inner tensors are taken as features
        var firstOutput = OnnxFileBackbone.Load(file, PixelConvention.ImageNet);
        var named = OnnxFileBackbone.Load(file, PixelConvention.ImageNet, features: $"{ResNet18Backbone.StageOutputs[2]}@g2,{ResNet18Backbone.StageOutputs[3]}");

        // Then both equal the built-in backbone's s3g2+s4 features
        var builtIn = new ResNet18Backbone(new BackboneOptions(Size, "s3g2+s4"));
        Assert.Equal(Size, firstOutput.ImageSize);
        Assert.Equal(builtIn.FeatureSize, firstOutput.FeatureSize);
        Assert.Equal(builtIn.FeatureSize, named.FeatureSize);
        AssertSameFeatures(builtIn, firstOutput);
        AssertSameFeatures(builtIn, named);
        Assert.NotEqual(firstOutput.Fingerprint, named.Fingerprint);
    }

    [Fact]
    public void ACaffeStyleBgrExportGivesTheBuiltInFeatures()
    {
        var caffe = new PixelConvention("0-255", [103.94f, 116.78f, 123.68f], [1f, 1f, 1f], "bgr");
        var file = WriteExport(NewFolder(), caffe, "s4");

        var backbone = OnnxFileBackbone.Load(file, caffe);

        AssertSameFeatures(new ResNet18Backbone(new BackboneOptions(Size, "s4")), backbone);
    }

    [Fact]
    public void AModelTrainedOnAnOwnBackboneRoundTripsThroughThePredictor()
    {
        // Given
        var file = WriteExport(NewFolder(), PixelConvention.ImageNet, "s4");
        var data = TestData.CopySubset(NewFolder(), 8, "Bag", "Trouser", "Sneaker");
        var output = NewFolder();

        // When
        var outcome = CommandLineRunner.Trainer("--data", data, "--output", output, "--workspace", fixture.Workspace, "--backbone", file);

        // Then
        Assert.True(outcome.ExitCode == 0, outcome.Error);
        Assert.Contains("Backbone " + file, outcome.Output);
        using var classifier = ImageClassifier.Load(Path.Combine(output, "model.zip"));
        Assert.Equal("onnx:" + Path.GetFileName(file), classifier.Manifest.Backbone);
        var report = Evaluation.ReportWriter.FromJson(File.ReadAllText(Path.Combine(output, "report.json")));
        Assert.True(report.MicroAccuracy >= 0.8, $"held-out accuracy {report.MicroAccuracy}");
        foreach (var line in File.ReadAllLines(Path.Combine(output, "heldout-predictions.csv")).Skip(1))
        {
            var fields = line.Split(',');
            Assert.Equal(fields[2], classifier.Predict(fields[0]).Label);
        }
    }

    [Fact]
    public void GraphsThatAreNotImageModelsGetOneClearError()
    {
        var folder = NewFolder();
        var export = WriteExport(folder, PixelConvention.ImageNet, "s4");

        var notOnnx = Path.Combine(folder, "notes.onnx");
        File.WriteAllText(notOnnx, "these are not the weights you are looking for");
        var garbage = Assert.Throws<UserInputException>(() => OnnxFileBackbone.Load(notOnnx, PixelConvention.ImageNet)).Message;
        Assert.True(garbage.Contains("not an ONNX model", StringComparison.Ordinal), garbage);

        var vector = Path.Combine(folder, "vector.onnx");
        File.WriteAllBytes(vector, VectorModel().ToByteArray());
        var wrongRank = Assert.Throws<UserInputException>(() => OnnxFileBackbone.Load(vector, PixelConvention.ImageNet));
        Assert.Contains("float [N,3,H,W]", wrongRank.Message);
        Assert.Contains("'x'", wrongRank.Message);

        var missing = Assert.Throws<UserInputException>(() => OnnxFileBackbone.Load(export, PixelConvention.ImageNet, features: "no_such_tensor"));
        Assert.Contains("no tensor named 'no_such_tensor'", missing.Message);

        var badSize = Assert.Throws<UserInputException>(() => OnnxFileBackbone.Load(export, PixelConvention.ImageNet, imageSize: 96));
        Assert.Contains("fixed size of 64", badSize.Message);

        var badGrid = Assert.Throws<UserInputException>(() => OnnxFileBackbone.Load(export, PixelConvention.ImageNet, features: $"{ResNet18Backbone.StageOutputs[3]}@g3"));
        Assert.Contains("3x3 grid", badGrid.Message);

        var outcome = CommandLineRunner.Trainer("--data", TestData.SampleFolder, "--backbone", vector, "--output", NewFolder());
        Assert.Equal(2, outcome.ExitCode);
        Assert.StartsWith("error: --backbone " + vector, outcome.Error, StringComparison.Ordinal);
    }

    private static void AssertSameFeatures(IBackbone expected, IBackbone actual)
    {
        var images = Sample(1);
        var ml = new MLContext(1);
        using var first = FeatureStore.Open(ml, Directory.CreateTempSubdirectory("mlnetfinetune-onnx-a-").FullName, expected, new FeaturizationOptions());
        using var second = FeatureStore.Open(ml, Directory.CreateTempSubdirectory("mlnetfinetune-onnx-b-").FullName, actual, new FeaturizationOptions());
        var a = first.Featurize(images).Images;
        var b = second.Featurize(images).Images;
        foreach (var (x, y) in a.Zip(b))
        {
            var scale = x.Features!.Max(Math.Abs);
            var largest = x.Features!.Zip(y.Features!, (p, q) => Math.Abs(p - q)).Max();
            Assert.True(largest <= 1e-3 * scale, $"{x.Image.Path}: features differ by {largest} (largest feature {scale})");
        }
    }

    /// <summary>
    /// The built-in feature graph behind nodes that undo <paramref name="convention"/>: what an exporter hands a user
    /// is a network that takes normalised pixels, so "x * std + mean" (back to the range) and the range back to 0..255
    /// lead into the built-in graph's planar RGB 0..255 input.
    /// </summary>
    private static string WriteExport(string folder, PixelConvention convention, string taps)
    {
        var model = ModelProto.Parser.ParseFrom(ResNet18Backbone.BuildGraph(new BackboneOptions(Size, taps), batchSize: null));
        var graph = model.Graph;
        var nodes = graph.Node.ToList();
        graph.Node.Clear();
        graph.Input.Remove(graph.Input.Single(i => i.Name == Pipeline.ColumnNames.Pixels));
        graph.Input.Add(TensorValue("input", FloatType, Dim("N"), Dim(3), Dim(Size), Dim(Size)));
        AddInitializer(graph, FloatTensor("export_std", [1, 3, 1, 1], [.. convention.Std]));
        AddInitializer(graph, FloatTensor("export_mean", [1, 3, 1, 1], [.. convention.Mean]));
        AddInitializer(graph, FloatTensor("export_unscale", [1], [1 / convention.Scale]));
        graph.Node.Add(Node("Mul", ["input", "export_std"], ["export_a"]));
        graph.Node.Add(Node("Add", ["export_a", "export_mean"], ["export_b"]));
        graph.Node.Add(Node("Mul", ["export_b", "export_unscale"], [convention.Bgr ? "export_bgr" : Pipeline.ColumnNames.Pixels]));
        if (convention.Bgr)
        {
            AddInitializer(graph, Int64Tensor("export_order", [3], [2, 1, 0]));
            graph.Node.Add(Node("Gather", ["export_bgr", "export_order"], [Pipeline.ColumnNames.Pixels], IntAttribute("axis", 1)));
        }

        graph.Node.AddRange(nodes);
        graph.Output[0].Name = "embedding";
        foreach (var node in graph.Node.Where(n => n.Output.Contains(Pipeline.ColumnNames.Features)))
        {
            node.Output[node.Output.IndexOf(Pipeline.ColumnNames.Features)] = "embedding";
        }

        var file = Path.Combine(folder, "resnet18-export.onnx");
        File.WriteAllBytes(file, model.ToByteArray());
        return file;
    }

    private static ModelProto VectorModel()
    {
        var model = new ModelProto { IrVersion = 7, Graph = new GraphProto { Name = "vector" } };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 13 });
        model.Graph.Input.Add(TensorValue("x", FloatType, Dim("N"), Dim(10)));
        model.Graph.Node.Add(Node("Relu", ["x"], ["y"]));
        model.Graph.Output.Add(TensorValue("y", FloatType, Dim("N"), Dim(10)));
        return model;
    }
}
