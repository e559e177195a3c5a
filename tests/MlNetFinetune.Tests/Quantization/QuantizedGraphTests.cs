using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace MlNetFinetune.Tests.Quantization;

[Collection(QuantizedBackboneFixture.Collection)]
public sealed class QuantizedGraphTests(QuantizedBackboneFixture fixture)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OnnxRuntimeRunsEveryConvolutionAndResidualAddInInt8(bool batchOne)
    {
        // Given the quantized graph in one of its two batch forms
        var graph = batchOne ? fixture.Int8BatchOneGraph : fixture.Int8Graph;
        var optimized = Path.Combine(Directory.CreateTempSubdirectory("mlnetfinetune-int8-").FullName, "optimized.onnx");

        // When ONNX Runtime optimizes it as the featurizer's session does
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = optimized })
        using (new InferenceSession(graph, options))
        {
        }

        // Then every one of the 22 convolutions and 9 residual additions is fused into an integer kernel (an fp32
        // Conv left between a DequantizeLinear and a QuantizeLinear would run slower than the float graph), and every
        // Relu is absorbed by the quantization that follows it
        var ops = ModelProto.Parser.ParseFrom(File.ReadAllBytes(optimized)).Graph.Node.Select(n => n.OpType).ToList();
        Assert.DoesNotContain("Conv", ops);
        Assert.DoesNotContain("FusedConv", ops);
        Assert.Equal(22, ops.Count(op => op == "QLinearConv"));
        Assert.Equal(9, ops.Count(op => op == "QLinearAdd"));
        Assert.DoesNotContain("Add", ops);
        Assert.DoesNotContain("Relu", ops);
    }
}
