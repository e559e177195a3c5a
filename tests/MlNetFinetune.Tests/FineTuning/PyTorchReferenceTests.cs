using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Training.FineTuning;
using Xunit.Abstractions;

namespace MlNetFinetune.Tests.FineTuning;

/// <summary>
/// Two SGD steps (momentum, weight decay, a 10x head learning rate) of stages 3-4 and a head on the s3g2+s4 taps,
/// on four real Fashion-MNIST test images at 64 px, against PyTorch 1.13 autograd and torch.optim.SGD on the same
/// weights (Fixtures/finetune-reference.json, written by scripts/finetune-reference.py fixture; PyTorch runs the ONNX
/// nodes itself with F.pad for the asymmetric pads and folds batch norm with its own code).
/// </summary>
public sealed class PyTorchReferenceTests(ITestOutputHelper output)
{
    [Fact]
    public void TwoStepsMatchPyTorch()
    {
        // Given the fixture's images and settings, and the network cut below stage 3 at full precision
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "finetune-reference.json")));
        var root = fixture.RootElement;
        var size = root.GetProperty("imageSize").GetInt32();
        var classes = root.GetProperty("classes").GetInt32();
        var labels = root.GetProperty("labels").EnumerateArray().Select(l => (long)l.GetInt32()).ToArray();
        var pixels = Convert.FromBase64String(root.GetProperty("pixels").GetString()!).Select(b => (float)b).ToArray();
        var cut = BackboneCut.Create(new BackboneOptions(size, root.GetProperty("features").GetString()!), root.GetProperty("stages").GetInt32());
        var maps = Frozen(cut, pixels, labels.Length, size);
        var weights = InitialWeights(cut, classes);
        using var session = new TrainStepSession(cut.Network, cut.Taps, classes, root.GetProperty("momentum").GetSingle(),
            root.GetProperty("weightDecay").GetSingle(), weights, halfPrecision: false);

        // When
        var losses = Enumerable.Range(0, root.GetProperty("steps").GetInt32()).Select(_ => session.Step(maps, labels, labels.Length,
            root.GetProperty("learningRate").GetSingle(), root.GetProperty("headLearningRate").GetSingle())).ToList();

        // Then the frozen part, the losses, the momentum buffers (sampled coordinates and norms) and the weight changes agree
        var cutSum = root.GetProperty("cutSum").GetDouble();
        Assert.True(Math.Abs(maps.Sum(v => (double)v) - cutSum) <= 1e-5 * cutSum, $"frozen part: sum {maps.Sum(v => (double)v)} vs {cutSum}");
        var expectedLosses = root.GetProperty("losses").EnumerateArray().Select(l => l.GetDouble()).ToList();
        for (var i = 0; i < losses.Count; i++)
        {
            Assert.True(Math.Abs(losses[i] - expectedLosses[i]) <= 1e-5 * expectedLosses[i], $"loss {i + 1}: {losses[i]} vs PyTorch {expectedLosses[i]}");
        }

        output.WriteLine($"losses {string.Join(", ", losses)} vs PyTorch {string.Join(", ", expectedLosses)}");
        var parameters = root.GetProperty("parameters");
        Assert.Equal(weights.Count, parameters.EnumerateObject().Count());
        foreach (var expected in parameters.EnumerateObject())
        {
            var momentum = OnnxLayout(cut, expected.Name, session.Momenta[expected.Name]);
            var delta = OnnxLayout(cut, expected.Name, [.. session.Weights[expected.Name].Zip(weights[expected.Name], (a, b) => a - b)]);
            var indices = expected.Value.GetProperty("indices").EnumerateArray().Select(i => i.GetInt32()).ToList();
            var reference = expected.Value.GetProperty("momenta").EnumerateArray().Select(v => v.GetDouble()).ToList();
            var sampled = Math.Sqrt(indices.Select((index, i) => Math.Pow(momentum[index] - reference[i], 2)).Sum()) / Math.Sqrt(reference.Sum(v => v * v));
            var momentumNorm = expected.Value.GetProperty("momentumNorm").GetDouble();
            var deltaNorm = expected.Value.GetProperty("deltaNorm").GetDouble();
            var momentumNormError = Math.Abs(Norm(momentum) - momentumNorm) / momentumNorm;
            var deltaNormError = Math.Abs(Norm(delta) - deltaNorm) / deltaNorm;
            output.WriteLine($"{expected.Name}: relative differences: sampled momenta {sampled:E2}, momentum norm {momentumNormError:E2}, weight change norm {deltaNormError:E2}");
            Assert.True(sampled <= 1e-4, $"{expected.Name}: sampled momenta differ by {sampled:E2} (relative)");
            Assert.True(momentumNormError <= 1e-4, $"{expected.Name}: momentum norm {Norm(momentum)} vs {momentumNorm}");
            Assert.True(deltaNormError <= 1e-3, $"{expected.Name}: weight change norm {Norm(delta)} vs {deltaNorm}");
        }
    }

    /// <summary>The head the script draws from a formula (no random generator shared across languages), the rest from the network.</summary>
    internal static Dictionary<string, float[]> InitialWeights(BackboneCut cut, int classes)
    {
        var weights = cut.Network.Initial.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

        var features = cut.Taps.Sum(t => t.Size);
        weights[TrainingGraphBuilder.HeadWeight] = [.. Enumerable.Range(0, features * classes).Select(i => (float)(0.05 * Math.Sin((i * 0.37) + 1.0)))];
        weights[TrainingGraphBuilder.HeadBias] = [.. Enumerable.Range(0, classes).Select(i => (float)(0.01 * Math.Cos(i * 0.5)))];
        return weights;
    }

    /// <summary>The frozen part's float32 output (NHWC) for planar RGB pixels.</summary>
    internal static float[] Frozen(BackboneCut cut, float[] pixels, int images, int size)
    {
        using var session = new InferenceSession(cut.FrozenGraph(fullPrecision: true));
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [images, 3, size, size]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [Pipeline.ColumnNames.Pixels], [input], [BackboneCut.FrozenOutput]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private static float[] OnnxLayout(BackboneCut cut, string name, float[] values)
    {
        var conv = cut.Network.Convs.FirstOrDefault(c => c.WeightName == name);
        return conv is null ? values : TrainableNetwork.FromWeightMatrix(conv, values);
    }

    private static double Norm(float[] values) => Math.Sqrt(values.Sum(v => (double)v * v));
}
