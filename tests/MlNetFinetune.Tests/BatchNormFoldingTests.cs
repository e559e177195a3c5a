using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;

namespace MlNetFinetune.Tests;

public sealed class BatchNormFoldingTests
{
    [Fact]
    public void FoldedBackboneComputesTheSameFeaturesWithoutBatchNormNodes()
    {
        // Given the pretrained network and a copy with its batch norms folded into the convolutions
        var options = new BackboneOptions(64, "s2g2+s3+s4");
        var network = ResNet18Backbone.LoadNetwork();
        var folded = network.Clone();

        // When
        var count = BatchNormFolding.Fold(folded.Graph);

        // Then every batch norm is gone and the features agree on real-range random pixels
        Assert.Equal(22, count);
        Assert.DoesNotContain(folded.Graph.Node, n => n.OpType == "BatchNormalization");
        var random = new Random(3);
        var pixels = new float[2 * 3 * 64 * 64];
        for (var i = 0; i < pixels.Length; i++)
        {
            pixels[i] = random.Next(256);
        }

        var expected = Run(ResNet18Backbone.BuildGraph(options, batchSize: null, network), pixels);
        var actual = Run(ResNet18Backbone.BuildGraph(options, batchSize: null, folded), pixels);
        var scale = expected.Max(Math.Abs);
        var largest = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(largest <= 1e-4 * scale, $"features differ by {largest} (largest feature {scale})");
    }

    private static float[] Run(byte[] graph, float[] pixels)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(graph, options);
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [2, 3, 64, 64]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["Pixels"], [input], ["Features"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }
}
