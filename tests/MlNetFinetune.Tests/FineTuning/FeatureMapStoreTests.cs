using Microsoft.ML.OnnxRuntime;
using MlNetFinetune.Backbones;
using MlNetFinetune.Training.FineTuning;
using Xunit.Abstractions;

namespace MlNetFinetune.Tests.FineTuning;

public sealed class FeatureMapStoreTests(ITestOutputHelper output)
{
    [Fact]
    public void FlipMirrorsColumnsAndShiftRepeatsTheEdge()
    {
        // Given a 2x3 map with 2 channels whose values name their row, column and channel
        var shape = new MapShape(2, 3, 2);
        var source = new float[shape.Size];
        for (var y = 0; y < 2; y++)
        {
            for (var x = 0; x < 3; x++)
            {
                for (var c = 0; c < 2; c++)
                {
                    source[(((y * 3) + x) * 2) + c] = (100 * y) + (10 * x) + c;
                }
            }
        }

        // When
        var flipped = new float[shape.Size];
        var shifted = new float[shape.Size];
        MapAugmentation.Apply<float>(source, flipped, shape, flip: true, shiftY: 0, shiftX: 0);
        MapAugmentation.Apply<float>(source, shifted, shape, flip: false, shiftY: 1, shiftX: -1);

        // Then
        Assert.Equal([20, 21, 10, 11, 0, 1, 120, 121, 110, 111, 100, 101], flipped);
        Assert.Equal([10, 11, 20, 21, 20, 21, 10, 11, 20, 21, 20, 21], shifted);
    }

    /// <summary>
    /// Float16 keeps 11 significant bits: the cached maps are within 2^-11 of float32. Through a train step that
    /// moves the loss by about 1e-6 (relative) and the gradients by up to 1.5% (ReLU inputs near zero change sides),
    /// against 130-370% for another ten images of the same classes (asserted: under a tenth of it).
    /// </summary>
    [Fact]
    public void HalfPrecisionMapsChangeATrainStepFarLessThanAnotherBatchDoes()
    {
        // Given real maps at the cut below stage 4, in float32 and rounded to float16
        var images = SamplePixels.Load(imageSize: 64, perClass: 2);
        var cut = BackboneCut.Create(new BackboneOptions(64, "s4"), trainedStages: 1);
        var full = PyTorchReferenceTests.Frozen(cut, [.. images.SelectMany(i => i.Pixels)], images.Count, 64);
        var half = full.Select(v => (Float16)v).ToArray();
        var labels = images.Select(i => (long)i.Label).ToArray();
        var weights = PyTorchReferenceTests.InitialWeights(cut, classes: 10);
        var firstHalf = labels.Length / 2;
        var size = cut.CutShape.Size;

        // When the first ten images step in float32 and in float16, and the other ten in float32
        var (fullLoss, fullGradients) = Step(cut, weights, full[..(firstHalf * size)], labels[..firstHalf], halfPrecision: false);
        var (halfLoss, halfGradients) = Step(cut, weights, half[..(firstHalf * size)], labels[..firstHalf], halfPrecision: true);
        var (_, otherGradients) = Step(cut, weights, full[(firstHalf * size)..], labels[firstHalf..], halfPrecision: false);

        // Then
        Assert.All(full.Zip(half), p => Assert.True(Math.Abs(p.First - (float)p.Second) <= Math.Abs(p.First) / 2048));
        output.WriteLine($"loss {fullLoss} vs {halfLoss}");
        Assert.True(Math.Abs(fullLoss - halfLoss) <= 1e-4 * fullLoss, $"loss {fullLoss} vs {halfLoss}");
        foreach (var (name, gradient) in fullGradients)
        {
            var precision = Distance(gradient, halfGradients[name]);
            var batch = Distance(gradient, otherGradients[name]);
            output.WriteLine($"{name}: float16 {precision:E2}, other batch {batch:E2} (relative)");
            Assert.True(precision <= 0.1 * batch, $"{name}: float16 moves the gradient by {precision:E2}, another batch by {batch:E2}");
        }
    }

    private static (float Loss, Dictionary<string, float[]> Gradients) Step(BackboneCut cut, Dictionary<string, float[]> weights, Array maps, long[] labels, bool halfPrecision)
    {
        using var session = new TrainStepSession(cut.Network, cut.Taps, 10, 0.9f, 0, weights, halfPrecision);
        var loss = session.Step(maps, labels, labels.Length, 0, 0);
        return (loss, session.Momenta.ToDictionary(m => m.Key, m => (float[])m.Value.Clone()));
    }

    private static double Distance(float[] a, float[] b) =>
        Math.Sqrt(a.Zip(b, (x, y) => (double)(x - y) * (x - y)).Sum()) / Math.Sqrt(a.Sum(v => (double)v * v));
}
